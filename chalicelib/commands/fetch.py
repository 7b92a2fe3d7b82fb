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
import shlex
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3

from .. import aws, restores
from ..awserrors import error_label
from ..download import coldstore, partfile, retrieval
from ..download.api_client import ApiClient
from ..errors import LogarchiveError, UsageError
from ..grep import GrepError, compile_grep
from ..times import SYNTAX
from ._common import (
    add_endpoint_options,
    add_expected_owner_option,
    add_jobs_option,
    add_key_options,
    add_progress_option,
    confirm_owner,
    keyring_from_args,
    pins_owner,
    progress_enabled,
)

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
    add_expected_owner_option(p)
    add_key_options(p, aptible=True)
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
    ids.add_argument("--namespace", metavar="NS",
                     help="Kubernetes archives of this namespace (default: none; docs/KUBERNETES.md)")
    ids.add_argument("--pod", metavar="NAME", help="with --namespace: only this pod's (default: every pod)")
    ids.add_argument("--container-name", metavar="NAME",
                     help="with --namespace: only this container's, every restart (default: every container)")
    p.add_argument("--start-date",
                   help="YYYY-MM-DD (UTC), with --end-date: archives overlapping these days (default: all "
                        "days)")
    p.add_argument("--end-date", help="YYYY-MM-DD (UTC), included whole (default: all days)")
    more = p.add_argument_group("beyond the reference CLI")
    more.add_argument("--start", help=f"drop lines before this time: {SYNTAX} (default: none dropped)")
    more.add_argument("--end", help="drop lines at or after this time, same syntax (default: none dropped)")
    more.add_argument("--grep", metavar="PATTERN",
                      help="keep lines whose log text matches this RE2 regular expression, as the API "
                      "and retrieval jobs do (default: all lines)")
    more.add_argument("--stream", choices=("stdout", "stderr"),
                      help="keep lines of this stream only (default: both)")
    more.add_argument("--decompress", action="store_true", help="write the logs uncompressed (.jsonl)")
    more.add_argument("--format", dest="fmt", choices=retrieval.FORMATS,
                      help="jsonl: the original lines; text: only their log text; either implies "
                      "--decompress (default: the archive's gzip as is)")
    add_jobs_option(more, 4, "parallel downloads")
    add_progress_option(more)
    more.add_argument("--fail-on-empty", action="store_true",
                      help="exit 1 when no line matched (--grep, --stream, --start/--end); by default a "
                      "search that matches nothing writes nothing and exits 0")
    more.add_argument("--verify-only", action="store_true",
                      help="check every matching archive's authentication tag; write no plaintext")
    where.add_argument("--api-url", metavar="URL",
                      help="search the retrieval API's index and download through its presigned URLs "
                      "(SigV4-signed; needs an id and a time range); decryption stays local "
                      "(this or --bucket is required)")
    cold = p.add_argument_group(
        "archives in cold storage (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering's archive tiers)")
    cold.add_argument("--restore", action="store_true",
                      help="request their restore (a restore under way is not asked again), print counts "
                      "and the estimated cost and time")
    cold.add_argument("--restore-tier", choices=restores.TIERS, default=restores.DEFAULT_TIER,
                      help=f"retrieval tier (default {restores.DEFAULT_TIER}; not for Intelligent-Tiering)")
    cold.add_argument("--restore-days", type=int, default=coldstore.DEFAULT_DAYS, metavar="D",
                      help=f"days S3 keeps each restored copy (default {coldstore.DEFAULT_DAYS})")
    cold.add_argument("--wait", action="store_true",
                      help="with --restore: poll S3 with backoff and download each archive as soon as its "
                      "restore completes")
    cold.add_argument("--poll-interval", type=float, default=coldstore.FIRST_POLL_SECONDS, metavar="SECONDS",
                      help=f"first pause between polls (doubles up to {coldstore.MAX_POLL_SECONDS:.0f} s; "
                      f"default {coldstore.FIRST_POLL_SECONDS:.0f})")
    p.set_defaults(func=pins_owner(run))


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
        namespace=args.namespace,
        pod_name=args.pod,
        container_name=args.container_name,
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
    confirm_owner(s3, args.bucket, args.expected_owner)
    try:
        return retrieval.find_archives(s3, args.bucket, sel)
    except LogarchiveError:
        raise
    except Exception as exc:  # botocore: NoSuchBucket, AccessDenied, no credentials, no network
        code = error_label(exc)
        raise LogarchiveError(f"bucket {args.bucket}: cannot list archives ({code})") from None


