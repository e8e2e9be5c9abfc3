"""
Message pipeline throughput and latency: ``chat.send`` through the real daemon,
on the SQLite store and on the Redis store.

    .venv/bin/python bench/pipeline.py [--duration 5] [--warmup 1] [--stores sqlite,redis]
                                       [--levels 1:1,100:10,1000:50] [--window 50]
                                       [--redis redis://127.0.0.1:6379/0] [--grace 5]
                                       [--no-pin] [--json FILE] [--profile FILE] [--store-rows N]
    .venv/bin/python bench/pipeline.py --growth [--store-rows 50000] [--growth-rate 420]
                                       [--idle-seconds 20] [--overload-duration 30] [--overload-max-wait 1s]

For each store it starts the daemon (``twistd -n --pidfile= openclaw --home <tmp>
--gateway ... --web ... --log-level info`` with ``OPENCLAW_CONFIG=<home>/c.yaml``,
the same as ``--config``), and for each level ``SESSIONS:CONNECTIONS`` runs a load
generator in its own process (``--client``: the same minimal WebSocket client
idea as ``bench/gateway.py``) that authenticates every connection and then sends
``{"method":"chat.send","params":{"text":"/status","session":"webchat:bench-<n>"}}``,
the sessions spread round-robin over the connections:

1. **acknowledged throughput**: every connection keeps ``--window`` sends
   outstanding (sent, not yet acknowledged), sending the next on each ``res``;
   acks/s and replies/s (``chat.reply`` events whose ``reply_to`` is an
   acknowledged ``event_id``) counted in the measured window;
2. **latency** (``half-acks``): a rate-limited sender at half the acks/s found
   in 1, spread over the same connections; p50/p99 from a ``chat.send`` written
   to the socket to its ``chat.reply`` received, for messages sent in the
   measured window;
3. **latency** (``target-half``): the same at half the ``--target`` rate
   (1,000/s: the issue's "p99 under 50 ms at half that load");
4. **latency** (``half-replies``): the same at half the best replies/s seen in
   1 and 3 (the end-to-end rate: when acks outrun replies, half the ack rate is
   still an overload and its latency is queueing time).

Every phase gets a fresh daemon, so one phase's backlog is not measured in the next.

After each phase the generator stops sending and waits (at most ``--grace``
seconds) until every acknowledged message has its reply; what is still missing
then is reported. The config lifts the admission bounds (``lanes.max_queue``,
``max_pending``, ``max_wait``) so that nothing is refused (``busy``) and the
figures are throughput, not refusals. ``--store-rows N`` pre-fills each
daemon's SQLite store with N sent messages (SQL, before it starts).

``--growth`` runs issue 12's phases instead, with the default admission
bounds: idle CPU per minute (from ``schedstat``, over ``--idle-seconds``), CPU
per message at ``--growth-rate`` msg/s, and p99 at a fixed 1,000 msg/s with 100
and 1,000 sessions, each on a fresh store and on one with ``--store-rows``
(default 50,000); then a closed loop, and an offered load of 3x the capacity
(the best replies/s of the fresh-store phases) for ``--overload-duration`` s,
with the defaults and with ``lanes.max_wait`` set to ``--overload-max-wait``. Every value passed to the load generator follows
an ``=`` (``--token=...``): a token may start with ``-``.
For Redis the keys live under a random ``bench-<hex>:`` prefix and are deleted
afterwards. ``--profile FILE`` runs the daemon under ``python -m cProfile -o FILE``
(main thread only: the SQLite worker thread is not in the profile; its CPU is
reported separately from /proc per thread).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gateway as gw
from gateway import (
    cpu_seconds,
    percentile,
    pin,
    rss_kb,
    start_openclaw,
    stop,
    versions,
)

# --------------------------------------------------------------------------
# The load generator (runs in its own process: ``--client``)
# --------------------------------------------------------------------------


def _send_frame(req_id: int, session: bytes) -> bytes:
    return gw._ws_frame(0x1, b'{"type":"req","id":"%d","method":"chat.send","params":{"text":"/status",'
                             b'"session":"%s"}}' % (req_id, session))


def client_main(args: argparse.Namespace) -> int:
    """
    Connect, ``connect`` each connection with the token, print ``ready``, read
    the start time from stdin, run the phase (``--mode ack`` or ``--mode rate``),
    wait for the replies, print one JSON line, exit.
    """
    import orjson
    from twisted.internet import protocol, reactor, task

    perf = time.perf_counter
    loads = orjson.loads
    conns: list[Any] = []
    st: dict[str, Any] = {"opened": 0, "m0": 0.0, "m1": 0.0, "t0": 0.0, "started": False, "sending": False,
                          "sent": 0, "acked": 0, "acked_w": 0, "replied": 0, "replied_w": 0, "errors": 0,
                          "error_codes": {}, "lagged": 0, "unmatched": 0, "wait_s": 0.0}
    awaiting: dict[str, float] = {}   # event_id -> sent at, acknowledged but no reply yet
    early: dict[str, float] = {}      # event_id -> reply received before its ack
    latencies: list[int] = []
    ack_latencies: list[int] = []  # chat.send written -> its ack read, for messages acknowledged
    busy_latencies: list[int] = []  # chat.send written -> its busy error read: the wait before admission

    def done_reply(sent_at: float, now: float) -> None:
        st["replied"] += 1
        if st["m0"] <= now < st["m1"]:
            st["replied_w"] += 1
        if st["m0"] <= sent_at < st["m1"]:
            latencies.append(int((now - sent_at) * 1e6))

    def finished() -> bool:
        return not st["sending"] and not awaiting and not any(c.pending for c in conns)

    class Conn(gw.RawWebSocket):
        """One load connection: sends ``chat.send`` frames, matches acks and replies."""

        def __init__(self, index: int) -> None:
            self.index = index
            self.pending: dict[str, float] = {}  # request id -> sent at
            self.n = 0
            mine = range(index, args.sessions, args.conns)
            self.sessions = [b"webchat:%s-%d" % (args.tag.encode(), s) for s in mine]

        def send_one(self) -> None:
            self.n += 1
            self.pending[str(self.n)] = perf()
            st["sent"] += 1
            self.transport.write(_send_frame(self.n, self.sessions[self.n % len(self.sessions)]))

        def upgraded(self) -> None:
            self.transport.write(gw._ws_frame(0x1, json.dumps({
                "type": "req", "id": "c", "method": "connect",
                "params": {"token": args.token, "client": f"bench-c{self.index}"}}).encode()))

        def text(self, payload: bytes) -> None:
            self.message(loads(payload), perf())

        def message(self, msg: dict, now: float) -> None:
            if msg.get("type") == "event":
                if msg.get("event") == "chat.reply":
                    eid = msg["payload"].get("reply_to")
                    sent_at = awaiting.pop(eid, None)
                    if sent_at is None:
                        early[eid] = now
                    else:
                        done_reply(sent_at, now)
                return
            rid = msg.get("id")
            if rid == "c":
                if not msg.get("ok"):
                    sys.stderr.write(f"connect refused: {msg}\n")
                    reactor.stop()
                    return
                conns.append(self)
                if len(conns) == args.conns:
                    sys.stdout.write("ready\n")
                    sys.stdout.flush()
                return
            sent_at = self.pending.pop(rid)
            if msg.get("ok"):
                st["acked"] += 1
                if st["m0"] <= now < st["m1"]:
                    st["acked_w"] += 1
                if st["m0"] <= sent_at < st["m1"]:
                    ack_latencies.append(int((now - sent_at) * 1e6))
                eid = msg["payload"]["event_id"]
                if eid in early:
                    done_reply(sent_at, early.pop(eid))
                else:
                    awaiting[eid] = sent_at
            else:
                st["errors"] += 1
                code = msg.get("error", {}).get("code", "?")
                if code == "busy" and st["m0"] <= sent_at < st["m1"]:
                    busy_latencies.append(int((now - sent_at) * 1e6))
                st["error_codes"][code] = st["error_codes"].get(code, 0) + 1
            if args.mode == "ack" and st["sending"]:
                self.send_one()

    def stop_sending() -> None:
        st["sending"] = False
        stopped = perf()

        def check() -> None:
            if finished() or perf() - stopped > args.grace:
                st["wait_s"] = perf() - stopped
                reactor.stop()
            else:
                reactor.callLater(0.02, check)
        check()

    def tick() -> None:
        """Rate mode: send what is due by now, round-robin, skipping connections at the cap."""
        now = perf()
        if now >= st["m1"]:
            return
        due = int(args.rate * (now - st["t0"])) - st["sent"]
        i = st["sent"]
        for k in range(due):
            c = conns[(i + k) % len(conns)]
            if len(c.pending) >= args.window * 20:
                st["lagged"] += 1
                st["sent"] += 1  # counted as due; not sent
                continue
            c.send_one()

    def begin() -> None:
        st["t0"] = perf()
        st["sending"] = True
        if args.mode == "ack":
            for c in conns:
                for _ in range(args.window):
                    c.send_one()
        else:
            task.LoopingCall(tick).start(0.001)
        reactor.callLater(max(0.0, st["m1"] - perf()), stop_sending)

    host, port = args.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    for i in range(args.conns):
        reactor.connectTCP(host, int(port), protocol.ClientFactory.forProtocol(lambda i=i: Conn(i)))
    gw.await_start(st, args.warmup, args.duration, begin)
    reactor.callLater(30 + args.warmup + args.duration + args.grace, reactor.stop)  # hard bound
    reactor.run()
    st["missing_replies"] = len(awaiting)
    st["unacked"] = sum(len(c.pending) for c in conns)
    st["lat_us"] = latencies
    st["ack_lat_us"] = ack_latencies
    st["busy_lat_us"] = busy_latencies
    sys.stdout.write(json.dumps(st) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------
# The orchestrator
# --------------------------------------------------------------------------


def thread_cpu(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of ``pid``: the SQLite store
    runs its transactions on a worker thread."""
    main = other = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        secs = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if int(tid) == pid:
            main = secs
        else:
            other += secs
    return main, other


