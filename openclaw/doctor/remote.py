"""
The doctor's checks that ask someone else: each enabled connector's
credentials with the platform's cheapest read-only call, each mailbox's
login, each model provider's key.  Every call has the context's timeout;
a secret never appears in a finding.
"""

from __future__ import annotations

import imaplib
import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

from openclaw.config.connectors import credential
from openclaw.doctor.findings import FAIL, OK, WARN, Context, Finding
from openclaw.logs import scrub_text


def _ask(url: str, headers: dict[str, str], timeout: float, method: str = "GET") -> tuple[int, Any]:
    """``(status, parsed JSON or None)``; a network failure raises OSError."""
    request = urllib.request.Request(url, headers=headers, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read(1 << 20)
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read(1 << 20)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def _connector_call(name: str, platform: Any, environ: Any) -> tuple[str, str, dict[str, str], str] | str:
    """``(url, method, headers, secret)`` of the platform's identity call, or why there is none."""
    if name == "telegram":
        token = credential(platform, "token", environ)
        return (f"{platform.api_url}/bot{token}/getMe", "POST", {}, token) if token else f"no token (set {platform.token_env})"
    if name == "discord":
        token = credential(platform, "token", environ)
        return (f"{platform.api_url}/users/@me", "GET", {"Authorization": f"Bot {token}"}, token) if token \
            else f"no token (set {platform.token_env})"
    if name == "slack":
        token = credential(platform, "bot_token", environ)
        return (f"{platform.api_url}/auth.test", "POST", {"Authorization": f"Bearer {token}"}, token) if token \
            else f"no bot token (set {platform.bot_token_env})"
    if name == "whatsapp":
        token = credential(platform, "token", environ)
        if not token or not platform.phone_number_id:
            return "needs token and phone_number_id"
        return (f"{platform.api_url}/{platform.phone_number_id}", "GET", {"Authorization": f"Bearer {token}"}, token)
    return "no read-only check for this platform"


def _accepted(name: str, status: int, body: Any) -> bool:
    if name == "telegram":
        return status == 200 and isinstance(body, dict) and body.get("ok") is True
    if name == "slack":
        return status == 200 and isinstance(body, dict) and body.get("ok") is True
    return status == 200 and isinstance(body, dict)


def check_connectors(ctx: Context) -> list[Finding]:
    """Each enabled connector's credentials, by ``getMe``, ``users/@me``, ``auth.test`` or the phone number."""
    found = []
    for name, platform in ctx.config.connectors.enabled():
        call = _connector_call(name, platform, ctx.environ)
        title = f"connector {name}"
        if isinstance(call, str):
            status = OK if name == "smtp" else FAIL
            found.append(Finding(status, title, call, f"set connectors.{name} credentials (docs/connectors.md)"))
            continue
        url, method, headers, secret = call
        try:
            code, body = _ask(url, headers, ctx.timeout, method)
        except (OSError, ValueError) as e:
            found.append(Finding(FAIL, title, scrub_text(f"cannot reach {platform.api_url}: {getattr(e, 'reason', e)}",
                                                         [secret]), "check the network and connectors.*.api_url"))
            continue
        if _accepted(name, code, body):
            found.append(Finding(OK, title, f"credentials accepted by {platform.api_url}"))
        else:
            why = (body or {}).get("description") or (body or {}).get("error") or (body or {}).get("message") \
                if isinstance(body, dict) else None
            found.append(Finding(FAIL, title, scrub_text(f"credentials refused (HTTP {code}{': ' + str(why) if why else ''})",
                                                         [secret]), f"replace the {name} token"))
    return found


def _login(mailbox: Any, password: str, timeout: float) -> None:
    context = ssl.create_default_context(cafile=mailbox.ca_file or None)
    if mailbox.tls == "tls":
        imap = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=context, timeout=timeout)
    else:
        imap = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=timeout)
        if mailbox.tls == "starttls":
            imap.starttls(context)
    try:
        imap.login(mailbox.user, password)
        imap.select(mailbox.mailbox, readonly=True)
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def check_mail(ctx: Context) -> list[Finding]:
    """Each watched mailbox: connect, log in, open the folder read-only."""
    found = []
    for mailbox in ctx.config.mail:
        title = f"mail {mailbox.name}"
        password = mailbox.password or ctx.environ.get(mailbox.password_env, "")
        if not password:
            found.append(Finding(FAIL, title, "no password", f"set mail[{mailbox.name}].password_env"))
            continue
        try:
            _login(mailbox, password, ctx.timeout)
        except (imaplib.IMAP4.error, OSError, ssl.SSLError, socket.timeout) as e:
            found.append(Finding(FAIL, title, scrub_text(f"{mailbox.user}@{mailbox.host}:{mailbox.port}: {e}", [password]),
                                 "check host, port, tls, user and password"))
            continue
        found.append(Finding(OK, title, f"{mailbox.user}@{mailbox.host}:{mailbox.port} logged in, {mailbox.mailbox} opened"))
    return found


def check_providers(ctx: Context) -> list[Finding]:
    """Each model provider: reachable and the key accepted (its model list, which costs nothing)."""
    found = []
    for n, provider in enumerate(ctx.config.brain.providers):
        title = f"provider {provider.kind} {provider.model}"
        key = provider.api_key or ctx.environ.get(provider.api_key_env, "")
        if not key:
            found.append(Finding(FAIL, title, "no API key", f"set {provider.api_key_env}"))
            continue
        if provider.kind == "anthropic":
            url, headers = f"{provider.base_url}/v1/models", {"x-api-key": key, "anthropic-version": "2023-06-01"}
        else:
            url, headers = f"{provider.base_url}/models", {"Authorization": f"Bearer {key}"}
        try:
            code, _ = _ask(url, headers, ctx.timeout)
        except (OSError, ValueError) as e:
            found.append(Finding(FAIL, title, scrub_text(f"cannot reach {provider.base_url}: {getattr(e, 'reason', e)}", [key]),
                                 "check the network and base_url"))
            continue
        if code in (401, 403):
            found.append(Finding(FAIL, title, f"key refused (HTTP {code})", f"replace the key in {provider.api_key_env}"))
        elif code >= 400:
            found.append(Finding(WARN, title, f"{url} answered HTTP {code}", "the key may still work for chat"))
        else:
            found.append(Finding(OK, title, f"{provider.base_url} accepted the key"))
    return found