def run(args: argparse.Namespace) -> int:
    if args.expected_owner and args.api_url:
        raise UsageError("--expected-owner goes with --bucket (with --api-url the API reads the bucket)")
    sel = _selection(args)
    sel.validate(index=args.api_url is not None)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    _check_cold_options(args)
    grep = None
    if args.grep is not None:
        try:
            grep = compile_grep(args.grep)
        except GrepError as exc:
            raise UsageError(f"--{exc}") from None
    opts = retrieval.OutputOptions(
        decompress=args.decompress, fmt=args.fmt, line_filter=sel.line_filter(stream=args.stream, grep=grep)
    )
    api = _api_client(args) if args.api_url else None
    keyring = keyring_from_args(args)  # a missing or bad key file: one line, before any listing
    matches = _find(args, sel, api)
    if not matches:
        raise LogarchiveError("No files found that matched all criteria")
    log.info("Found %d matching files...", len(matches))

    to_stdout = args.download_location == "-" and not args.verify_only
    if not args.verify_only and args.download_location is None:
        for m in matches:
            print(m.relative_path)
        listed_cold = Counter(m.storage_class for m in matches if m.storage_class in restores.COLD_CLASSES)
        if listed_cold:
            log.warning("%d of these archives are in cold storage (%s): downloading them needs a restore "
                        "(--restore) unless one is under way or done",
                        sum(listed_cold.values()), _by_class(listed_cold))
        log.warning("No files were downloaded. Please provide a location with --download-location "
                    "to download the files.")
        return 0

    s3 = None
    if api is not None:
        retriever: retrieval.Retriever = retrieval.ApiRetriever(api, keyring, opts)
    else:
        s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
        retriever = retrieval.Retriever(s3, args.bucket, keyring, opts)
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
        if bar is not None and outcome.key in sizes:
            done += 1
            bar.set_postfix(archives=f"{done}/{len(sizes)}", refresh=False)
            bar.update(sizes[outcome.key])

    def say(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    downloading = not args.verify_only and not to_stdout
    if s3 is not None:
        sorted_out = _sort_out(args, s3, retriever, matches, downloading=downloading)
    else:  # through the API: S3's answer to each presigned GET says which are cold
        sorted_out = _Sorted(ready=list(matches))
    # Archives whose key is missing or unusable fail here, before any download starts.
    # One line per missing or unusable key, however many archives it locks.
    problems = retriever.key_problems(sorted_out.ready)
    keyless = [retrieval.Outcome(m.key, False, f"{m.key}: {problems[m.archive.key_id]}")
               for m in sorted_out.ready if m.archive.key_id in problems]
    for key_id, problem in problems.items():
        locked = [m.key for m in sorted_out.ready if m.archive.key_id == key_id]
        more = f" and {len(locked) - 1} more archive(s) under that key" if len(locked) > 1 else ""
        print(f"logarchive: error: {locked[0]}{more}: {problem}", file=sys.stderr, flush=True)
    sorted_out.ready = [m for m in sorted_out.ready if m.archive.key_id not in problems]
    for o in sorted_out.done:
        report(o)
    sorted_out.done += keyless
    pending = [*sorted_out.ready, *(m for m, _ in sorted_out.cold.values())]
    sizes = {m.key: m.size for m in pending}
    bar = _progress(pending, progress_enabled(args))
    any_cold = sorted_out.cold or (args.restore and sorted_out.restored)
    asked = _restore(args, s3, sorted_out, say) if any_cold else None

    def run_on(selected: list[retrieval.Match]) -> list[retrieval.Outcome]:
        jobs = args.jobs
        if args.verify_only:
            return retrieval.verify_all(retriever, selected, jobs=jobs, on_done=report)
        if to_stdout:
            return retrieval.stream_all(retriever, selected, sys.stdout.buffer, jobs=jobs, on_done=report)
        return retrieval.download_all(retriever, selected, args.download_location, jobs=jobs, on_done=report)

    lost_waiting: list[retrieval.Outcome] = []

    def lose(outcome: retrieval.Outcome) -> None:
        lost_waiting.append(outcome)
        report(outcome)

    # Ctrl-C, SIGTERM, SIGHUP: partial files go at once, nothing new starts (download/partfile.py).
    with partfile.on_signals("logarchive"):
        try:
            waiting = asked.waiting if asked is not None and args.wait else {}
            if waiting and downloading:
                outcomes = retrieval.run_as_ready(
                    lambda m: retriever.download(m, args.download_location), sorted_out.ready,
                    lambda submit: _wait(args, s3, waiting, submit, lose),
                    jobs=args.jobs, on_done=report,
                )
            else:
                ready = list(sorted_out.ready)
                if waiting:  # a stream or a verification in the listing's order: wait for all first
                    _wait(args, s3, waiting, ready.append, lose)
                    order = {m.key: i for i, m in enumerate(matches)}
                    ready.sort(key=lambda m: order[m.key])
                outcomes = run_on(ready)
        except BrokenPipeError:
            # `... --download-location - | head`: the reader left; stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        finally:
            if bar is not None:
                bar.close()
    outcomes = [*sorted_out.done, *outcomes, *lost_waiting, *(asked.lost if asked is not None else [])]
    not_yet = asked.not_yet if asked is not None and not args.wait else []
    _advise(args, api is not None, outcomes, not_yet, sorted_out)
    failed = sum(1 for o in outcomes if not o.ok)
    skipped = sum(1 for o in outcomes if o.skipped)
    verb = "verified" if args.verify_only else "retrieved"
    summary = f"{verb} {len(outcomes) - failed} of {len(matches)} archives"
    if skipped:
        summary += f" ({skipped} already written and verified)"
    counted = [o for o in outcomes if o.ok and o.lines is not None]
    matched = sum(o.lines or 0 for o in counted)
    if opts.line_filter.active and counted:
        empty = sum(1 for o in counted if o.lines == 0)
        summary += f"; {matched} lines matched"
        if empty == len(counted) and not failed:
            summary += ": nothing written"
        elif empty:
            summary += (f" ({empty} archive(s) without a matching line: "
                        f"{'nothing written for them' if to_stdout else 'no file written'})")
    if failed:
        summary += f"; {failed} failed"
    if not_yet:
        cold = sorted_out.cold  # without --restore only earlier requests are under way
        restoring = len(not_yet) if args.restore else sum(
            1 for o in not_yet if o.key in cold and cold[o.key][1].state == restores.RESTORING)
        if restoring:
            summary += f"; {restoring} still being restored"
        if len(not_yet) > restoring:
            summary += f"; {len(not_yet) - restoring} in cold storage, not restored"
    log.info("%s", summary)
    empty_result = opts.line_filter.active and not args.verify_only and not failed and matched == 0
    return 1 if failed or not_yet or (args.fail_on_empty and empty_result) else 0


# ---------------------------------------------------------------------------------------
# Cold storage
# ---------------------------------------------------------------------------------------


def _check_cold_options(args: argparse.Namespace) -> None:
    if args.wait and not args.restore:
        raise UsageError("--wait waits for restores: add --restore")
    if args.restore and args.api_url:
        raise UsageError("--restore needs the bucket (s3:RestoreObject): use --bucket, not --api-url")
    if args.restore_days < 1:
        raise UsageError("--restore-days must be at least 1")
    if args.poll_interval < 0:
        raise UsageError("--poll-interval must not be negative")


def _by_class(counts: Counter[Any]) -> str:
    return ", ".join(f"{cls}: {n}" for cls, n in sorted(counts.items()))


@dataclass
class _Sorted:
    """The matches, sorted out before any download."""

    ready: list[retrieval.Match] = field(default_factory=list)  # readable now
    done: list[retrieval.Outcome] = field(default_factory=list)  # written earlier, or failed already
    cold: dict[str, tuple[retrieval.Match, restores.ColdState]] = field(default_factory=dict)
    restored: int = 0  # cold archives whose restored copy is there
    restored_labels: list[str] = field(default_factory=list)  # their storage classes


def _sort_out(
    args: argparse.Namespace, s3: Any, retriever: retrieval.Retriever, matches: list[retrieval.Match],
    *, downloading: bool,
) -> _Sorted:
    """One HEAD for each archive that may be cold or whose output an earlier run may have
    written (that file is checked in the same task, ``--jobs`` at a time); the others are
    ready as listed."""
    dest = args.download_location

    def written(m: retrieval.Match) -> bool:
        return downloading and os.path.isfile(retriever.output_path(m, dest))

    def inspect(m: retrieval.Match) -> tuple[coldstore.Head | LogarchiveError, bool]:
        try:
            head = coldstore.head(s3, args.bucket, m.key)
        except LogarchiveError as exc:
            return exc, False
        return head, written(m) and retriever.written_and_verified(m, dest, head.get("Metadata") or {})

    candidates = [m for m in matches if restores.may_be_cold(m.storage_class) or written(m)]
    with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="logarchive-head") as pool:
        inspected = dict(zip((m.key for m in candidates), pool.map(inspect, candidates), strict=True))
    out = _Sorted()
    for m in matches:
        head, verified = inspected.get(m.key, (None, False))
        if head is None:
            out.ready.append(m)
        elif isinstance(head, LogarchiveError):
            out.done.append(retrieval.Outcome(m.key, False, str(head)))
        elif verified:
            out.done.append(retrieval.Outcome(m.key, True, path=retriever.output_path(m, dest), skipped=True))
        else:
            state = restores.state_of(m.storage_class, head)
            if state.readable:
                out.ready.append(m)
                if state.state == restores.RESTORED:
                    out.restored += 1
                    out.restored_labels.append(state.label)
            else:
                out.cold[m.key] = (m, state)
    return out