def client_args(url: str, token: str, sessions: int, conns: int, mode: str, rate: float, duration: float,
                args: argparse.Namespace) -> list[str]:
    """The load generator's arguments, every value after ``=``: a token starting with ``-`` is no option."""
    return ["--client", f"--url={url}", f"--token={token}", f"--conns={conns}", f"--sessions={sessions}",
            f"--mode={mode}", f"--rate={rate}", f"--window={args.window}", f"--warmup={args.warmup}",
            f"--duration={duration}", f"--grace={args.grace}"]


def run_phase(url: str, token: str, sessions: int, conns: int, mode: str, rate: float,
              args: argparse.Namespace, server_pid: int, client_cpus: set[int] | None,
              redis_pid: int | None, duration: float | None = None) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__),
           *client_args(url, token, sessions, conns, mode, rate, duration or args.duration, args)]
    client = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=pin(client_cpus))  # noqa: PLW1509 (as gateway.py)
    try:
        line = client.stdout.readline()
        if line.strip() != b"ready":
            raise SystemExit(f"load generator failed to connect (got {line!r})")
        start = time.time() + 0.2
        client.stdin.write(b"%r\n" % start)
        client.stdin.flush()
        m0 = start + args.warmup
        d = duration or args.duration
        time.sleep(max(0.0, m0 - time.time()))
        s0, c0 = thread_cpu(server_pid), cpu_seconds(client.pid)
        r0 = cpu_seconds(redis_pid) if redis_pid else 0.0
        time.sleep(max(0.0, m0 + d - time.time()))
        s1, c1 = thread_cpu(server_pid), cpu_seconds(client.pid)
        r1 = cpu_seconds(redis_pid) if redis_pid else 0.0
        out, _ = client.communicate(timeout=args.grace + 30)
        r = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    lat = sorted(r.pop("lat_us"))
    ack_lat = sorted(r.pop("ack_lat_us"))
    r["ack_p50_ms"], r["ack_p99_ms"] = percentile(ack_lat, 50) / 1000, percentile(ack_lat, 99) / 1000
    r["busy_p99_ms"] = percentile(sorted(r.pop("busy_lat_us")), 99) / 1000
    r.update({
        "acks_s": r["acked_w"] / d, "replies_s": r["replied_w"] / d, "latency_samples": len(lat),
        "p50_ms": percentile(lat, 50) / 1000, "p99_ms": percentile(lat, 99) / 1000,
        "max_ms": (lat[-1] / 1000) if lat else float("nan"),
        "server_cpu_main": (s1[0] - s0[0]) / d, "server_cpu_threads": (s1[1] - s0[1]) / d,
        "client_cpu": (c1 - c0) / d, "redis_cpu": (r1 - r0) / d if redis_pid else None,
        "target_rate": rate, "window": args.window,
    })
    return r


