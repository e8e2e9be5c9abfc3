"""
The default tree imports only what its configuration uses: no WAMP, no Redis
client, no HTTP client, no chat connectors, no model brains.  Checked in a
fresh interpreter, since a test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

BUILD_AND_START = r"""
import json, sys, tempfile
from twisted.internet import reactor
from openclaw.config import build_config
from openclaw.tree import build_service
document = json.loads(sys.argv[1])
document.update(gateway={"listen": "tcp:0:interface=127.0.0.1"}, web={"listen": "tcp:0:interface=127.0.0.1"})
root = build_service(build_config(document), tempfile.mkdtemp(), reactor, console=False, environ={})
root.startService()
print(json.dumps(sorted(sys.modules)))
"""

#: Modules the embedded default must not load (the TLS stack is checked below,
#: in the daemon's own order: this script imports the reactor first).
UNUSED_BY_DEFAULT = [
    "autobahn.twisted.wamp",
    "txredisapi", "openclaw.store.redis",
    "treq", "twisted.web.client", "openclaw.agent.http",
    "openclaw.connectors.base", "openclaw.connectors.telegram", "openclaw.connectors.discord",
    "openclaw.connectors.slack", "openclaw.connectors.whatsapp", "openclaw.connectors.smtp",
    "openclaw.agent.openai", "openclaw.agent.anthropic", "openclaw.agent.failover",
    "openclaw.proactive.mail", "imaplib", "smtplib",
]


def modules_of(document: dict) -> set[str]:
    result = subprocess.run([sys.executable, "-c", BUILD_AND_START, json.dumps(document)],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_default_tree_imports_nothing_it_does_not_use() -> None:
    loaded = modules_of({})
    assert "openclaw.gateway.service" in loaded and "openclaw.store.sqlite" in loaded
    assert sorted(loaded & set(UNUSED_BY_DEFAULT)) == []


def test_a_configured_model_brain_is_imported() -> None:
    # The other side of the list: what a config asks for is imported (so the names above are real).
    loaded = modules_of({"brain": {"providers": [
        {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-0123456789"}]}})
    assert {"openclaw.agent.openai", "openclaw.agent.http"} <= loaded


#: The daemon's own order: ``twistd openclaw`` parses its options (and so
#: the config) before anything imports the reactor, then builds the tree.
OPTIONS_THEN_TREE = r"""
import json, sys, tempfile
from openclaw.tap import Options
home = tempfile.mkdtemp()
config = sys.argv[1]
options = Options()
options.parseOptions(["--home", home, "--gateway", "tcp:0:interface=127.0.0.1", "--web", "tcp:0:interface=127.0.0.1",
                      *(["--config", config] if config else [])])
from twisted.internet import reactor
from openclaw.tree import build_service
root = build_service(options.config, home, reactor, environ={})
root.startService()
print(json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None)))
"""

TLS_STACK = {"OpenSSL", "OpenSSL.SSL", "cryptography", "service_identity", "twisted.internet._newtls",
             "twisted.protocols.tls"}


def started_modules(tmp_path, config: str = "") -> set[str]:
    path = ""
    if config:
        path = str(tmp_path / "openclaw.yaml")
        (tmp_path / "openclaw.yaml").write_text(config)
    result = subprocess.run([sys.executable, "-c", OPTIONS_THEN_TREE, path], capture_output=True, text=True,
                            timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_a_daemon_that_speaks_no_tls_does_not_load_the_tls_stack(tmp_path) -> None:
    loaded = started_modules(tmp_path)
    assert "openclaw.gateway.service" in loaded and "twisted.internet.tcp" in loaded
    assert sorted(loaded & TLS_STACK) == []


def test_a_daemon_with_a_tls_user_loads_the_tls_stack(tmp_path) -> None:
    # An https check may need TLS at any time: the stack is there from the start.
    loaded = started_modules(tmp_path, "checks:\n  - {name: site, type: http, target: 'https://127.0.0.1:9/'}\n")
    assert TLS_STACK <= loaded


#: A daemon started without TLS, then a reload that adds an https check: the
#: check's probe (Twisted's HTTPS agent over ``wrapClientTLS``) must work.
LATE_TLS = r"""
import datetime, sys, tempfile
from openclaw.tap import Options
options = Options()
options.parseOptions(["--home", tempfile.mkdtemp(), "--gateway", "tcp:0:interface=127.0.0.1"])
from twisted.internet import reactor, task
import twisted.internet.endpoints
assert sys.modules["OpenSSL"] is None
from openclaw.system import tlsstack
assert tlsstack.load()
from tests.test_probes import Page, certificate, check
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.server import Site
from openclaw.proactive.probes import make_probe
key_pem, cert_pem = certificate(days=30)
server = TLSMemoryBIOFactory(ssl.PrivateCertificate.loadPEM(key_pem + cert_pem).options(), False, Site(Page()))
port = reactor.listenTCP(0, server, interface="127.0.0.1").getHost().port
trust = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(cert_pem))
async def main(reactor):
    result = await make_probe(check("http", f"https://localhost:{port}/"), reactor, tls_policy=trust)()
    print(result.ok, result.detail)
task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def test_a_daemon_started_without_tls_can_let_it_in_for_a_reload(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-c", LATE_TLS], capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(__file__)), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "True HTTP 200"


def test_the_tree_is_still_reachable_from_openclaw_tap_and_only_imported_when_asked() -> None:
    code = ("import sys, openclaw.tap; assert 'openclaw.tree' not in sys.modules; "
            "from openclaw.tap import build_service; import openclaw.tree; "
            "assert build_service is openclaw.tree.build_service; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