@dataclass
class _Restores:
    waiting: dict[str, retrieval.Match]  # restore requested or under way
    not_yet: list[retrieval.Outcome]  # not downloaded because still cold (no --wait, or no --restore)
    lost: list[retrieval.Outcome]  # refused restores


def _restore(args: argparse.Namespace, s3: Any, sorted_out: _Sorted, say: Callable[[str], None]) -> _Restores:
    """Without --restore: name each cold archive with its class. With it: request the restores
    that are not under way, and print the counts and the estimate."""
    cold = sorted_out.cold
    if not args.restore:
        not_yet = []
        for m, st in cold.values():
            what = "restore under way" if st.state == restores.RESTORING else "not restored"
            not_yet.append(retrieval.Outcome(m.key, False, f"{m.key}: in {st.label}, {what}",
                                             storage_class=st.label))
        return _Restores({}, not_yet, [])

    def one(item: tuple[retrieval.Match, restores.ColdState]) -> str | LogarchiveError:
        m, st = item
        if st.state == restores.RESTORING:
            return "in progress"
        try:
            return restores.request_restore(s3, args.bucket, m.key, st, args.restore_tier, args.restore_days)
        except LogarchiveError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="logarchive-restore") as pool:
        answers = dict(zip(cold, pool.map(one, cold.values()), strict=True))
    waiting: dict[str, retrieval.Match] = {}
    lost = []
    for key, answer in answers.items():
        m, st = cold[key]
        if isinstance(answer, LogarchiveError):
            lost.append(retrieval.Outcome(key, False, str(answer), storage_class=st.label))
            say(f"logarchive: error: {answer}")
        else:
            waiting[key] = m
    counts = Counter(a for a in answers.values() if isinstance(a, str))
    classes = _by_class(Counter([*(st.label for _, st in cold.values()), *sorted_out.restored_labels]))
    say(f"cold archives: {len(cold) + sorted_out.restored} ({classes}); restore requested: "
        f"{counts['requested']}, in progress: {counts['in progress']}, ready: {sorted_out.restored}"
        + (f", refused: {len(lost)}" if lost else ""))
    requested = [(cold[k][1], cold[k][0].size) for k, a in answers.items() if a == "requested"]
    if requested:
        say(coldstore.estimate(requested, args.restore_tier, args.restore_days).text(
            args.restore_tier, args.restore_days))
    not_yet = [] if args.wait else [
        retrieval.Outcome(k, False, f"{k}: in {label}, restore under way", storage_class=label)
        for k, label in ((k, cold[k][1].label) for k in waiting)
    ]
    return _Restores(waiting, not_yet, lost)