def redis_command(url: str, *parts: str) -> Any:
    """One command over RESP (no client library needed); returns int or bytes."""
    host_port = url.split("//", 1)[1].split("/", 1)
    host, port = host_port[0].rsplit(":", 1)
    db = host_port[1] if len(host_port) > 1 and host_port[1] else "0"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        def call(*args: str) -> bytes:
            s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                     for a in args))
            return s.recv(65536)
        call("SELECT", db)
        reply = call(*parts)
    if reply.startswith(b":"):
        return int(reply[1:].strip())
    return reply.strip()


_DELETE_PREFIX = ("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do "
                  "redis.call('DEL', k) n = n + 1 end return n")


def redis_pid_of(url: str) -> int | None:
    info = redis_command(url, "INFO", "server")
    for line in info.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            pid = int(line.split(b":")[1])
            return pid if os.path.exists(f"/proc/{pid}/stat") else None
    return None


def start_daemon(home: str, cpus: set[int] | None, profile: str | None) -> tuple[subprocess.Popen, int, str, Any]:
    """bench/gateway.py's ``start_openclaw``, optionally under ``python -m cProfile -o``.

    ``start_openclaw`` builds its own argv; to profile, its ``subprocess``
    module is swapped for one whose ``Popen`` prefixes the cProfile command.
    (Better: an ``argv_prefix`` parameter on ``start_openclaw``.)"""
    if not profile:
        return start_openclaw(home, cpus)
    real = gw.subprocess
    gw.subprocess = types.SimpleNamespace(
        STDOUT=real.STDOUT,
        Popen=lambda cmd, **kw: real.Popen([sys.executable, "-m", "cProfile", "-o", profile, *cmd], **kw))
    try:
        return start_openclaw(home, cpus)
    finally:
        gw.subprocess = real


