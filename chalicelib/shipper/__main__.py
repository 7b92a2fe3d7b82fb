"""``logarchive-ship`` (or ``python -m chalicelib.shipper``): ``logarchive ship`` on its own.

The same options and behaviour; it imports only the shipper, not every ``logarchive``
subcommand, which keeps the resident daemon small (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import sys

from .. import logsetup
from ..errors import run_command
from .cli import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="logarchive-ship", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (not botocore's requests: see --debug-aws; default: off)")
    parser.add_argument("--debug-aws", action="store_true",
                        help="also log botocore's requests and responses, secrets redacted (default: off)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logsetup.configure(verbose=args.verbose, debug_aws=args.debug_aws)
    return run_command("logarchive-ship", run, args)


if __name__ == "__main__":
    sys.exit(main())