def _wait(
    args: argparse.Namespace, s3: Any, waiting: dict[str, retrieval.Match],
    on_ready: Callable[[retrieval.Match], None], lose: Callable[[retrieval.Outcome], None],
) -> None:
    coldstore.wait_restored(
        s3, args.bucket, {k: m.storage_class for k, m in waiting.items()},
        on_ready=lambda key, _state: on_ready(waiting[key]),
        on_error=lambda key, exc: lose(retrieval.Outcome(key, False, str(exc))),
        first_interval=args.poll_interval,
    )


def _rerun(args: argparse.Namespace, *extra: str) -> str:
    """This command again, plus ``extra``; never with key material (inline keys become a
    placeholder)."""
    parts = ["logarchive", "logs-from-archive"]
    for option, value in (
        ("--bucket", args.bucket), ("--stack", args.stack), ("--endpoint-url", args.endpoint_url),
        ("--region", args.region), ("--app-id", args.app_id), ("--database-id", args.database_id),
        ("--endpoint-id", args.endpoint_id), ("--container-id", args.container_id),
        ("--start-date", args.start_date), ("--end-date", args.end_date), ("--start", args.start),
        ("--end", args.end), ("--grep", args.grep), ("--stream", args.stream), ("--format", args.fmt),
        ("--download-location", args.download_location),
    ):
        if value is not None:
            parts += [option, value]
    if args.string_matches:
        parts += ["--string-matches", *args.string_matches]
    for f in args.key_files:
        parts += ["--decryption-keys-file", f]
    if args.decryption_keys:
        parts += ["--decryption-keys", "..."]
    for flag, on in (("--decompress", args.decompress), ("--verify-only", args.verify_only),
                     ("--allow-legacy-cbc", args.allow_legacy_cbc)):
        if on:
            parts.append(flag)
    return shlex.join([*parts, *extra])