def run_store(store: str, levels: list[tuple[int, int]], args: argparse.Namespace,
              server_cpus: set[int] | None, client_cpus: set[int] | None) -> dict[str, Any]:
    """Every phase gets a fresh daemon (fresh home; for Redis a fresh key prefix),
    so no backlog of one phase is measured in the next."""
    redis_pid = redis_pid_of(args.redis) if store == "redis" else None
    out: dict[str, Any] = {"levels": {}, "exit_codes": [], "rss_kb": 0, "redis_keys_deleted": 0}
    for sessions, conns in levels:
        res: dict[str, Any] = {}
        out["levels"][f"{sessions}:{conns}"] = res
        phases = [("throughput", "ack", lambda: 0.0)]
        if not args.profile:
            phases += [("target-half", "rate", lambda: args.target / 2),
                       ("half-acks", "rate", lambda res=res: max(1.0, res["throughput"]["acks_s"] / 2)),
                       ("half-replies", "rate",
                        lambda res=res: max(1.0, max(res["throughput"]["replies_s"], res["half-acks"]["replies_s"]) / 2))]
        for phase, mode, rate_of in phases:
            rate = rate_of()
            with daemon_for(store, args, server_cpus, out) as (pid, url, token):
                res[phase] = run_phase(url, token, sessions, conns, mode, rate, args, pid, client_cpus, redis_pid)
            show(store, sessions, conns, phase, res[phase])
    return out


#: The throughput phases measure the pipeline, not its admission: no bound is reached.
UNBOUNDED = "lanes: {max_queue: 100000, max_pending: 10000000, max_wait: 0}\n"


_FILLED: dict[int, str] = {}


def prefill(home: str, rows: int, now: float) -> None:
    """
    ``rows`` answered messages in the store the daemon will open (written
    with SQL before it starts): an inbound event done, its history and a
    sent outbox row each, spread over 1,000 old sessions within the last
    day (inside ``store.retention``, so nothing is pruned during the run).
    """
    from openclaw.store.sqlite import open_database

    db = open_database(os.path.join(home, "data", "openclaw.sqlite3"))
    db.execute("BEGIN")
    for i in range(rows):
        session, at = f"webchat:old-{i % 1000}", now - 86400 + i * 86400 / max(rows, 1)
        db.execute("INSERT INTO inbound (id, source, platform_message_id, session_id, type, timestamp, payload, "
                   "state) VALUES (?, 'webchat', ?, ?, 'message.received', ?, ?, 'done')",
                   (f"old-{i}", f"{session}/{i}", session, at, '{"text": "/status"}'))
        db.execute("INSERT INTO history (session_id, role, text, event_id, timestamp) VALUES (?, 'user', "
                   "'/status', ?, ?)", (session, f"old-{i}", at))
        db.execute("INSERT INTO outbox (id, dedupe_key, session_id, channel, text, reply_to, status, attempts, "
                   "next_attempt, created_at) VALUES (?, ?, ?, 'webchat', 'status text', ?, 'sent', 1, ?, ?)",
                   (f"out-{i}", f"reply:old-{i}", session, f"old-{i}", at, at))
    db.executemany("INSERT INTO sessions (session_id, channel, first_seen, last_active) VALUES (?, 'webchat', ?, ?)",
                   [(f"webchat:old-{k}", now - 86400, now) for k in range(min(rows, 1000))])
    db.execute("COMMIT")
    db.close()


