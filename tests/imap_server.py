"""
A throwaway Dovecot IMAP server for tests (Debian's ``dovecot-imapd``).

``running_dovecot()`` writes a config in a fresh temp dir (one passwd-file
user, maildir, plain IMAP on a free 127.0.0.1 port; with ``tls=True`` also
IMAPS and STARTTLS with a certificate from a throwaway CA), starts
``/usr/sbin/dovecot`` and stops it by its PID afterwards.  Mail is
delivered with IMAP APPEND (stdlib ``imaplib`` in a thread).

Without dovecot (or root, which it needs) the tests skip, except under
``CI=true`` where that is a failure: CI installs the package.
"""

from __future__ import annotations

import datetime
import imaplib
import ipaddress
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

DOVECOT = "/usr/sbin/dovecot"
USER = "me"
PASSWORD = "s3cret-pw"


def unavailable() -> str | None:
    """Why dovecot cannot run here, or ``None``."""
    if not os.path.exists(DOVECOT):
        return f"{DOVECOT} missing (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "dovecot needs root to switch to its mail user"
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError:
        return "the dovecot and dovenull users are missing (apt-get install dovecot-core)"
    return None


def require_dovecot() -> None:
    """Skip without dovecot; fail instead under CI, where it must be installed."""
    reason = unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"dovecot required under CI: {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(sender: str, subject: str, body: str = "", html: bool = False) -> bytes:
    """An RFC 5322 message, UTF-8 (quoted-printable where needed)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"{USER}@example.org"
    msg["Subject"] = subject
    msg.set_content(body or " ", subtype="html" if html else "plain")
    return msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


@dataclass(frozen=True)
class ScratchCA:
    """A CA certificate (``ca_file``) and a server certificate for 127.0.0.1 it signed."""

    ca_file: str
    cert_file: str
    key_file: str


def make_test_ca(directory: str) -> ScratchCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key: object, issuer: str, signer: object, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = ScratchCA(*(os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server.key")))
    pem = serialization.Encoding.PEM
    with open(paths.ca_file, "wb") as f:
        f.write(cert("openclaw test CA", ca_key, "openclaw test CA", ca_key, True).public_bytes(pem))
    with open(paths.cert_file, "wb") as f:
        f.write(cert("127.0.0.1", key, "openclaw test CA", ca_key, False).public_bytes(pem))
    with open(paths.key_file, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/run/state
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
# No growing delay after failed logins from 127.0.0.1 (tests fail logins on purpose).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
log_path = {dir}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
"""


class Dovecot:
    """One running server; ``port`` is plain IMAP (STARTTLS too with TLS), ``imaps_port`` IMAP over TLS."""

    def __init__(self, directory: str, port: int, imaps_port: int, ca: ScratchCA | None) -> None:
        self.directory = directory
        self.port = port
        self.imaps_port = imaps_port
        self.ca = ca

    def _start(self) -> str:
        """Start; :return: an error text, empty when the server answers."""
        with open(os.path.join(self.directory, "start.log"), "wb") as out:
            # Not a pipe: the daemon would hold it open and run() would wait for it.
            rc = subprocess.run([DOVECOT, "-c", os.path.join(self.directory, "dovecot.conf")],
                                stdout=out, stderr=subprocess.STDOUT, timeout=30).returncode
        if rc != 0:
            logs = [os.path.join(self.directory, n) for n in ("start.log", "dovecot.log")]
            return "\n".join(open(p, errors="replace").read() for p in logs if os.path.exists(p))
        # The master listens before it daemonizes: the greeting proves it is up.
        self.client().logout()
        return ""

    def pid(self) -> int:
        with open(os.path.join(self.directory, "run", "master.pid")) as f:
            return int(f.read().strip())

    def stop(self) -> None:
        """SIGTERM the master by its PID and wait (bounded) for it to exit."""
        try:
            pid = self.pid()
            fd = os.pidfd_open(pid)
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            select.select([fd], [], [], 10)
        finally:
            os.close(fd)

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def _append(self, data: bytes, mailbox: str, flags: str) -> int:
        conn = self.client()
        try:
            conn.create(mailbox)  # "already exists" is fine
            typ, answer = conn.append(mailbox, flags or None, None, data)
            assert typ == "OK", answer
            found = re.search(rb"APPENDUID \d+ (\d+)", answer[0])
            assert found, answer
            return int(found.group(1))
        finally:
            conn.logout()

    def append(self, data: bytes, mailbox: str = "INBOX", flags: str = "") -> Deferred:
        """Deliver one message; :return: a Deferred firing with its UID."""
        return deferToThread(self._append, data, mailbox, flags)

    def _flags(self, uid: int, mailbox: str) -> str:
        conn = self.client()
        try:
            conn.select(mailbox, readonly=True)
            typ, answer = conn.uid("FETCH", str(uid), "(FLAGS)")
            assert typ == "OK" and answer[0], answer
            return answer[0].decode()
        finally:
            conn.logout()

    def flags(self, uid: int, mailbox: str = "INBOX") -> Deferred:
        """:return: a Deferred firing with the server's ``FLAGS (...)`` line for ``uid``."""
        return deferToThread(self._flags, uid, mailbox)


@contextmanager
def running_dovecot(tls: bool = False) -> Iterator[Dovecot]:
    """A started server, stopped and its directory removed afterwards."""
    require_dovecot()
    # Short path: dovecot's UNIX sockets live under base_dir (sun_path is 108 bytes).
    directory = tempfile.mkdtemp(prefix="dvc-")
    os.chmod(directory, 0o755)
    mail = pwd.getpwnam("dovecot")
    os.makedirs(os.path.join(directory, "mail"))
    os.makedirs(os.path.join(directory, "run"))
    os.chown(os.path.join(directory, "mail"), mail.pw_uid, mail.pw_gid)
    with open(os.path.join(directory, "users"), "w") as f:
        f.write(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    ca = make_test_ca(directory) if tls else None
    ssl = f"ssl = yes\nssl_cert = <{ca.cert_file}\nssl_key = <{ca.key_file}" if ca else "ssl = no"
    server = None
    try:
        for _ in range(3):  # a free port can be taken between choosing and binding it
            server = Dovecot(directory, _free_port(), _free_port() if tls else 0, ca)
            with open(os.path.join(directory, "dovecot.conf"), "w") as f:
                f.write(CONFIG.format(dir=directory, ssl=ssl, uid=mail.pw_uid, gid=mail.pw_gid,
                                      port=server.port, imaps_port=server.imaps_port))
            error = server._start()
            if not error:
                break
            if "in use" not in error:
                pytest.fail(f"dovecot did not start:\n{error}")
        else:
            pytest.fail(f"dovecot did not start:\n{error}")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
