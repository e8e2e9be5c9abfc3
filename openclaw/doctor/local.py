"""The doctor's checks of this machine: permissions, token, ports, store, daemon, unit, disk, limits."""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import shutil
import socket
import sqlite3
import stat
import sys
import urllib.error
import urllib.request

from openclaw.config import ConfigError, read_yaml
from openclaw.config.loading import build_config
from openclaw.doctor.findings import FAIL, OK, WARN, Context, Finding


def check_permissions(ctx: Context) -> list[Finding]:
    """The home is ours and private; secret files are not readable by others."""
    if not os.path.isdir(ctx.home):
        return [Finding(WARN, "home", f"{ctx.home} does not exist yet", f"openclaw init --home {ctx.home}")]
    found = []
    if not os.access(ctx.home, os.W_OK | os.X_OK):
        found.append(Finding(FAIL, "home", f"{ctx.home} is not writable by this user",
                             f"chown -R $(id -un) {ctx.home}, or run as its owner"))
    mode = stat.S_IMODE(os.stat(ctx.home).st_mode)
    found.append(Finding(WARN, "home", f"{ctx.home} is mode {mode:o}", f"chmod 700 {ctx.home}")
                 if mode & 0o077 else Finding(OK, "home", f"{ctx.home} (mode {mode:o})"))
    secret_files = [os.path.join(ctx.home, "gateway.token")]
    if ctx.path and _holds_secret(ctx.path):
        secret_files.append(ctx.path)
    for path in secret_files:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append(Finding(FAIL, "secret file", f"{path} holds a secret and is mode {mode:o}",
                                 f"chmod 600 {path}"))
        else:
            found.append(Finding(OK, "secret file", f"{path} (mode {mode:o})"))
    return found


def _holds_secret(path: str) -> bool:
    try:
        return bool(build_config(read_yaml(path), path=path).secrets({}))
    except ConfigError:
        return False


def check_token(ctx: Context) -> list[Finding]:
    """A token the CLI and clients can use: configured, in the environment or in the home."""
    if ctx.environ.get("OPENCLAW_GATEWAY_TOKEN") or ctx.config.gateway.token:
        token = ctx.environ.get("OPENCLAW_GATEWAY_TOKEN") or ctx.config.gateway.token
        where = "OPENCLAW_GATEWAY_TOKEN" if ctx.environ.get("OPENCLAW_GATEWAY_TOKEN") else "gateway.token"
    else:
        where = os.path.join(ctx.home, "gateway.token")
        try:
            with open(where, encoding="utf-8") as f:
                token = f.read().strip()
        except FileNotFoundError:
            return [Finding(WARN, "token", f"no {where} yet", "start the daemon once: it generates the token")]
        except OSError as e:
            return [Finding(FAIL, "token", f"cannot read {where} ({e.strerror})", f"check the owner and mode of {where}")]
    if len(token) < 16:
        return [Finding(WARN, "token", f"{where} is only {len(token)} characters",
                        "use a long random token (or remove it: the daemon generates one)")]
    return [Finding(OK, "token", f"from {where}")]


def _port(listen: str) -> int | None:
    parts = listen.split(":")
    return int(parts[1]) if parts[0] in ("tcp", "tcp6") and len(parts) > 1 and parts[1].isdigit() else None


def port_holder(port: int) -> str | None:
    """``pid N (name)`` of the process listening on TCP ``port``, from /proc (Linux); else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc") if inodes else []):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
                    return f"pid {pid} ({f.read().strip()})"
        except OSError:
            continue
    return None


def check_ports(ctx: Context) -> list[Finding]:
    """The gateway and web ports are free, or held by this home's daemon."""
    found = []
    for name, listen in (("gateway", ctx.config.gateway.listen), ("web", ctx.config.web.listen)):
        port = _port(listen)
        if port is None or port == 0:
            found.append(Finding(OK, f"{name} port", f"{listen} (not a fixed TCP port)"))
            continue
        running_url = ctx.running.get("gateway" if name == "gateway" else "web") or ""
        if running_url.rstrip("/").endswith(f":{port}"):
            found.append(Finding(OK, f"{name} port", f"{port} held by this daemon (pid {ctx.running.get('pid')})"))
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    found.append(Finding(FAIL, f"{name} port", f"cannot bind {port}: {e.strerror}",
                                         f"choose another {name}.listen"))
                    continue
                holder = port_holder(port) or "another process"
                found.append(Finding(FAIL, f"{name} port", f"{port} is held by {holder}",
                                     f"stop it, or set {name}.listen to a free port"))
                continue
        found.append(Finding(OK, f"{name} port", f"{port} is free"))
    return found


def check_store(ctx: Context) -> list[Finding]:
    """SQLite: integrity and schema version; Redis: reachable, version and persistence."""
    url = ctx.config.store.url
    if url.startswith("redis://"):
        return _redis(url, ctx.timeout)
    from openclaw.store.sqlite import SCHEMA_VERSION

    path = url[len("sqlite:///"):] if url else os.path.join(ctx.home, "data", "openclaw.sqlite3")
    if not os.path.exists(path):
        return [Finding(OK, "store", f"SQLite {path} will be created at the first start")]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=ctx.timeout)
        try:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as e:
        return [Finding(FAIL, "store", f"SQLite {path}: {e}", "restore the file from a backup, or move it aside")]
    if integrity != "ok":
        return [Finding(FAIL, "store", f"SQLite {path} integrity check: {integrity}",
                        "stop the daemon and restore the file from a backup")]
    if version > SCHEMA_VERSION:
        return [Finding(FAIL, "store", f"SQLite {path} has schema {version}, this openclaw knows {SCHEMA_VERSION}",
                        "upgrade openclaw, or restore an older file")]
    return [Finding(OK, "store", f"SQLite {path}: integrity ok, schema {version}"
                    + ("" if version == SCHEMA_VERSION else f" (migrates to {SCHEMA_VERSION} at start)"))]


