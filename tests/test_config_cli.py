"""``openclaw config check`` and ``openclaw config show``: every error, sources, masked secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given, strategies as st

from openclaw.config import EX_CONFIG, build_config
from openclaw.config_cli import MASK, masked
from tests.process import clean_env

OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENCLAW, "config", *args], capture_output=True, text=True, timeout=60, env=clean_env(**env))


def test_check_reports_every_error_and_exits_78(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("gateway:\n  listen: 3\n  nope: 1\nweb:\n  listen: x\nsurprise: {}\n")
    out = run("check", str(path))
    assert out.returncode == EX_CONFIG and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("config error: ") for line in lines)
    assert {"gateway.listen", "gateway.nope", "web.listen", "surprise"} == {line.split(": ")[1] for line in lines}


def test_check_passes_a_good_file_and_a_missing_one_is_an_error(tmp_path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text("lanes:\n  max_queue: 5\n")
    good = run("check", str(path))
    assert good.returncode == 0 and good.stdout.startswith(f"config ok: {path}")
    missing = run("check", str(tmp_path / "none.yaml"))
    assert missing.returncode == EX_CONFIG and "cannot read config file" in missing.stderr


def test_show_names_each_source_and_masks_secrets(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "openclaw.yaml").write_text(
        "gateway:\n  token: file-s3cr3t-token\nlanes:\n  max_queue: 5\n"
        "connectors:\n  telegram:\n    token: tg-s3cr3t\n"
        "brain:\n  providers: [{kind: openai, model: m, api_key: sk-s3cr3t}]\n")
    out = run("show", "--home", str(home), "--json", "--log-level", "debug", OPENCLAW_LANES_MAX_CONCURRENT="3")
    assert out.returncode == 0, out.stderr
    assert "s3cr3t" not in out.stdout
    values = json.loads(out.stdout)["values"]
    assert values["lanes.max_queue"] == {"value": 5, "source": f"file {home / 'openclaw.yaml'}"}
    assert values["lanes.max_concurrent"] == {"value": 3, "source": "environment OPENCLAW_LANES_MAX_CONCURRENT"}
    assert values["log.level"] == {"value": "debug", "source": "flag"}
    assert values["outbox.max_attempts"] == {"value": 8, "source": "default"}
    assert values["gateway.token"]["value"] == MASK
    assert values["connectors.telegram"]["value"]["token"] == MASK
    assert values["brain.providers"]["value"][0]["api_key"] == MASK
    text = run("show", "--home", str(home))
    assert text.returncode == 0 and "s3cr3t" not in text.stdout
    assert f"lanes.max_queue = 5  # file {home / 'openclaw.yaml'}" in text.stdout.splitlines()


@given(st.text(max_size=20).map(lambda s: "s3cr3t-" + s))
def test_no_secret_survives_masking(secret) -> None:
    config = build_config({"gateway": {"token": secret}, "connectors": {"slack": {"bot_token": secret}},
                           "mail": [{"name": "m", "host": "h", "user": "u", "password": secret}]})
    shown = json.dumps(masked(config))
    assert "s3cr3t" not in shown and shown.count(MASK) == 3
