"""
The gateway token: from config, else read from (or generated into)
``<home>/gateway.token`` with mode 0600.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat

from openclaw.eliotutil import log


def load_or_create_token(path: str, configured: str) -> str:
    """
    The token clients must present.  A generated token is written with
    O_EXCL at 0600; an existing file with looser permissions is tightened.
    """
    if configured:
        return configured
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log("openclaw:gateway:token-permissions", level="warn", path=path, was=oct(mode))
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if token:
            return token
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    log("openclaw:gateway:token-created", path=path)
    return token


def token_matches(expected: str, offered: object) -> bool:
    """Constant-time comparison; anything but a string never matches."""
    if not isinstance(offered, str):
        return False
    return hmac.compare_digest(expected.encode(), offered.encode())