def _redis_info(host: str, port: int, timeout: float) -> dict[str, str]:
    """``INFO`` over a plain socket (no client library needed for one read)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"INFO\r\n")
        data = b""
        while not data.startswith(b"$") or b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            data += chunk
        if data.startswith(b"-"):
            raise OSError(data.split(b"\r\n")[0][1:].decode(errors="replace"))
        length = int(data[1:data.index(b"\r\n")])
        body = data[data.index(b"\r\n") + 2:]
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            body += chunk
    return dict(line.split(":", 1) for line in body.decode(errors="replace").splitlines() if ":" in line)


def _redis(url: str, timeout: float) -> list[Finding]:
    address = url[len("redis://"):].split("/")[0]
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "6379")
    try:
        info = _redis_info(host or "127.0.0.1", int(port or 6379), timeout)
    except (OSError, ValueError) as e:
        return [Finding(FAIL, "store", f"Redis {address}: {e}", "start Redis, or fix store.url")]
    found = [Finding(OK, "store", f"Redis {address} {info.get('redis_version', '?')} reachable")]
    aof, rdb = info.get("aof_enabled") == "1", info.get("rdb_last_bgsave_status")
    if not aof and rdb is None:
        found.append(Finding(WARN, "store persistence", "neither AOF nor RDB snapshots",
                             "enable appendonly yes (or save) in redis.conf"))
    else:
        found.append(Finding(OK, "store persistence", "AOF on" if aof else f"RDB snapshots (last: {rdb})"))
    return found


def check_daemon(ctx: Context) -> list[Finding]:
    """The running daemon: reachable, its config digest against the file's, uptime, services."""
    if not ctx.running:
        return [Finding(WARN, "daemon", "not running (no live <home>/daemon.json)",
                        f"twistd -n openclaw --home {ctx.home}, or openclaw service install")]
    url = (ctx.running.get("web") or "") + "health"
    try:
        with urllib.request.urlopen(url, timeout=ctx.timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read())
        except ValueError:
            return [Finding(FAIL, "daemon", f"{url} answered HTTP {e.code}", "see openclaw logs")]
    except (OSError, ValueError) as e:
        return [Finding(FAIL, "daemon", f"pid {ctx.running.get('pid')} does not answer at {url}: "
                        f"{getattr(e, 'reason', e)}", "see openclaw logs; restart it")]
    found = [Finding(OK if body.get("status") == "ok" else WARN, "daemon",
                     f"pid {ctx.running.get('pid')} {body.get('status')}, up {body.get('uptime', 0):.0f}s",
                     "; ".join(body.get("problems") or []) or "see openclaw status")]
    digest = (body.get("config") or {}).get("digest")
    if ctx.config_ok and digest and digest != ctx.config.digest():
        found.append(Finding(WARN, "daemon config", f"running digest {digest}, the file's is {ctx.config.digest()}",
                             "openclaw reload (or restart for what a reload cannot change)"))
    for name, state in sorted((body.get("services") or {}).items()):
        found.append(Finding(OK if state in ("running", "ok") else WARN, f"service {name}", str(state),
                             "see openclaw status and openclaw logs --level warn"))
    return found


def check_unit(ctx: Context) -> list[Finding]:
    """An installed user unit matches what ``service install`` would write now."""
    from openclaw.system.install import Target, _render, choose_manager, unit_path

    manager = choose_manager(sys.platform, None)
    target = Target(manager, "user", unit_path(manager, "user", None, ctx.environ))
    try:
        with open(target.path, encoding="utf-8") as f:
            installed = f.read()
    except FileNotFoundError:
        return [Finding(OK, "service unit", f"none installed at {target.path} (optional)")]
    except OSError as e:
        return [Finding(WARN, "service unit", f"cannot read {target.path}: {e.strerror}")]
    args = argparse.Namespace(home=ctx.home, run_as=None, run_as_group=None)
    wanted = _render(args, target, ctx.environ)[0]
    if installed != wanted:
        return [Finding(WARN, "service unit", f"{target.path} differs from what this openclaw writes",
                        f"openclaw service install --force --home {ctx.home}")]
    return [Finding(OK, "service unit", f"{target.path} is current")]


MIN_FREE_BYTES, LOW_FREE_BYTES = 100 * 2**20, 1024 * 2**20
MIN_NOFILE = 4096


def check_disk(ctx: Context) -> list[Finding]:
    """Free space where the home (logs, store) lives."""
    where = ctx.home if os.path.isdir(ctx.home) else os.path.dirname(ctx.home) or "/"
    try:
        free = shutil.disk_usage(where).free
    except OSError as e:
        return [Finding(WARN, "disk", f"cannot stat {where}: {e.strerror}")]
    text = f"{free / 2**30:.1f} GiB free at {where}"
    if free < MIN_FREE_BYTES:
        return [Finding(FAIL, "disk", text, "free space: logs and the store stop being written")]
    if free < LOW_FREE_BYTES:
        return [Finding(WARN, "disk", text, "free some space soon")]
    return [Finding(OK, "disk", text)]


def check_nofile(ctx: Context) -> list[Finding]:
    """The open-files limit the daemon can raise itself to (its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    text = f"soft {soft}, hard {hard if hard != resource.RLIM_INFINITY else 'unlimited'}"
    if limit < MIN_NOFILE:
        return [Finding(WARN, "open files", text + f"; under {MIN_NOFILE} caps connections",
                        "raise it (LimitNOFILE= in the unit, or ulimit -Hn)")]
    return [Finding(OK, "open files", text)]
