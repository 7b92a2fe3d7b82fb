"""``logarchive logs-from-archive``: a drop-in for ``aptible logs_from_archive``, and more.

Same options and meaning as the reference CLI (``--bucket --region --stack
--decryption-keys --download-location --string-matches --app-id --database-id
--endpoint-id --container-id --start-date --end-date``); see docs/RETRIEVAL.md for what it
adds and where it differs.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any

import boto3

from .. import aws
from ..awserrors import error_label
from ..download import retrieval
from ..download.api_client import ApiClient
from ..errors import LogarchiveError, UsageError
from ..times import SYNTAX
from ._common import add_endpoint_options, add_key_options, keyring_from_args

# Not "logarchive": that is the Lambdas' Powertools logger (JSON on stdout) once telemetry is loaded.
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "logs-from-archive",
        aliases=["logs_from_archive"],
        help="search, download and decrypt archived container logs (drop-in for aptible logs_from_archive)",
        description="Without --download-location, lists the matching archives. Exit status 1 if "
        "nothing matched or any object failed; every other object is still processed.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bucket", help="the S3 bucket of the archive (this or --api-url is required)")
    p.add_argument("--stack", required=True, help="the stack whose logs to search")
    add_endpoint_options(p)
    add_key_options(p)
    p.add_argument("--download-location", metavar="DIR",
                   help="download here (DIR/<key less its first four components>); '-' writes to stdout "
                   "(default: only list the matching archives)")
    p.add_argument("--string-matches", nargs="+", default=[], metavar="S",
                   help="keep keys in which each of these regular expressions is found (default: none)")
    ids = p.add_argument_group("resource (exactly one, or --string-matches)")
    ids.add_argument("--app-id", metavar="N", help="an app's id (default: none)")
    ids.add_argument("--database-id", metavar="N", help="a database's id (default: none)")
    ids.add_argument("--endpoint-id", metavar="N", help="an endpoint's id (default: none)")
    ids.add_argument("--container-id", metavar="ID",
                     help="container id or a prefix of at least 12 characters (default: none)")
    p.add_argument("--start-date",
                   help="YYYY-MM-DD (UTC), with --end-date: archives overlapping these days (default: all "
                        "days)")
    p.add_argument("--end-date", help="YYYY-MM-DD (UTC), included whole (default: all days)")
    more = p.add_argument_group("beyond the reference CLI")
    more.add_argument("--start", help=f"drop lines before this time: {SYNTAX} (default: none dropped)")
    more.add_argument("--end", help="drop lines at or after this time, same syntax (default: none dropped)")
    more.add_argument("--grep", metavar="PATTERN",
                      help="keep lines whose log text matches this regex (default: all lines)")
    more.add_argument("--stream", choices=("stdout", "stderr"),
                      help="keep lines of this stream only (default: both)")
    more.add_argument("--decompress", action="store_true", help="write the logs uncompressed (.jsonl)")
    more.add_argument("--format", dest="fmt", choices=retrieval.FORMATS,
                      help="jsonl: the original lines; text: only their log text; either implies "
                           "--decompress "
                      "(default: the archive's gzip as is)")
    more.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel downloads (default 4)")
    more.add_argument("--verify-only", action="store_true",
                      help="check every matching archive's authentication tag; write no plaintext")
    where.add_argument("--api-url", metavar="URL",
                      help="search the retrieval API's index and download through its presigned URLs "
                      "(SigV4-signed; needs an id and a time range); decryption stays local (this or "
                      "--bucket "
                       "is required)")
    p.set_defaults(func=run)


def _selection(args: argparse.Namespace) -> retrieval.Selection:
    kind = rid = None
    for option, k in (("app_id", "apps"), ("database_id", "databases"), ("endpoint_id", "proxy")):
        value = getattr(args, option)
        if value is not None:
            if rid is not None:
                raise retrieval.SelectionError(
                    "You must specify only one of --app-id, --database-id, --endpoint-id or --container-id"
                )
            kind, rid = k, value
    return retrieval.Selection(
        stack=args.stack,
        string_matches=tuple(args.string_matches),
        kind=kind,
        resource_id=rid,
        container_id=args.container_id,
        start_date=retrieval.parse_date(args.start_date, "--start-date") if args.start_date else None,
        end_date=retrieval.parse_date(args.end_date, "--end-date") if args.end_date else None,
        start=retrieval.parse_instant(args.start, "--start") if args.start else None,
        end=retrieval.parse_instant(args.end, "--end") if args.end else None,
    )


def _progress(matches: list[retrieval.Match], enabled: bool) -> Any:
    """A bar on stderr counting the archives' bytes (one large archive moves it too)."""
    if not enabled:
        return None
    from tqdm import tqdm

    total = sum(m.size for m in matches)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                dynamic_ncols=True, postfix={"archives": f"0/{len(matches)}"})


def _api_client(args: argparse.Namespace) -> ApiClient:
    # Signing region: the execute-api host's, else --region, else the credential chain's.
    session = boto3.session.Session(region_name=args.region) if args.region else None
    return ApiClient(args.api_url, session=session)


