"""
openclaw start-up time, idle memory and shutdown time.

    .venv/bin/python bench/startup.py [--runs 5] [--idle 10] [--importtime]

Each run starts the daemon exactly as an operator would,

    twistd -n --pidfile= openclaw --home=<fresh tmp dir> --gateway=tcp:<port>:interface=127.0.0.1
           --web=tcp:<port>:interface=127.0.0.1 --log-level=info

(``subprocess.Popen``, free ports found by binding port 0), and measures

* start-to-ready: from just before ``Popen`` to the first ``GET /readyz`` that
  returns 200 (polled every 10 ms, bounded by 10 s), and the CPU time (user +
  system) the daemon had used by then, which other load on the machine
  disturbs far less than the wall-clock time;
* idle RSS: ``VmRSS`` from ``/proc/<pid>/status`` after ``--idle`` seconds
  (default 10) with no client;
* stop: SIGTERM, then the time until the process has exited, and its exit code
  (bounded by 20 s, then SIGKILL).

It prints each run and min/median/max against the targets (ready <= 0.6 s
with ``.pyc`` files, idle RSS < 60 MB).  ``--importtime`` adds the 10 modules with the largest
cumulative import time under ``python -X importtime -c "import openclaw.tree"``
and the RSS of that bare import.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import free_port, rss_kb  # noqa: E402  (bench/ is not a package)

READY_TARGET_S = 0.6
RSS_TARGET_MB = 60.0


def twistd() -> str:
    return os.path.join(os.path.dirname(sys.executable), "twistd")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(idle: float) -> dict:
    home = tempfile.mkdtemp(prefix="openclaw-startup-")
    web = free_port()
    cmd = [
        twistd(), "-n", "--pidfile=", "openclaw", f"--home={home}",
        f"--gateway=tcp:{free_port()}:interface=127.0.0.1",
        f"--web=tcp:{web}:interface=127.0.0.1", "--log-level=info",
    ]
    url = f"http://127.0.0.1:{web}/readyz"
    out = open(os.path.join(home, "daemon.out"), "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=home)
    ready = cpu = None
    try:
        while time.perf_counter() - t0 < 10.0:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=0.5) as r:
                    if r.status == 200:
                        ready = time.perf_counter() - t0
                        cpu = cpu_s(proc.pid)
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.01)
        rss_ready = rss_kb(proc.pid) if proc.poll() is None else 0
        rss_idle = 0
        if ready is not None:
            time.sleep(idle)
            if proc.poll() is None:
                rss_idle = rss_kb(proc.pid)
    finally:
        t1 = time.perf_counter()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        stop = time.perf_counter() - t1
        out.close()
    if ready is not None and code == 0:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  (kept {home} for inspection: daemon.out has the daemon's output)")
    return {"ready": ready, "cpu": cpu, "rss_ready_kb": rss_ready, "rss_idle_kb": rss_idle, "stop": stop, "code": code}


def summary(values: list[float]) -> str:
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"


def importtime(top: int = 10) -> None:
    """The modules with the largest cumulative import time, and the bare import's RSS."""
    code = "import openclaw.tree"
    # One warm-up import so the page cache is warm (and .pyc files are written if allowed).
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        rows.append((int(cum_us), int(self_us), name.rstrip(), name.strip()))
    total = sum(s for _c, s, _raw, _n in rows)
    print(f"\n## python -X importtime -c {shlex.quote(code)}: top {top} by cumulative time "
          f"(all imports: {total / 1000:.0f} ms)")
    print("| cumulative ms | self ms | module |")
    print("|--------------:|--------:|--------|")
    for cum, self_us, _raw, name in sorted(rows, reverse=True)[:top]:
        print(f"| {cum / 1000:.1f} | {self_us / 1000:.1f} | {name} |")
    # Self time summed per top-level package: no double counting, adds up to the total.
    per_package: dict[str, int] = {}
    for _cum, self_us, _raw, name in rows:
        per_package[name.split(".")[0]] = per_package.get(name.split(".")[0], 0) + self_us
    print("\nself time by top-level package (ms): " + ", ".join(
        f"{n} {v / 1000:.0f}" for n, v in sorted(per_package.items(), key=lambda kv: -kv[1])[:12]))
    rss = subprocess.run(
        [sys.executable, "-c", code + "; print(open('/proc/self/status').read())"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    for line in rss.splitlines():
        if line.startswith("VmRSS:"):
            print(f"RSS of `python -c {shlex.quote(code)}` alone: {int(line.split()[1]) / 1024:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="openclaw start-to-ready time, idle RSS and stop time")
    parser.add_argument("--runs", type=int, default=5, help="number of runs (default 5)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading RSS (default 10)")
    parser.add_argument("--importtime", action="store_true", help="also show the slowest imports of openclaw.tree (the whole tree, TLS included)")
    args = parser.parse_args(argv)

    # SIGTERM to this script unwinds through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import twisted

    print("# command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}  host: {platform.node()}  nproc: {os.cpu_count()}")
    print(f"# Python {platform.python_version()}, Twisted {twisted.__version__}; "
          f"{args.runs} runs, {args.idle:g} s idle each; fresh --home per run")
    import openclaw

    pkg = os.path.dirname(openclaw.__file__)
    cached = os.path.isdir(os.path.join(pkg, "__pycache__")) or bool(os.environ.get("PYTHONPYCACHEPREFIX"))
    print(f"# PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}; "
          f"openclaw .pyc cache {'present' if cached else 'ABSENT: every start compiles openclaw from source'}")
    runs = []
    for i in range(args.runs):
        r = one_run(args.idle)
        runs.append(r)
        ready = f"{r['ready']:.3f} s" if r["ready"] is not None else "NOT READY in 10 s"
        cpu = f" (CPU {r['cpu']:.3f} s)" if r["cpu"] is not None else ""
        print(f"  run {i + 1}: ready {ready}{cpu}  RSS at ready {r['rss_ready_kb'] / 1024:.1f} MB  "
              f"idle {r['rss_idle_kb'] / 1024:.1f} MB  stop {r['stop']:.3f} s  exit {r['code']}")
        sys.stdout.flush()

    ok = [r for r in runs if r["ready"] is not None]
    print()
    if ok:
        ready = [r["ready"] for r in ok]
        idle = [r["rss_idle_kb"] / 1024 for r in ok]
        stop = [r["stop"] for r in ok]
        print("| measure | min | median | max | target |")
        print("|---------|----:|-------:|----:|--------|")
        print(f"| start to /readyz 200 (s) | {min(ready):.3f} | {statistics.median(ready):.3f} | {max(ready):.3f} "
              f"| <= {READY_TARGET_S} s: {'met' if statistics.median(ready) <= READY_TARGET_S else 'MISSED'} |")
        cpu = [r["cpu"] for r in ok]
        print(f"| CPU to /readyz 200 (s) | {min(cpu):.3f} | {statistics.median(cpu):.3f} | {max(cpu):.3f} | |")
        print(f"| RSS after {args.idle:g} s idle (MB) | {min(idle):.1f} | {statistics.median(idle):.1f} | "
              f"{max(idle):.1f} | < {RSS_TARGET_MB:g} MB: "
              f"{'met' if statistics.median(idle) < RSS_TARGET_MB else 'MISSED'} |")
        print(f"| SIGTERM to exit (s) | {min(stop):.3f} | {statistics.median(stop):.3f} | {max(stop):.3f} | |")
    codes = sorted({str(r["code"]) for r in runs})
    print(f"exit codes after SIGTERM: {', '.join(codes)}; runs not ready: {len(runs) - len(ok)}")
    if args.importtime:
        importtime()
    return 0 if len(ok) == len(runs) and codes == ["0"] else 1


if __name__ == "__main__":
    sys.exit(main())
