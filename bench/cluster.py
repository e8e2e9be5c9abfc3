"""
Several instances on one Redis: acknowledged and replied messages/s and
latency with 1, 2 and 3 daemons, beside one daemon on SQLite, in one run.

    .venv/bin/python bench/cluster.py [--duration=4] [--warmup=2] [--instances=1,2,3]
                                      [--rate=1000] [--sessions=100] [--conns=10] [--window=50]
                                      [--grace=3] [--json=FILE]

Starts its own ``redis-server`` on a free port (AOF on, ``appendfsync
everysec``, in a temporary directory) and, for each configuration
(``sqlite x1``, then ``redis xN`` for each N of ``--instances``) and
phase, N fresh daemons (``twistd -n openclaw``, fresh homes, one key
prefix shared by the N: no backlog of one phase is measured in the next)
and one load generator per daemon (``bench/pipeline.py --client``:
``--conns`` connections, ``--sessions`` webchat sessions of its own).
Two phases per configuration:

1. ``rate``: ``--rate`` messages/s in total, split evenly over the
   instances; p50/p99 from a ``chat.send`` written to its ``chat.reply``
   received (the reply may be worked out by another instance and pushed
   through Redis pub/sub);
2. ``throughput``: every connection keeps ``--window`` sends outstanding;
   acks/s and replies/s in the measured window.

Nothing is pinned: the daemons, Redis and the generators share the
machine's cores as they would on one host, and each process's CPU use in
the measured window is printed (from /proc), so the limit shows: the cores
(their sum near the core count), Redis (its process near 100%) or round
trips (neither). Whole run: about 2 x (warmup + duration + grace + ~4) s per
configuration. Prints the command first and a Markdown table last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gateway as gw  # noqa: E402
import pipeline  # noqa: E402
from gateway import cpu_seconds, percentile, start_openclaw, stop, versions  # noqa: E402


@contextlib.contextmanager
def redis_server() -> Any:
    """A redis-server of this run's own, on a free port, AOF on (everysec); removed afterwards."""
    directory = tempfile.mkdtemp(prefix="openclaw-bench-cluster-redis-")
    port = gw.free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--appendonly", "yes",
         "--appendfsync", "everysec", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if pipeline.redis_command(url, "PING") == b"+PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        stop(proc, timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def instances(store: str, n: int, redis_url: str) -> Any:
    """``n`` daemons sharing one store (a fresh prefix on ``redis_url``): [(pid, url, token)]."""
    prefix = f"bench-{secrets.token_hex(6)}:"
    config = "lanes: {max_queue: 100000}\n"
    if store == "redis":
        config += f'store: {{url: "{redis_url}", prefix: "{prefix}"}}\n'
    started: list[tuple[Any, str, Any, tuple[int, str, str]]] = []  # (process, home, its output, what tests use)
    try:
        for i in range(n):
            home = tempfile.mkdtemp(prefix=f"openclaw-bench-cluster-{store}{n}-{i}-")
            with open(os.path.join(home, "c.yaml"), "w") as f:
                f.write(config)
            os.environ["OPENCLAW_CONFIG"] = os.path.join(home, "c.yaml")  # inherited: the same as --config
            try:
                proc, port, token, log = start_openclaw(home, None)
            finally:
                os.environ.pop("OPENCLAW_CONFIG", None)
            started.append((proc, home, log, (proc.pid, f"ws://127.0.0.1:{port}", token)))
        yield [entry[3] for entry in started], config
    finally:
        for proc, home, log, _ in started:
            code = stop(proc, timeout=10)
            log.close()
            if code == 0:
                shutil.rmtree(home, ignore_errors=True)
            else:
                print(f"# openclaw exit code {code} (None: killed); home kept: {home}")
        if store == "redis":
            pipeline.redis_command(redis_url, "EVAL", pipeline._DELETE_PREFIX, "0", prefix)