def _advise(
    args: argparse.Namespace, via_api: bool, outcomes: list[retrieval.Outcome],
    not_yet: list[retrieval.Outcome], sorted_out: _Sorted,
) -> None:
    """The lines that say what to run about archives still cold."""
    for o in not_yet:
        print(f"logarchive: error: {o.error}", file=sys.stderr)
    cold = Counter(o.storage_class for o in [*outcomes, *not_yet] if not o.ok and o.storage_class)
    if not cold:
        return
    n = sum(cold.values())
    if via_api:
        print(f"logarchive: {n} archive(s) in cold storage ({_by_class(cold)}) were not downloaded: a "
              f"retrieval job restores them and finishes on its own: {_job_hint(args)}; or restore them "
              f"with access to the bucket: {_rerun_bucket_hint(args)}", file=sys.stderr)
        return
    if args.restore:
        if not_yet:
            states = [(sorted_out.cold[o.key][1], 0) for o in not_yet if o.key in sorted_out.cold]
            times = coldstore.estimate(states, args.restore_tier, args.restore_days).times
            print(f"logarchive: {len(not_yet)} archive(s) not downloaded yet: their restore is under way "
                  f"(ready {' / '.join(times)}); run the same command again then (files already written are "
                  f"skipped), or wait here: {_rerun(args, '--restore', '--wait')}", file=sys.stderr)
        return
    print(f"logarchive: {n} archive(s) in cold storage ({_by_class(cold)}) were not downloaded; to restore "
          f"and download them run: {_rerun(args, '--restore', '--wait')}", file=sys.stderr)
    items = [(st, m.size) for m, st in sorted_out.cold.values() if st.state == restores.COLD]
    if items:
        tier, days = restores.DEFAULT_TIER, coldstore.DEFAULT_DAYS
        print(f"logarchive: {coldstore.estimate(items, tier, days).text(tier, days)}", file=sys.stderr)


def _job_hint(args: argparse.Namespace) -> str:
    """The ``logarchive retrievals start`` of this selection (its lines, time order, stdout)."""
    parts = ["logarchive", "retrievals", "start", "--api-url", args.api_url, "--stack", args.stack]
    for option, value in (
        ("--region", args.region), ("--app-id", args.app_id), ("--database-id", args.database_id),
        ("--endpoint-id", args.endpoint_id), ("--container-id", args.container_id),
        ("--start-date", args.start_date), ("--end-date", args.end_date), ("--start", args.start),
        ("--end", args.end), ("--grep", args.grep), ("--stream", args.stream),
        ("--format", "text" if args.fmt == "text" else None),
    ):
        if value is not None:
            parts += [option, value]
    return shlex.join([*parts, "--wait"])


def _rerun_bucket_hint(args: argparse.Namespace) -> str:
    hint = _rerun(args, "--restore", "--wait")
    if args.bucket:
        return hint
    return hint.replace("logs-from-archive", "logs-from-archive --bucket BUCKET", 1)
