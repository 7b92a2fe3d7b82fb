"""The shipper's mode option, its heartbeat, ``--metrics-file`` and the daemon's pass line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import test_ship
from dockerfake import json_line
from patience import patience
from test_ship import HOST, ROOT, STACK, args

from chalicelib import cli
from chalicelib.errors import UsageError
from chalicelib.shipper.config import ShipConfig
from chalicelib.staged import heartbeat_key, is_reserved

BASE = {"staging": "s3://b/p", "stack": "s"}
fake = test_ship.fake  # the same fake Docker root fixture


def heartbeat(bucket: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=heartbeat_key("staged", STACK, HOST))["Body"]
    return json.loads(body.read())


# -- one mode option: the highest-precedence source that sets --once or --interval wins ---------

def _toml(tmp_path: Path, text: str) -> str:
    conf = tmp_path / "ship.toml"
    conf.write_text(text)
    return str(conf)


def test_mode_command_line_overrides_config_file(tmp_path) -> None:
    # The case: once = true in the file, --interval 2s on the command line: a daemon.
    conf = _toml(tmp_path, 'once = true\n')
    cfg = ShipConfig.resolve({**BASE, "interval": "2s"}, env={}, config_path=conf)
    assert (cfg.once, cfg.interval) == (False, 2.0)
    cfg = ShipConfig.resolve({**BASE, "once": True}, env={}, config_path=_toml(tmp_path, 'interval = "60s"\n'))
    assert (cfg.once, cfg.interval) == (True, 0.0)


def test_mode_environment_overrides_config_file(tmp_path) -> None:
    conf = _toml(tmp_path, 'interval = "60s"\n')
    cfg = ShipConfig.resolve(BASE, env={"LOGARCHIVE_SHIP_ONCE": "1"}, config_path=conf)
    assert (cfg.once, cfg.interval) == (True, 0.0)
    cfg = ShipConfig.resolve(BASE, env={"LOGARCHIVE_SHIP_INTERVAL": "5s"}, config_path=_toml(tmp_path, "once = true\n"))
    assert (cfg.once, cfg.interval) == (False, 5.0)


def test_mode_command_line_overrides_environment() -> None:
    cfg = ShipConfig.resolve({**BASE, "interval": "3s"}, env={"LOGARCHIVE_SHIP_ONCE": "true"})
    assert (cfg.once, cfg.interval) == (False, 3.0)
    cfg = ShipConfig.resolve({**BASE, "once": True}, env={"LOGARCHIVE_SHIP_INTERVAL": "3s"})
    assert (cfg.once, cfg.interval) == (True, 0.0)


def test_mode_from_config_file_alone(tmp_path) -> None:
    assert ShipConfig.resolve(BASE, env={}, config_path=_toml(tmp_path, "once = true\n")).once
    cfg = ShipConfig.resolve(BASE, env={}, config_path=_toml(tmp_path, 'interval = "90s"\nonce = false\n'))
    assert (cfg.once, cfg.interval) == (False, 90.0)  # once = false chooses nothing


def test_both_modes_in_one_source_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(UsageError, match="config file .* sets both once and interval"):
        ShipConfig.resolve(BASE, env={}, config_path=_toml(tmp_path, 'once = true\ninterval = "60s"\n'))
    with pytest.raises(UsageError, match="the environment sets both once and interval"):
        ShipConfig.resolve(BASE, env={"LOGARCHIVE_SHIP_ONCE": "1", "LOGARCHIVE_SHIP_INTERVAL": "60s"})
    with pytest.raises(UsageError, match="the command line sets both"):
        ShipConfig.resolve({**BASE, "once": True, "interval": "60s"}, env={})
    # argparse itself refuses both flags (exit 2), as it did; a higher source cannot be combined away.
    assert cli.main(["ship", "--staging", "s3://b/p", "--stack", "s", "--once", "--interval", "1s"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_max_age_defaults_to_one_hour() -> None:
    assert ShipConfig.resolve({**BASE, "once": True}, env={}).max_age == 3600.0


# -- the heartbeat ----------------------------------------------------------------------------

def test_every_pass_writes_a_heartbeat_with_what_waits(buckets, fake, tmp_path, capsys) -> None:
    web = fake.add("web")  # running: its live log waits for --max-age
    old = datetime.now(UTC) - timedelta(minutes=10)
    for i in range(3):
        web.write(json_line(f"web {i}", ns=int((old + timedelta(seconds=i)).timestamp() * 1e9)), rotate=False)
    web.write(b'{"log":"half a li', rotate=False)
    done = fake.add("done")
    done.log("finished")
    done.stop()
    before = datetime.now(UTC)
    assert cli.main(args(tmp_path, buckets.staging, "--once", "--settle", "0")) == 0
    capsys.readouterr()
    hb = heartbeat(buckets.staging)
    assert set(hb) == {"host", "time", "shipper_version", "containers_seen", "bytes_shipped", "bytes_waiting",
                       "oldest_waiting_age_seconds", "last_error"}
    assert (hb["host"], hb["containers_seen"], hb["last_error"]) == (HOST, 2, "")
    assert hb["bytes_shipped"] == len(done.written)
    assert hb["bytes_waiting"] == len(web.written)
    assert 600 <= hb["oldest_waiting_age_seconds"] < 600 + patience(120)
    assert datetime.strptime(hb["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) >= before
    assert hb["shipper_version"]
    assert is_reserved(heartbeat_key("staged", STACK, HOST))  # the scheduler never takes it

    # --max-age 5m ships the complete lines; the half line still waits, with no complete line.
    assert cli.main(args(tmp_path, buckets.staging, "--once", "--max-age", "5m")) == 0
    capsys.readouterr()
    hb = heartbeat(buckets.staging)
    assert (hb["bytes_waiting"], hb["oldest_waiting_age_seconds"]) == (len(b'{"log":"half a li'), None)
    assert hb["bytes_shipped"] == len(web.written) - len(b'{"log":"half a li')


def test_a_pass_that_cannot_read_docker_still_beats_with_its_error(buckets, tmp_path, capsys) -> None:
    rc = cli.main(args(tmp_path, buckets.staging, "--once", "--docker-root", str(tmp_path / "none")))
    assert rc == 1
    capsys.readouterr()
    hb = heartbeat(buckets.staging)
    assert hb["containers_seen"] == 0 and "Docker data root unreadable" in hb["last_error"]
    assert str(tmp_path / "none") in hb["last_error"]


def test_dry_run_writes_no_heartbeat(buckets, fake, tmp_path, capsys) -> None:
    fake.add("x").log("y")
    assert cli.main(args(tmp_path, buckets.staging, "--dry-run")) == 0
    listed = boto3.client("s3").list_objects_v2(Bucket=buckets.staging).get("Contents", [])
    assert listed == []


def test_metrics_file_in_prometheus_text_format(buckets, fake, tmp_path, capsys) -> None:
    c = fake.add("app")
    c.log("one")
    c.stop()
    prom = tmp_path / "textfile" / "logarchive.prom"
    prom.parent.mkdir()
    assert cli.main(args(tmp_path, buckets.staging, "--once", "--settle", "0", "--metrics-file", str(prom))) == 0
    text = prom.read_text()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP logarchive_ship_", "# TYPE logarchive_ship_"))
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    label = f'{{host="{HOST}"}}'
    assert samples[f"logarchive_ship_pass_bytes_shipped{label}"] == len(c.written)
    assert samples[f"logarchive_ship_bytes_shipped_total{label}"] == len(c.written)
    assert samples[f"logarchive_ship_containers{label}"] == 1
    assert samples[f"logarchive_ship_pass_problems{label}"] == 0
    assert abs(samples[f"logarchive_ship_last_pass_timestamp_seconds{label}"] - time.time()) < patience(300)
    assert "# TYPE logarchive_ship_bytes_shipped_total counter" in text
    assert os.listdir(prom.parent) == ["logarchive.prom"]  # renamed into place, no temporary left


def test_daemon_logs_one_line_per_pass_even_when_nothing_ships(buckets, fake, tmp_path) -> None:
    fake.add("idle")  # running, empty: nothing ever ships
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", *args(tmp_path, buckets.staging,
                                 "--interval", "0.05")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + patience(60)
        while log.read_text().count("pass: ") < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=patience(30))
    text = log.read_text()
    passes = [line for line in text.splitlines() if "pass: " in line]
    assert len(passes) >= 2, text[-2000:]
    assert passes[0].startswith("INFO ") or "INFO" in passes[0]
    assert "1 containers" in passes[0] and "0 segments (0 B) shipped" in passes[0] and "0 problems" in passes[0]
