"""What a pass tells the world besides its summary: the host's heartbeat in the staging bucket
and, with ``--metrics-file``, the same figures for node_exporter's textfile collector.

The heartbeat is ``<prefix>/<stack>/<host>/_heartbeat.json`` (``staged.heartbeat_key``; the
scheduler never takes it for a segment), replaced by every pass that is not a dry run::

    {"host", "time" (end of the pass, RFC 3339 UTC micros), "shipper_version", "containers_seen",
     "bytes_shipped" (this pass), "bytes_waiting", "oldest_waiting_age_seconds" (or null),
     "last_error" ("" if none)}

These are the fields of the digest's ``hosts`` entries (docs/AUDIT.md): the archive run copies
each host's latest heartbeat into the next signed digest, which is how an audit of the buckets
alone can say that a host went silent. ``bytes_waiting`` counts the bytes of live logs not staged
yet at the end of the pass (complete lines waiting for ``--max-age`` or a stop, and an
unterminated last line); ``oldest_waiting_age_seconds`` is the age of the oldest complete line
among them (by its Docker time), null when no complete line waits.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from .. import __version__
from ..awserrors import error_hint, error_label
from ..dockerlog import format_utc, line_time
from ..staged import heartbeat_key
from .config import ShipConfig
from .identity import first_line, last_line_end
from .report import Summary, human

log = logging.getLogger("logarchive.ship")
SHIPPER_VERSION = __version__


def waiting(fh: BinaryIO, start: int, size: int) -> tuple[int, float | None]:
    """(bytes of ``[start, size)``, Docker time of its first line as epoch seconds when that line
    is complete and has a time, else None) of a plain live log."""
    if size <= start:
        return 0, None
    if last_line_end(fh, start, size) <= start:
        return size - start, None  # only an unterminated last line waits
    t = line_time(first_line(fh, start))
    return size - start, (t.timestamp() if t else None)


def document(cfg: ShipConfig, s: Summary, now: float, last_error: str = "") -> dict[str, Any]:
    """The heartbeat of the pass ``s``, ended at ``now`` (epoch seconds)."""
    age = None if s.oldest_waiting is None else round(max(0.0, now - s.oldest_waiting), 3)
    return {
        "host": cfg.host,
        "time": format_utc(datetime.fromtimestamp(now, UTC)),
        "shipper_version": SHIPPER_VERSION,
        "containers_seen": s.containers,
        "bytes_shipped": s.bytes,
        "bytes_waiting": s.waiting_bytes,
        "oldest_waiting_age_seconds": age,
        "last_error": s.last_error or last_error,
    }


def prometheus(doc: dict[str, Any], s: Summary, shipped_total: int, pass_seconds: float) -> str:
    """node_exporter's textfile format (Prometheus text exposition 0.0.4) of one pass."""
    host = doc["host"].replace("\\", "\\\\").replace('"', '\\"')
    label = f'{{host="{host}"}}'
    rows = [
        ("logarchive_ship_last_pass_timestamp_seconds", "gauge", "end of the last pass (Unix time)",
         _epoch(doc["time"])),
        ("logarchive_ship_last_pass_duration_seconds", "gauge", "how long the last pass took", pass_seconds),
        ("logarchive_ship_containers", "gauge", "containers seen by the last pass", doc["containers_seen"]),
        ("logarchive_ship_pass_bytes_shipped", "gauge", "bytes staged by the last pass",
         doc["bytes_shipped"]),
        ("logarchive_ship_pass_segments_shipped", "gauge", "segments staged by the last pass", s.segments),
        ("logarchive_ship_bytes_shipped_total", "counter", "bytes staged since this process started",
         shipped_total),
        ("logarchive_ship_bytes_waiting", "gauge", "bytes of live logs not staged yet", doc["bytes_waiting"]),
        ("logarchive_ship_oldest_waiting_age_seconds", "gauge",
         "age of the oldest complete line not staged yet (0: none waits)",
         doc["oldest_waiting_age_seconds"] or 0),
        ("logarchive_ship_pass_problems", "gauge", "problems met by the last pass", sum(s.problems.values())),
    ]
    out = []
    for name, kind, text, value in rows:
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name}{label} {_number(value)}"]
    return "\n".join(out) + "\n"


def _epoch(rfc3339: str) -> float:
    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _number(v: float | int) -> str:
    return str(v) if isinstance(v, int) else repr(float(v))


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` by a rename in the same folder: a collector reading it never sees
    half a file (node_exporter's textfile collector documents exactly this)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".logarchive-ship-", suffix=".prom.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class PassReporter:
    """After each pass (not a dry run): the heartbeat, then the metrics file if asked for. Neither
    can fail the pass: a failure is logged and carried as ``last_error`` into the next heartbeat."""

    def __init__(self, cfg: ShipConfig, client: Any, bucket: str, prefix: str) -> None:
        self.cfg, self.client, self.bucket = cfg, client, bucket
        self.key = heartbeat_key(prefix, cfg.stack, cfg.host)
        self.shipped_total = 0
        self._carried = ""  # the previous heartbeat's own failure

    def after_pass(self, s: Summary) -> dict[str, Any] | None:
        if self.cfg.dry_run:
            return None
        now = time.time()
        self.shipped_total += s.bytes
        doc = document(self.cfg, s, now, self._carried)
        self._carried = ""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, ContentType="application/json",
                                   Body=json.dumps(doc, sort_keys=True).encode())
        except (ClientError, BotoCoreError) as exc:
            why = error_label(exc) if isinstance(exc, ClientError) else (error_hint(exc) or str(exc))
            self._carried = f"heartbeat s3://{self.bucket}/{self.key} not written ({why})"
            log.warning("%s", self._carried)
        path = self.cfg.metrics_file
        if path:
            try:
                write_atomically(path, prometheus(doc, s, self.shipped_total, now - s.started))
            except OSError as exc:
                self._carried = self._carried or f"metrics file {path}: {exc.strerror or exc}"
                log.warning("metrics file %s not written: %s", path, exc.strerror or exc)
        return doc


def pass_line(s: Summary, seconds: float) -> str:
    """The daemon's one INFO line per pass, also when nothing shipped."""
    oldest = ("" if s.oldest_waiting is None
              else f" (oldest complete line {max(0.0, time.time() - s.oldest_waiting):.0f} s old)")
    problems = sum(s.problems.values())
    return (f"pass: {s.containers} containers in {seconds:.1f} s; {s.segments} segments ({human(s.bytes)}) "
            f"shipped; {human(s.waiting_bytes)} waiting{oldest}; {problems} problems"
            + "".join(f"; {n}× {r}" for r, n in s.problems.most_common(3)))