@contextlib.contextmanager
def daemon_for(store: str, args: argparse.Namespace, server_cpus: set[int] | None, out: dict[str, Any],
               config: str = UNBOUNDED, rows: int | None = None) -> Any:
    """A fresh daemon (home, key prefix) with ``config``, its store pre-filled with ``rows`` (default ``--store-rows``)."""
    home = tempfile.mkdtemp(prefix=f"openclaw-bench-pipeline-{store}-")
    prefix = f"bench-{secrets.token_hex(6)}:"
    rows = args.store_rows if rows is None else rows
    if rows:
        if store != "sqlite":
            raise SystemExit("--store-rows: the SQLite store only")
        filled = _FILLED.get(rows)
        if filled is None:  # written once per run, copied for each daemon
            filled = _FILLED[rows] = tempfile.mkdtemp(prefix="openclaw-bench-filled-")
            prefill(filled, rows, time.time())
        shutil.copytree(os.path.join(filled, "data"), os.path.join(home, "data"))
    if store == "redis":
        config += f'store: {{url: "{args.redis}", prefix: "{prefix}"}}\n'
    config_path = os.path.join(home, "c.yaml")
    with open(config_path, "w") as f:
        f.write(config)
    if out.get("config") != config:
        out["config"] = config
        print(f"## store: {store}  config (OPENCLAW_CONFIG=<home>/c.yaml): {config.strip()!r}"
              + (f"; store pre-filled with {rows:,} sent messages" if rows else ""))
    os.environ["OPENCLAW_CONFIG"] = config_path  # inherited by the daemon: same as --config
    daemon = log = code = None
    try:
        daemon, gw_port, token, log = start_daemon(home, server_cpus, args.profile)
        yield daemon.pid, f"ws://127.0.0.1:{gw_port}", token
        out["rss_kb"] = max(out["rss_kb"], rss_kb(daemon.pid))
    finally:
        os.environ.pop("OPENCLAW_CONFIG", None)
        if daemon is not None:
            code = stop(daemon, timeout=args.stop_timeout)
            out["exit_codes"].append(code)
        if log is not None:
            log.close()
        if store == "redis":
            out["redis_keys_deleted"] += redis_command(args.redis, "EVAL", _DELETE_PREFIX, "0", prefix)
        if code == 0:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"# openclaw exit code {code} (None: killed after --stop-timeout); home kept: {home}")


