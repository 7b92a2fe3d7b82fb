"""``logarchive-ship`` (or ``python -m chalicelib.shipper``): ``logarchive ship`` on its own.

The same options and behaviour; it imports only the shipper, not every ``logarchive``
subcommand, which keeps the resident daemon small (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import run_command
from .cli import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="logarchive-ship", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    return run_command("logarchive-ship", run, args)


if __name__ == "__main__":
    sys.exit(main())