def _find(args: argparse.Namespace, sel: retrieval.Selection, api: ApiClient | None) -> list[retrieval.Match]:
    """The matches: from the API's index with ``--api-url``, else by listing the bucket."""
    if api is not None:
        try:
            return retrieval.find_archives_via_api(api, sel)
        except retrieval.SelectionError:
            raise
        except LogarchiveError as exc:  # ApiError (status and message), unreachable, no credentials
            raise LogarchiveError(f"{args.api_url}: cannot search the index ({exc})") from None
        except Exception as exc:  # an answer that is not the API's JSON
            raise LogarchiveError(
                f"{args.api_url}: cannot search the index (unexpected answer: {type(exc).__name__})"
            ) from None
    try:
        s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    except Exception as exc:  # botocore: invalid endpoint URL or region name
        raise LogarchiveError(f"cannot create an S3 client: {exc}") from None
    try:
        return retrieval.find_archives(s3, args.bucket, sel)
    except LogarchiveError:
        raise
    except Exception as exc:  # botocore: NoSuchBucket, AccessDenied, no credentials, no network
        code = error_label(exc)
        raise LogarchiveError(f"bucket {args.bucket}: cannot list archives ({code})") from None


def run(args: argparse.Namespace) -> int:
    sel = _selection(args)
    sel.validate(index=args.api_url is not None)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    grep = None
    if args.grep is not None:
        try:
            grep = re.compile(args.grep)
        except re.error as exc:
            raise UsageError(f"--grep {args.grep!r}: not a valid regular expression ({exc})") from None
    opts = retrieval.OutputOptions(
        decompress=args.decompress, fmt=args.fmt, line_filter=sel.line_filter(stream=args.stream, grep=grep)
    )
    api = _api_client(args) if args.api_url else None
    matches = _find(args, sel, api)
    if not matches:
        raise LogarchiveError("No files found that matched all criteria")
    log.info("Found %d matching files...", len(matches))

    to_stdout = args.download_location == "-" and not args.verify_only
    if not args.verify_only and args.download_location is None:
        for m in matches:
            print(m.relative_path)
        log.warning("No files were downloaded. Please provide a location with --download-location "
                    "to download the files.")
        return 0

    keyring = keyring_from_args(args)
    if api is not None:
        retriever: retrieval.Retriever = retrieval.ApiRetriever(api, keyring, opts)
    else:
        retriever = retrieval.Retriever(aws.client("s3", endpoint_url=args.endpoint_url, region=args.region),
                                        args.bucket, keyring, opts)
    sizes: dict[str, int] = {}
    done = 0
    bar = None

    def report(outcome: retrieval.Outcome) -> None:
        nonlocal done
        if not outcome.ok:
            line = f"logarchive: error: {outcome.error}"
            if bar is not None:
                bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)
        elif not to_stdout and (args.verify_only or outcome.path is not None):
            line = f"verified {outcome.key}" if args.verify_only else str(outcome.path)
            if bar is not None:
                bar.write(line)
            else:
                print(line, flush=True)
        if bar is not None:
            done += 1
            bar.set_postfix(archives=f"{done}/{len(sizes)}", refresh=False)
            bar.update(sizes.get(outcome.key, 0))

    # Archives whose key is missing or unusable fail here, before any download starts.
    problems = retriever.key_problems(matches)
    blocked = [retrieval.Outcome(m.key, False, f"{m.key}: {problems[m.archive.key_id]}")
               for m in matches if m.archive.key_id in problems]
    for outcome in blocked:
        report(outcome)
    matches = [m for m in matches if m.archive.key_id not in problems]
    sizes = {m.key: m.size for m in matches}
    bar = _progress(matches, sys.stdout.isatty() and not to_stdout)
    try:
        if args.verify_only:
            outcomes = retrieval.verify_all(retriever, matches, jobs=args.jobs, on_done=report)
        elif to_stdout:
            outcomes = retrieval.stream_all(
                retriever, matches, sys.stdout.buffer, jobs=args.jobs, on_done=report
            )
        else:
            outcomes = retrieval.download_all(retriever, matches, args.download_location,
                                              jobs=args.jobs, on_done=report)
    except BrokenPipeError:
        # `... --download-location - | head`: the reader left; stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if bar is not None:
            bar.close()
    outcomes = blocked + outcomes
    failed = sum(1 for o in outcomes if not o.ok)
    verb = "verified" if args.verify_only else "retrieved"
    summary = f"{verb} {len(outcomes) - failed} of {len(outcomes)} archives"
    counted = [o for o in outcomes if o.ok and o.lines is not None]
    if opts.line_filter.active and counted:
        empty = sum(1 for o in counted if o.lines == 0)
        summary += f"; {sum(o.lines or 0 for o in counted)} lines matched"
        if empty and not to_stdout:
            summary += f" ({empty} archive(s) without a matching line: no file written)"
    if failed:
        summary += f"; {failed} failed"
    log.info("%s", summary)
    return 1 if failed else 0