def cpu_ns(pid: int) -> int:
    """CPU nanoseconds of every thread of ``pid`` (``schedstat``: finer than /proc/<pid>/stat's 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue
    return total


def idle_cpu(args: argparse.Namespace, server_cpus: set[int] | None, rows: int) -> dict[str, Any]:
    """CPU of an idle daemon over ``--idle-seconds`` (after 2 s of settling), scaled to a minute."""
    out: dict[str, Any] = {"exit_codes": [], "rss_kb": 0}
    with daemon_for("sqlite", args, server_cpus, out, config="", rows=rows) as (pid, _, _):
        time.sleep(2.0)
        t0, c0 = time.monotonic(), cpu_ns(pid)
        time.sleep(args.idle_seconds)
        used, took = (cpu_ns(pid) - c0) / 1e9, time.monotonic() - t0
    return {"ms_per_minute": used / took * 60 * 1000, "seconds": took, "exit_codes": out["exit_codes"]}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def run_growth(args: argparse.Namespace, server_cpus: set[int] | None,
               client_cpus: set[int] | None) -> dict[str, Any]:
    """
    Issue 12's figures on SQLite, each phase on a fresh daemon with the
    default admission bounds (``config: ""``): for a fresh store and one
    pre-filled with ``--store-rows`` (default 50,000) sent messages, idle
    CPU per minute, CPU per message at ``--growth-rate`` msg/s (100
    sessions), p99 at a fixed 1,000 msg/s with 100 and 1,000 sessions; then,
    on a fresh store, an offered load of 3x the capacity (replies/s of a
    closed-loop phase) for ``--overload-duration`` s.
    """
    rows = args.store_rows or 50_000
    results: dict[str, Any] = {"rows": rows}
    out: dict[str, Any] = {"exit_codes": [], "rss_kb": 0}

    def phase(label: str, n: int, sessions: int, conns: int, mode: str, rate: float, config: str = "",
              duration: float | None = None) -> dict[str, Any]:
        with daemon_for("sqlite", args, server_cpus, out, config=config, rows=n) as (pid, url, token):
            r = run_phase(url, token, sessions, conns, mode, rate, args, pid, client_cpus, None, duration)
        r["cpu_ms_per_reply"] = ((r["server_cpu_main"] + r["server_cpu_threads"]) * (duration or args.duration)
                                 / max(r["replied_w"], 1) * 1000)
        results[label] = r
        show("sqlite", sessions, conns, label, r)
        return r

    # Each figure's fresh and filled phases back to back, so that a change in
    # what else the machine runs shifts both halves of a ratio alike.
    sizes = [(0, "fresh"), (rows, f"{rows // 1000}k")]
    for n, tag in sizes:
        results[f"idle-{tag}"] = idle = idle_cpu(args, server_cpus, n)
        print(f"  sqlite idle ({tag}): {idle['ms_per_minute']:.0f} ms CPU per minute "
              f"(measured over {idle['seconds']:.1f} s)")
    for n, tag in sizes:
        phase(f"cpu-{tag}", n, 100, 10, "rate", args.growth_rate)
    for sessions, conns in ((100, 10), (1000, 50)):
        for n, tag in sizes:
            phase(f"fixed1000-{sessions}-{tag}", n, sessions, conns, "rate", 1000.0)
    # A closed loop resends at once on busy, and refusing costs the daemon too:
    # capacity is the best reply rate any fresh-store phase reached.
    phase("capacity", 0, 100, 10, "ack", 0.0)
    capacity = results["capacity_s"] = max(results[k]["replies_s"] for k in (
        "capacity", "cpu-fresh", "fixed1000-100-fresh", "fixed1000-1000-fresh"))
    for label, config in overload_variants(args):
        phase(label, 0, 100, 10, "rate", 3 * capacity, config=config, duration=args.overload_duration)
    results["exit_codes"] = out["exit_codes"]
    growth_table(results, args)
    return results


def overload_variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, config) of the overload phases: the defaults, then ``--overload-max-wait``."""
    return [("overload", ""), (f"overload-max_wait-{args.overload_max_wait}",
                               f"lanes: {{max_wait: {args.overload_max_wait}}}\n")]