def run_phase(daemons: list[tuple[int, str, str]], mode: str, rate: float, args: argparse.Namespace,
              redis_pid: int | None) -> dict[str, Any]:
    """One load generator per daemon, started together; figures summed over them, latencies merged."""
    clients = []
    try:
        for k, (_, url, token) in enumerate(daemons):
            # Every value after "=" (pipeline.client_args): a token starting with "-" is no option.
            cmd = [sys.executable, os.path.join(HERE, "pipeline.py"),
                   *pipeline.client_args(url, token, args.sessions, args.conns, mode, rate / len(daemons),
                                         args.duration, args), f"--tag=i{k}"]
            clients.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        for client in clients:
            line = client.stdout.readline()
            if line.strip() != b"ready":
                raise SystemExit(f"load generator failed to connect (got {line!r})")
        start = time.time() + 0.3
        for client in clients:
            client.stdin.write(b"%r\n" % start)
            client.stdin.flush()
        watched = {f"openclaw-{k}": pid for k, (pid, _, _) in enumerate(daemons)}
        watched.update({f"client-{k}": c.pid for k, c in enumerate(clients)})
        if redis_pid:
            watched["redis"] = redis_pid
        m0 = start + args.warmup
        time.sleep(max(0.0, m0 - time.time()))
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        time.sleep(max(0.0, m0 + args.duration - time.time()))
        cpu = {name: (cpu_seconds(pid) - before[name]) / args.duration for name, pid in watched.items()}
        results = []
        for client in clients:
            out, _ = client.communicate(timeout=args.grace + 30)
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    lat = sorted(v for r in results for v in r.pop("lat_us"))
    total = {key: sum(r[key] for r in results)
             for key in ("acked_w", "replied_w", "missing_replies", "unacked", "errors", "lagged")}
    return {
        **total, "acks_s": total["acked_w"] / args.duration, "replies_s": total["replied_w"] / args.duration,
        "p50_ms": percentile(lat, 50) / 1000, "p99_ms": percentile(lat, 99) / 1000, "samples": len(lat),
        "cpu": cpu, "rate": rate, "error_codes": [r["error_codes"] for r in results if r["errors"]],
    }


def show(name: str, phase: str, r: dict[str, Any]) -> None:
    offered = f"{r['rate']:.0f}/s" if r["rate"] else f"window {r.get('window', '')}"
    cpu = " ".join(f"{k} {v:.0%}" for k, v in r["cpu"].items())
    print(f"  {name:9s} {phase:10s} {offered:>10s}: acks {r['acks_s']:6.0f}/s replies {r['replies_s']:6.0f}/s "
          f"p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms | cpu {cpu} (sum {sum(r['cpu'].values()):.0%})"
          f" | no reply {r['missing_replies'] + r['unacked']}" + (f" ERRORS {r['error_codes']}" if r["errors"] else ""))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="openclaw: several instances on one Redis")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per phase (default 4)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds of load first (default 2)")
    parser.add_argument("--instances", default="1,2,3", help="instance counts on Redis (default 1,2,3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="total messages/s of the rate phase (default 1000)")
    parser.add_argument("--sessions", type=int, default=100, help="webchat sessions per load generator (default 100)")
    parser.add_argument("--conns", type=int, default=10, help="connections per load generator (default 10)")
    parser.add_argument("--window", type=int, default=50, help="outstanding sends per connection (default 50)")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for replies after a phase (default 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.instances.split(",") if n.strip()]
    gw.print_command()
    v = versions()
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}  host: {platform.node()}  nproc: {os.cpu_count()}  "
          f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (others' work shares the cores)")
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with redis_server() as (redis_url, redis_pid):
        v["redis_server"] = next((ln.split(b":")[1].decode() for ln in pipeline.redis_command(
            redis_url, "INFO", "server").split(b"\r\n") if ln.startswith(b"redis_version:")), "?")
        print("# versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
        print(f"# each phase: {args.warmup:g} s warm-up, {args.duration:g} s measured; per instance one generator "
              f"with {args.sessions} sessions over {args.conns} connections; nothing pinned")
        for store, n in [("sqlite", 1)] + [("redis", n) for n in counts]:
            name = f"{store} x{n}"
            results[name] = {}
            for phase, mode, rate in (("rate", "rate", args.rate), ("throughput", "ack", 0.0)):
                with instances(store, n, redis_url) as (daemons, config):
                    if phase == "rate":
                        print(f"## {name}: config {config.strip()!r}")
                    r = run_phase(daemons, mode, rate, args, redis_pid if store == "redis" else None)
                r["window"] = args.window
                results[name][phase] = r
                show(name, phase, r)
    print()
    print("| instances | phase | offered | acks/s | replies/s | p50 ms | p99 ms | CPU per process | CPU sum |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for name, phases in results.items():
        for phase, r in phases.items():
            offered = f"{r['rate']:.0f}/s" if r["rate"] else f"window {args.window}"
            cpu = ", ".join(f"{k} {val:.0%}" for k, val in r["cpu"].items())
            print(f"| {name} | {phase} | {offered} | {r['acks_s']:.0f} | {r['replies_s']:.0f} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {cpu} | {sum(r['cpu'].values()):.0%} |")
    print(f"\n# whole run {time.monotonic() - started:.0f} s; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": v, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
