"""Options of ``logarchive ship``: command line, then ``LOGARCHIVE_SHIP_*``, then a TOML file.

Every option has the three spellings: ``--max-age 24h``, ``LOGARCHIVE_SHIP_MAX_AGE=24h``,
``max_age = "24h"`` in the file named by ``--config`` / ``LOGARCHIVE_SHIP_CONFIG``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, fields
from typing import Any

from ..errors import LogarchiveError, UsageError
from ..options import parse_size, warn_deprecated

__all__ = ["ENV_PREFIX", "DEPRECATED", "ShipConfig", "parse_duration", "parse_size"]

ENV_PREFIX = "LOGARCHIVE_SHIP_"
# The mode is one option with two spellings: the highest-precedence source that sets either
# decides, and one source may not set both.
MODE = ("once", "interval")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*\Z", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | float | int) -> float:
    """``24h``, ``90m``, ``30s``, ``2d``, ``250ms`` or plain seconds; ``0``/``off`` disables."""
    if isinstance(text, int | float):
        return float(text)
    if text.strip().lower() in ("off", "none", "never"):
        return 0.0
    m = _DURATION.match(text)
    if not m:
        raise LogarchiveError(f"{text!r} is not a duration (like 24h, 90m, 30s)")
    return float(m[1]) * _UNITS[m[2]]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


DEFAULT_DOCKER_ROOT = "/var/lib/docker"
DEFAULT_PODS_ROOT = "/var/log/pods"

# Old spellings of options (command line, LOGARCHIVE_SHIP_<NAME>, config file): they still
# apply this release, with a deprecation line on stderr.
DEPRECATED = {"concurrency": "jobs"}


@dataclass
class ShipConfig:
    docker_root: str = ""  # "/var/lib/docker" when neither root is given
    pods_root: str = ""  # kubelet's /var/log/pods (CRI logs); off unless given
    staging: str = ""
    stack: str = ""
    state: str = "/var/lib/logarchive/ship.db"
    host: str = ""
    once: bool = False
    interval: float = 0.0  # seconds between passes in daemon mode
    max_age: float = 3600.0  # 0 = off; bounds how long a running container's complete line waits
    settle: float = 30.0  # a stopped container's unterminated last line ships after this quiet time
    dry_run: bool = False
    profile: str = ""
    endpoint_url: str = ""
    region: str = ""
    part_size: int = 8 << 20
    jobs: int = 1  # parts in flight; each more costs ~3 MiB RSS (see docs/PERFORMANCE.md)
    max_attempts: int = 8
    give_up_after: int = 3  # passes of the same read/decompress failure before a file is given up
    rebuild_state: bool = False  # an empty state on a host with history: rebuild it from S3
    archive_bucket: str = ""  # where --rebuild-state reads archive objects' metadata (optional)
    app_label: str = "logarchive.app_id"
    database_label: str = "logarchive.database_id"
    endpoint_label: str = "logarchive.endpoint_id"
    service_label: str = "logarchive.service_id"
    metrics_file: str = ""  # node_exporter textfile (heartbeat.py); "" = none

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def resolve(cls, cli: dict[str, Any], env: dict[str, str] | None = None,
                config_path: str | None = None) -> ShipConfig:
        """Merge: command line (non-None values) > environment > config file > defaults."""
        env = os.environ if env is None else env
        merged: dict[str, Any] = {}
        path = config_path or env.get(ENV_PREFIX + "CONFIG")
        if path:
            try:
                with open(path, "rb") as fh:
                    data = tomllib.load(fh)
            except OSError as exc:
                raise LogarchiveError(f"config file {path}: {exc.strerror or exc}") from None
            except tomllib.TOMLDecodeError as exc:
                raise LogarchiveError(f"config file {path}: {exc}") from None
            data = data.get("ship", data)  # a [ship] table, or top-level keys
            from_file: dict[str, Any] = {}
            for k, v in data.items():
                name = k.replace("-", "_")
                if name in DEPRECATED:  # an old spelling still applies, this release
                    warn_deprecated(f"{k!r} in config file {path}", repr(DEPRECATED[name]))
                    name = DEPRECATED[name]
                if name not in cls.option_names():
                    raise LogarchiveError(f"config file {path}: unknown option {k!r}")
                from_file[name] = v
            _merge(merged, from_file, f"config file {path}")
        from_env: dict[str, Any] = {}
        for old, name in DEPRECATED.items():
            if ENV_PREFIX + old.upper() in env:
                warn_deprecated(ENV_PREFIX + old.upper(), ENV_PREFIX + name.upper())
                from_env[name] = env[ENV_PREFIX + old.upper()]
        for name in cls.option_names():
            if ENV_PREFIX + name.upper() in env:
                from_env[name] = env[ENV_PREFIX + name.upper()]
        _merge(merged, from_env, "the environment")
        _merge(merged, {name: v for name, v in cli.items() if v is not None and name in cls.option_names()},
               "the command line")
        cfg = cls()
        for name, v in merged.items():
            setattr(cfg, name, _coerce(name, v, getattr(cls(), name)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.docker_root and not self.pods_root:
            self.docker_root = DEFAULT_DOCKER_ROOT
        if not self.host:
            self.host = socket.gethostname().split(".")[0]
        # Every missing option at once, as argparse names them (each may also come from
        # LOGARCHIVE_SHIP_<NAME> or a config file).
        missing = [opt for opt, value in (("--staging", self.staging), ("--stack", self.stack)) if not value]
        if not self.once and self.interval <= 0 and not self.dry_run:
            missing.append("one of --once --interval")
        if missing:
            raise UsageError(f"the following arguments are required: {', '.join(missing)} (each may also "
                             f"come from {ENV_PREFIX}<NAME> or a config file)")
        if self.give_up_after < 1:
            raise UsageError(f"--give-up-after must be at least 1, not {self.give_up_after}")
        if "/" in self.host or "/" in self.stack:
            raise LogarchiveError("stack and host names cannot contain '/'")


def _sets_mode(name: str, value: Any) -> bool:
    """Does ``name = value`` choose a mode? ``once = false`` and ``interval = 0`` choose none."""
    try:
        return _bool(value) if name == "once" else parse_duration(value) > 0
    except LogarchiveError:
        return True  # a bad duration: chosen, and refused with its own message later


def _merge(merged: dict[str, Any], source: dict[str, Any], where: str) -> None:
    """Lay one source over the lower ones. A source that sets ``--once`` or ``--interval``
    replaces the mode of lower sources whole; setting both is a usage error."""
    chosen = [name for name in MODE if name in source and _sets_mode(name, source[name])]
    if len(chosen) == 2:
        raise UsageError(f"{where} sets both once and interval: one mode only (--once: one pass; "
                         "--interval: a daemon)")
    if chosen:
        for name in MODE:
            merged.pop(name, None)
    merged.update(source)


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name in ("interval", "max_age", "settle"):
        return parse_duration(value)
    if name == "part_size":
        return parse_size(value)
    if isinstance(default, bool):
        return _bool(value)
    if isinstance(default, int):
        return int(value)
    return str(value)