def growth_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    tag = f"{results['rows'] // 1000}k"
    print()
    print("| figure | fresh store | " + tag + "-row store | ratio | target |")
    print("|---|---:|---:|---:|---|")
    idle0, idle1 = results["idle-fresh"]["ms_per_minute"], results[f"idle-{tag}"]["ms_per_minute"]
    print(f"| idle CPU, ms per minute | {idle0:.0f} | {idle1:.0f} | {ratio(idle1, idle0)} | <= 1.20 |")
    c0, c1 = results["cpu-fresh"], results[f"cpu-{tag}"]
    print(f"| CPU per message at {c0['target_rate']:.0f}/s, ms | {c0['cpu_ms_per_reply']:.3f} | "
          f"{c1['cpu_ms_per_reply']:.3f} | {ratio(c1['cpu_ms_per_reply'], c0['cpu_ms_per_reply'])} | <= 1.10 |")
    print(f"| p99 at {c0['target_rate']:.0f}/s, ms | {c0['p99_ms']:.1f} | {c1['p99_ms']:.1f} | "
          f"{ratio(c1['p99_ms'], c0['p99_ms'])} | |")
    for sessions in (100, 1000):
        f0, f1 = results[f"fixed1000-{sessions}-fresh"], results[f"fixed1000-{sessions}-{tag}"]
        print(f"| 1,000 msg/s, {sessions} sessions: p99 ms (replies/s, busy) | {f0['p99_ms']:.1f} "
              f"({f0['replies_s']:.0f}/s, {f0['error_codes'].get('busy', 0)}) | {f1['p99_ms']:.1f} "
              f"({f1['replies_s']:.0f}/s, {f1['error_codes'].get('busy', 0)}) | | < 50 ms |")
    print()
    print(f"capacity: {results['capacity_s']:.0f} replies/s, the best of the fresh-store phases")
    print("| overload (fresh store, 100 sessions) | offered/s | acks/s | replies/s | replies / acks | busy/s | "
          "p99 of acknowledged, send -> reply, ms | p50 / p99 send -> ack, ms | p99 send -> busy, ms | "
          "acknowledged without a reply |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cap = results["capacity"]
    print(f"| closed loop, window {cap['window']} | - | {cap['acks_s']:.0f} | {cap['replies_s']:.0f} | "
          f"{cap['replies_s'] / max(cap['acks_s'], 1):.2f} | | {cap['p99_ms']:.1f} | "
          f"{cap['ack_p50_ms']:.1f} / {cap['ack_p99_ms']:.1f} | {cap['busy_p99_ms']:.1f} | "
          f"{cap['missing_replies'] + cap['unacked']} |")
    for label, _ in overload_variants(args):
        r = results[label]
        d = r["acked_w"] / r["acks_s"] if r["acks_s"] else 1.0
        print(f"| {label} | {r['target_rate']:.0f} | {r['acks_s']:.0f} | {r['replies_s']:.0f} | "
              f"{r['replies_s'] / max(r['acks_s'], 1):.2f} | {r['error_codes'].get('busy', 0) / d:.0f} | "
              f"{r['p99_ms']:.1f} | {r['ack_p50_ms']:.1f} / {r['ack_p99_ms']:.1f} | {r['busy_p99_ms']:.1f} | "
              f"{r['missing_replies'] + r['unacked']} |")
    print(f"exit codes after SIGTERM: {results['exit_codes']}")


def show(store: str, sessions: int, conns: int, phase: str, r: dict[str, Any]) -> None:
    rate = f" at {r['target_rate']:.0f}/s" if r["target_rate"] else ""
    print(f"  {store:6s} {sessions:5d} sess / {conns:3d} conns {phase:12s}{rate}: acks {r['acks_s']:7.0f}/s  "
          f"replies {r['replies_s']:7.0f}/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
          f"cpu server {r['server_cpu_main']:.0%}+{r['server_cpu_threads']:.0%} client {r['client_cpu']:.0%}"
          + (f" redis {r['redis_cpu']:.0%}" if r["redis_cpu"] is not None else "")
          + f"  missing {r['missing_replies']} unacked {r['unacked']} (waited {r['wait_s']:.1f} s)"
          + (f"  ERRORS {r['error_codes']}" if r["errors"] else "")
          + (f"  LAGGED {r['lagged']}" if r["lagged"] else ""))
    sys.stdout.flush()


def table(results: dict[str, Any], levels: list[tuple[int, int]]) -> None:
    print("| store | sessions / conns | phase | offered/s | acks/s | replies/s | p50 ms | p99 ms | "
          "server CPU main+threads | client CPU | no reply after grace |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for store, sr in results.items():
        for sessions, conns in levels:
            for phase, r in sr["levels"].get(f"{sessions}:{conns}", {}).items():
                offered = f"{r['target_rate']:.0f}" if r["target_rate"] else f"window {r.get('window', '')}"
                print(f"| {store} | {sessions} / {conns} | {phase} | {offered} | {r['acks_s']:.0f} | "
                      f"{r['replies_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                      f"{r['server_cpu_main']:.0%}+{r['server_cpu_threads']:.0%} | {r['client_cpu']:.0%} | "
                      f"{r['missing_replies'] + r['unacked']} |")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="openclaw message pipeline: acknowledged messages/s and latency")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per phase (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of load first (default 1)")
    parser.add_argument("--stores", default="sqlite,redis", help="comma-separated: sqlite, redis (default both)")
    parser.add_argument("--levels", default="1:1,100:10,1000:50",
                        help="SESSIONS:CONNECTIONS pairs, comma-separated (default 1:1,100:10,1000:50)")
    parser.add_argument("--target", type=float, default=2000.0,
                        help="the throughput target; the target-half phase offers half of it (default 2000)")
    parser.add_argument("--window", type=int, default=50, help="outstanding sends per connection (default 50)")
    parser.add_argument("--grace", type=float, default=5.0,
                        help="seconds to wait for the replies after a phase (default 5)")
    parser.add_argument("--stop-timeout", type=float, default=5.0,
                        help="seconds after SIGTERM before the daemon is killed (default 5)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL for the redis store")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the daemon to CPU 0 and the client to CPU 1")
    parser.add_argument("--profile", help="run the daemon under cProfile, writing FILE (throughput phases only)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--store-rows", type=int, default=0,
                        help="pre-fill each daemon's SQLite store with N sent messages (default 0; --growth: 50000)")
    parser.add_argument("--growth", action="store_true",
                        help="issue 12's phases instead: store growth (fresh vs --store-rows) and overload")
    parser.add_argument("--growth-rate", type=float, default=420.0,
                        help="--growth: the fixed rate of the CPU-per-message phase (default 420)")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="--growth: seconds of idle CPU measured, scaled to a minute (default 20)")
    parser.add_argument("--overload-duration", type=float, default=30.0,
                        help="--growth: measured seconds of the 3x-capacity phases (default 30)")
    parser.add_argument("--overload-max-wait", default="1s",
                        help="--growth: lanes.max_wait of the second overload phase (default 1s)")
    # Internal: the load generator.
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--conns", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["ack", "rate"], help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="bench", help=argparse.SUPPRESS)  # session names: webchat:<tag>-<n>
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    if args.client:
        return client_main(args)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [tuple(int(x) for x in lv.split(":")) for lv in args.levels.split(",") if lv.strip()]
    for sessions, conns in levels:
        if conns > sessions:
            raise SystemExit(f"level {sessions}:{conns}: more connections than sessions")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    ncpu = os.cpu_count() or 1
    server_cpus, client_cpus = gw.cpu_sets(args.no_pin)
    gw.print_command()
    v = versions()
    import orjson
    v["orjson"] = orjson.__version__
    if "redis" in stores:
        v["redis_server"] = next((ln.split(b":")[1].decode() for ln in redis_command(args.redis, "INFO", "server")
                                  .split(b"\r\n") if ln.startswith(b"redis_version:")), "?")
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}  host: {platform.node()}  nproc: {ncpu}")
    print("# versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print("# pinning: " + ("daemon (all its threads) on CPU 0, load generator on CPU 1, Redis unpinned"
                           if server_cpus else "none (kernel decides)"))
    print(f"# each phase: {args.warmup:g} s warm-up, {args.duration:g} s measured; window {args.window} "
          f"outstanding sends per connection; replies waited for up to {args.grace:g} s")
    sys.stdout.flush()

    try:
        return run(args, levels, stores, v, server_cpus, client_cpus)
    finally:
        for filled in _FILLED.values():
            shutil.rmtree(filled, ignore_errors=True)


