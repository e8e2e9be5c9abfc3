"""
The default tree imports only what its configuration uses: no WAMP, no Redis
client, no HTTP client, no chat connectors, no model brains.  Checked in a
fresh interpreter, since a test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

BUILD_AND_START = r"""
import json, sys, tempfile
from twisted.internet import reactor
from openclaw.config import build_config
from openclaw.tap import build_service
document = json.loads(sys.argv[1])
document.update(gateway={"listen": "tcp:0:interface=127.0.0.1"}, web={"listen": "tcp:0:interface=127.0.0.1"})
root = build_service(build_config(document), tempfile.mkdtemp(), reactor, console=False, environ={})
root.startService()
print(json.dumps(sorted(sys.modules)))
"""

#: Modules the embedded default must not load (the TLS stack is not here:
#: ``twisted.internet.tcp`` imports pyOpenSSL with the reactor; docs/benchmarks.md).
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
