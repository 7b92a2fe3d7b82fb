"""The shipper's command-line front, shared by ``logarchive ship`` and ``logarchive-ship``:
its description, its arguments and one run."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import threading
import time

from ..awserrors import error_hint
from ..errors import LogarchiveError
from ..options import (
    add_aws_options,
    add_deprecated,
    add_progress_option,
    aws_profile,
    positive_int,
    progress_enabled,
)
from .config import DEFAULT_DOCKER_ROOT, DEFAULT_PODS_ROOT, ENV_PREFIX, ShipConfig
from .loop import Shipper
from .report import ProgressLine
from .state import state_error

DESCRIPTION = (
    "Stage every closed Docker json-file log and, with --pods-root, every closed Kubernetes (CRI) "
    "log under /var/log/pods (rotated files, logs of stopped containers, and with --max-age old "
    "parts of running ones) in S3, each byte exactly once. Every "
    f"option can also be set as {ENV_PREFIX}<NAME> or in a TOML file (--config)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"TOML file of options (default: ${ENV_PREFIX}CONFIG, else none)")
    p.add_argument("--docker-root", help=f"Docker's data root (default {DEFAULT_DOCKER_ROOT} when "
                   "--pods-root is not given either; both may be given)")
    p.add_argument("--pods-root", nargs="?", const=DEFAULT_PODS_ROOT, metavar="DIR",
                   help=f"ship a Kubernetes node's CRI logs from kubelet's DIR (default without DIR: "
                   f"{DEFAULT_PODS_ROOT}; container ids from ../containers when present; default: off)")
    p.add_argument("--staging",
                   help="s3://BUCKET/PREFIX to stage segments in (required, here or in the config)")
    p.add_argument("--stack",
                   help="stack name, the first part of every staging key (required, here or in the config)")
    p.add_argument("--state", help="SQLite state file (default /var/lib/logarchive/ship.db)")
    p.add_argument("--host", help="host name recorded on each segment (default: this host's)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_const", const=True, default=None,
                      help="one pass, print a summary, exit (1 if a problem was met)")
    mode.add_argument("--interval", help="daemon mode: a pass every INTERVAL (like 60s); SIGTERM stops "
                      "(default: none; --once or --interval is required; the command line's choice overrides "
                      "the environment's, which overrides the config file's)")
    p.add_argument("--max-age", help="ship a running container's log once its oldest unshipped line "
                   "is older than this (default 1h; 0 = never)")
    p.add_argument("--settle", help="quiet time before a stopped container's unterminated last line "
                   "ships (default 30s)")
    p.add_argument("--metrics-file", help="after each pass, write its figures to this file in Prometheus's "
                   "text format for node_exporter's textfile collector (default: none)")
    p.add_argument("--dry-run", action="store_const", const=True, default=None,
                   help="print what would ship; upload nothing, change no state")
    # chalicelib.options, not commands/_common: that imports the key ring (cryptography, ~2 MiB
    # of RSS) which the shipper never needs.
    add_aws_options(p)
    p.add_argument("--part-size", help="multipart part size, like 8MiB (default 8MiB)")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="parts in flight per upload (default 1: lowest memory)")
    add_deprecated(p, "--concurrency", new="--jobs", dest="jobs", type=positive_int, metavar="N")
    add_progress_option(p)
    p.add_argument("--max-attempts", type=int, help="S3 attempts per request, with backoff (default 8)")
    p.add_argument("--give-up-after", type=positive_int, metavar="N",
                   help="passes a file may fail to read or decompress before it is given up: its readable "
                   "part ships, the rest is explained as lost (default 3)")
    p.add_argument("--rebuild-state", action="store_const", const=True, default=None,
                   help="the state file is missing or empty but this host has history in S3: rebuild "
                   "segment numbers and byte offsets from it first (default: refuse to start)")
    p.add_argument("--archive-bucket", help="archive bucket whose objects' metadata --rebuild-state reads "
                   "(default: none; only the staging bucket's objects and markers)")
    for what in ("app", "database", "endpoint", "service"):
        p.add_argument(f"--{what}-label", help=f"container label holding the {what} id "
                       f"(default logarchive.{what}_id)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cli = {k: v for k, v in vars(args).items() if k in ShipConfig.option_names()}
    cfg = ShipConfig.resolve(cli, config_path=args.config)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # one line per event of ours, not theirs
    stop = threading.Event()
    progress = ProgressLine() if (cfg.once and not cfg.dry_run and progress_enabled(args)) else None
    with aws_profile(cfg.profile):  # --profile, LOGARCHIVE_SHIP_PROFILE or profile = "..."
        if not cfg.dry_run:
            _check_credentials()
        shipper = Shipper(cfg, stop=stop, progress=progress)
        try:
            return _run(cfg, shipper, stop, progress)
        except sqlite3.Error as exc:  # the state file failed mid-pass (locked, disk full, damaged)
            raise state_error(cfg.state, exc) from None
        finally:
            shipper.close()


def _check_credentials() -> None:
    """No credentials at all: one line saying what to do, not one failed upload per segment."""
    import botocore.session
    from botocore.exceptions import NoCredentialsError

    if botocore.session.get_session().get_credentials() is None:
        raise LogarchiveError(error_hint(NoCredentialsError()))


def _run(cfg: ShipConfig, shipper: Shipper, stop: threading.Event, progress: ProgressLine | None) -> int:
    if cfg.once or cfg.dry_run:
        t0 = time.monotonic()
        summary = shipper.run_pass()
        if progress is not None:
            progress.close()
        print(summary.render(dry_run=cfg.dry_run, seconds=time.monotonic() - t0), flush=True)
        return 0 if summary.ok else 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("logarchive.ship").setLevel(logging.INFO)
    return shipper.run_forever()