def run(args: argparse.Namespace, levels: list[tuple[int, int]], stores: list[str], v: dict[str, str],
        server_cpus: set[int] | None, client_cpus: set[int] | None) -> int:
    if args.growth:
        growth = run_growth(args, server_cpus, client_cpus)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"versions": v, "growth": growth}, f, indent=2)
        return 0
    results = {store: run_store(store, levels, args, server_cpus, client_cpus) for store in stores}
    print()
    table(results, levels)
    print()
    if "sqlite" in results:
        lvs = results["sqlite"]["levels"].values()
        best = max(lv["throughput"]["acks_s"] for lv in lvs)
        print(f"target: >= {args.target:g} acknowledged messages/s on SQLite: best {best:.0f}/s -> "
              f"{'MET' if best >= args.target else 'MISSED'}")
        for phase in ("target-half", "half-acks", "half-replies"):
            p99s = [lv[phase]["p99_ms"] for lv in lvs if phase in lv]
            if p99s:
                print(f"target: p99 < 50 ms at {phase} load on SQLite: worst {max(p99s):.1f} ms -> "
                      f"{'MET' if max(p99s) < 50 else 'MISSED'}")
    missing = sum(ph["missing_replies"] + ph["unacked"] for sr in results.values()
                  for lv in sr["levels"].values() for ph in lv.values())
    print(f"acknowledged messages without a reply after the grace period (all phases): {missing}")
    saturated = [f"{s}@{k}/{p}" for s, sr in results.items() for k, lv in sr["levels"].items()
                 for p, ph in lv.items() if ph["client_cpu"] >= 0.9]
    if saturated:
        print(f"note: the load generator was CPU-bound (>= 90% of its core) for: {', '.join(saturated)}")
    for store, sr in results.items():
        print(f"openclaw ({store}): max RSS at the end of a phase {sr['rss_kb'] / 1024:.1f} MB; exit codes after "
              f"SIGTERM {sr['exit_codes']}" + (f"; Redis keys deleted: {sr['redis_keys_deleted']}"
                                               if store == "redis" else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": v, "levels": levels, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
