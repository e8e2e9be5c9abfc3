"""
The web console's weight and how fast it comes up in a browser.

    .venv/bin/python bench/console.py [--loads 7]

Starts the daemon as an operator would (``twistd -n openclaw`` on free
loopback ports, a fresh home), then, in Debian's headless Chromium driven by
Playwright, loads ``/console/`` with the token in session storage ``--loads``
times, each in a fresh browser context (nothing cached), and measures

* load to live overview: from ``page.goto`` to the overview's status shown
  (the page fetched, ``config.json`` read, the gateway connected and
  ``console.subscribe`` answered);
* bytes transferred: the document's and every resource's ``transferSize``
  (Resource Timing), headers included; the budget is 200 KB.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import free_port  # noqa: E402  (bench/ is not a package)

CHROMIUM = "/usr/bin/chromium"
BUDGET = 200 * 1024


def start_daemon(home: str) -> tuple[subprocess.Popen, int]:
    web = free_port()
    cmd = [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=", "openclaw", "--home", home,
           "--gateway", f"tcp:{free_port()}:interface=127.0.0.1", "--web", f"tcp:{web}:interface=127.0.0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=home)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/readyz", timeout=0.5) as r:
                if r.status == 200:
                    return proc, web
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("the daemon did not become ready within 10 s")


def measure(web: int, token: str, loads: int) -> tuple[list[float], list[int]]:
    from playwright.sync_api import sync_playwright

    times, sizes = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(loads):
            context = browser.new_context()
            context.add_init_script(f"sessionStorage.setItem('openclaw.console.token', {token!r})")
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{web}/console/")
            page.wait_for_selector("#ov-status")
            times.append(time.perf_counter() - t0)
            sizes.append(page.evaluate("performance.getEntriesByType('navigation')[0].transferSize + "
                                       "performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0)"))
            context.close()
        browser.close()
    return times, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="openclaw-console-bench-")
    proc, web = start_daemon(home)
    try:
        with open(os.path.join(home, "gateway.token"), encoding="utf-8") as f:
            token = f.read().strip()
        times, sizes = measure(web, token, args.loads)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    ms = sorted(t * 1000 for t in times)
    print(f"load to live overview (n={len(ms)}): min {ms[0]:.0f} ms  median {statistics.median(ms):.0f} ms  "
          f"max {ms[-1]:.0f} ms")
    print(f"transferred per load: {max(sizes)} bytes (budget {BUDGET}: {'met' if max(sizes) < BUDGET else 'MISSED'})")


if __name__ == "__main__":
    main()
