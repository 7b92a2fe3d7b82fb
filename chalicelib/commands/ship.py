"""``logarchive ship``: stage closed Docker container logs in S3, each byte exactly once."""

from __future__ import annotations

import argparse

from ..shipper.cli import DESCRIPTION, add_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ship",
        help="stage closed container logs of this Docker host in S3 (the host shipper)",
        description=DESCRIPTION,
    )
    add_arguments(p)
