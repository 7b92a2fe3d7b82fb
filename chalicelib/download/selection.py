"""Which archives of a stack to fetch, and finding them in a bucket.

Selection follows the reference CLI (``aptible logs_from_archive``): either
``--string-matches`` or exactly one of app / database / endpoint / container id, and
``--start-date``/``--end-date`` only with an id, with its messages. Differences, on purpose:

* the end date is included whole (the reference CLI stops at its midnight);
* string matches are literal substrings of the key (the reference applies them as regexes);
* listing reads only the prefixes the id selects (``<stack>/shareable/<schema>/<key id>/
  <kind>-<id>/``), not the whole stack; a container id still lists ``<stack>/shareable/``;
* Kubernetes archives (``_k8s/<stack>/v3/<key id>/<namespace>/<pod>/…``, layout.py) are selected
  by ``--namespace`` (with ``--pod`` and ``--container-name`` narrowing it), and listed with
  ``--string-matches`` too;
* a key that does not parse is a warning (this module's logger) and a skip, never the end
  of the search; ``.instruction`` files are envelopes, skipped silently;
* v2 keys carry only their upload time: a v2 archive matches a time range unless it provably
  holds no line in it, i.e. unless it was uploaded before the range starts (its lines all
  precede its upload). A v2 key whose upload time does not parse always matches.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .. import envelope, layout, times
from ..dockerlog import LineFilter
from ..errors import LayoutError, UsageError

log = logging.getLogger(__name__)

ONE_SECOND = timedelta(seconds=1)


class SelectionError(UsageError):
    """The search options contradict each other (same rules as the reference CLI)."""


# ---------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------


def parse_date(text: str, option: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise SelectionError(f"{option} {text!r}: please provide dates in YYYY-MM-DD format") from None


MAX_KEY_PATTERN = 200  # characters of one --string-matches pattern


def canonical_id(text: str) -> str:
    """A numeric id as a number reads (``042`` is 42, as the reference CLI's numeric options)."""
    return str(int(text)) if text.isascii() and text.isdigit() else text


def _repeats(tree: Any, *, at_least: int) -> Iterator[Any]:
    """The body of every repeat in a parsed pattern whose upper bound is ``at_least`` or more
    (``re``'s own parse tree: no regex engine of our own)."""
    from re import _constants as C

    for op, arg in tree:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
            _, high, body = arg
            if high >= at_least:
                yield body
            yield from _repeats(body, at_least=at_least)
        elif op == C.SUBPATTERN:
            yield from _repeats(arg[-1], at_least=at_least)
        elif op == C.BRANCH:
            for branch in arg[1]:
                yield from _repeats(branch, at_least=at_least)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            yield from _repeats(arg[1], at_least=at_least)


def _has_branch(tree: Any) -> bool:
    from re import _constants as C

    for op, arg in tree:
        if op == C.BRANCH:
            return True
        if op == C.SUBPATTERN and _has_branch(arg[-1]):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and _has_branch(arg[2]):
            return True
    return False


@functools.lru_cache(maxsize=64)
def key_pattern(text: str) -> re.Pattern[str]:
    """One ``--string-matches`` pattern: a regular expression searched in the full key, as the
    reference CLI applies it, refused when it could backtrack for ever.

    Python's ``re`` has no time limit, so the guard is on the pattern: at most
    :data:`MAX_KEY_PATTERN` characters, and no repetition of something that itself repeats
    without bound or offers alternatives (``(a+)+``, ``(a|ab)*``, ``(a*){50}``), the shapes
    whose matching time grows exponentially (or as a high power) with the key's length.
    """
    if len(text) > MAX_KEY_PATTERN:
        raise SelectionError(f"--string-matches pattern longer than {MAX_KEY_PATTERN} characters")
    try:
        compiled = re.compile(text)
        from re import _parser

        tree = _parser.parse(text)
    except re.error as exc:
        raise SelectionError(f"--string-matches {text!r}: not a valid regular expression ({exc})") from None
    from re import _constants as C

    for body in _repeats(tree, at_least=2):
        if any(True for _ in _repeats(body, at_least=C.MAXREPEAT)) or _has_branch(body):
            raise SelectionError(
                f"--string-matches {text!r}: a repeated group that itself repeats or has alternatives "
                "can take exponential time; refused"
            )
    return compiled


def parse_instant(text: str, option: str) -> datetime:
    """The one time syntax of the CLI and the API (``chalicelib.times``)."""
    try:
        return times.parse_time(text)
    except times.TimeSyntaxError as exc:
        raise SelectionError(f"{option} {text!r} {exc}") from None


@dataclass(frozen=True)
class Selection:
    """Which archives of one stack to retrieve."""

    stack: str
    string_matches: tuple[str, ...] = ()
    kind: str | None = None  # apps | databases | proxy (from --app-id/--database-id/--endpoint-id)
    resource_id: str | None = None
    container_id: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    start: datetime | None = None  # second-precision bounds: [start, end)
    end: datetime | None = None
    namespace: str | None = None  # Kubernetes archives (``_k8s/<stack>/…``) of this namespace,
    pod_name: str | None = None  # … of this pod
    container_name: str | None = None  # … of this container (every restart)

    def validate(self, *, index: bool = False) -> None:
        """The reference CLI's rules, with its messages.

        ``index``: the search goes to the retrieval API's index, which is asked by resource:
        an id is required, and ``--string-matches`` may narrow its answer (on the keys).
        """
        if not layout.STACK_RE.match(self.stack):
            raise SelectionError(f"--stack {self.stack!r} is not a valid stack name")
        self._validate_k8s()
        ids = [x for x in (self.resource_id, self.container_id, self.namespace) if x is not None]
        if index and not ids:
            raise SelectionError(
                "--api-url searches the index by resource: give one of --app-id, --database-id, "
                "--endpoint-id, --container-id or --namespace (--string-matches alone needs the "
                "bucket listing)"
            )
        if not self.string_matches and not ids:
            raise SelectionError(
                "You must specify an option to identify the logs to download, either: "
                "--string-matches, --app-id, --database-id, --endpoint-id, or --container-id"
                + (" (or --namespace for Kubernetes logs)" if not index else "")
            )
        if self.string_matches and ids and not index:
            raise SelectionError(
                "You cannot pass --app-id, --database-id, --endpoint-id, or --container-id "
                "when using --string-matches."
            )
        if len(ids) > 1:
            raise SelectionError(
                "You must specify only one of --app-id, --database-id, --endpoint-id, --container-id "
                "or --namespace"
            )
        dates = (self.start_date, self.end_date)
        if self.string_matches and any(d is not None for d in dates) and not index:
            raise SelectionError(
                "The options --start-date/--end-date cannot be used when searching by string"
            )
        if any(d is not None for d in dates) and not all(d is not None for d in dates):
            raise SelectionError("You must pass both --start-date and --end-date")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise SelectionError("End date must be after start date.")
        for text in self.string_matches:
            key_pattern(text)
        if self.resource_id is not None:
            if self.kind not in layout.KINDS:
                raise SelectionError(f"unknown resource kind {self.kind!r}")
            if not layout.ID_RE.match(self.resource_id):
                raise SelectionError(f"resource id {self.resource_id!r} is not valid")
        if self.container_id is not None:
            if len(self.container_id) < 12:
                raise SelectionError("You must specify at least the first 12 characters of the container ID")
            if not re.fullmatch(r"[0-9a-f]{12,64}", self.container_id):
                raise SelectionError(
                    f"--container-id {self.container_id!r} is not a (lowercase hex) container id"
                )
        if self.start and self.end and self.end <= self.start:
            raise SelectionError("--end must be after --start")

    def _validate_k8s(self) -> None:
        if self.namespace is None:
            if self.pod_name is not None or self.container_name is not None:
                raise SelectionError("--pod and --container-name select within a --namespace: give it too")
            return
        if not layout.DNS_LABEL_RE.match(self.namespace):
            raise SelectionError(f"--namespace {self.namespace[:80]!r} is not a Kubernetes namespace "
                                 "(a DNS label: a-z, 0-9, '-', at most 63)")
        if self.pod_name is not None and not layout.DNS_SUBDOMAIN_RE.match(self.pod_name):
            raise SelectionError(f"--pod {self.pod_name[:80]!r} is not a pod name (a DNS subdomain)")
        if self.container_name is not None and not layout.DNS_LABEL_RE.match(self.container_name):
            raise SelectionError(f"--container-name {self.container_name[:80]!r} is not a container name "
                                 "(a DNS label)")

    # The time window every line must fall in: [lo, hi). The date range includes the end
    # date whole (the reference CLI stops at its midnight: a known annoyance).
    @property
    def window(self) -> tuple[datetime | None, datetime | None]:
        lo = hi = None
        if self.start_date is not None and self.end_date is not None:
            lo = datetime.combine(self.start_date, time(), UTC)
            hi = datetime.combine(self.end_date + timedelta(days=1), time(), UTC)
        if self.start is not None:
            lo = self.start if lo is None else max(lo, self.start)
        if self.end is not None:
            hi = self.end if hi is None else min(hi, self.end)
        return lo, hi

    def __post_init__(self) -> None:
        if self.resource_id is not None:
            object.__setattr__(self, "resource_id", canonical_id(self.resource_id))

    def matches_key(self, key: str) -> bool:
        """Cheap test on the raw key (before parsing), so foreign keys that are not even
        candidates raise no warning: every ``--string-matches`` pattern is found in it."""
        return all(key_pattern(s).search(key) for s in self.string_matches)

    def matches(self, archive: layout.ArchiveKey) -> bool:
        if archive.stack != self.stack:
            return False
        if self.namespace is not None:
            cri = archive.cri
            if archive.kind != layout.K8S or archive.resource_id != self.namespace or cri is None:
                return False
            if self.pod_name is not None and archive.pod_name != self.pod_name:
                return False
            if self.container_name is not None and cri[1] != self.container_name:
                return False
        if self.resource_id is not None:
            if archive.kind != self.kind or canonical_id(archive.resource_id or "") != self.resource_id:
                return False
        if self.container_id is not None and not archive.container_id.startswith(self.container_id):
            return False
        return self.overlaps(archive)

    def overlaps(self, archive: layout.ArchiveKey) -> bool:
        lo, hi = self.window
        if lo is None and hi is None:
            return True
        if archive.schema == "v3" and archive.start is not None and archive.end is not None:
            # Key times are truncated to the second: the last line may be up to 1 s later.
            if hi is not None and archive.start >= hi:
                return False
            return not (lo is not None and archive.end + ONE_SECOND <= lo)
        # v2: only the upload time is known, and every line precedes it.
        if archive.uploaded_at is None:
            return True
        return not (lo is not None and archive.uploaded_at < lo)

    def line_filter(self, *, stream: str | None = None, grep: re.Pattern[str] | None = None) -> LineFilter:
        """The line filter for ``--start/--end`` (not the day range: that selects archives)."""
        return LineFilter(start=self.start, end=self.end, stream=stream, grep=grep)


# ---------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    key: str
    archive: layout.ArchiveKey
    size: int = 0
    last_modified: datetime | None = None
    archive_id: str | None = None  # the retrieval API's opaque id (found through its index)
    storage_class: str | None = None  # as listed (or indexed); None when not known

    @property
    def relative_path(self) -> str:
        """Where the reference CLI puts it under the download directory."""
        return self.archive.download_path(self.key)

    @property
    def sort_key(self) -> tuple[Any, ...]:
        # Container, then time; segments sharing their first (and last) second in the key's
        # second-precision times go by the segment number, the per-container sequence.
        a = self.archive
        t = a.start or a.uploaded_at or datetime.min.replace(tzinfo=UTC)
        return (a.container_id, t, a.end or t, a.rotation is None, a.rotation or 0, self.key)


def _common_prefixes(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            yield cp["Prefix"]


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


OnSkip = Callable[[str], None]


def _skip(message: str, on_skip: OnSkip | None) -> None:
    log.warning("%s", message)
    if on_skip is not None:
        on_skip(message)


def listing_prefixes(s3: Any, bucket: str, sel: Selection, *, on_skip: OnSkip | None = None) -> list[str]:
    """The prefixes to list in full for ``sel``: as narrow as the id allows."""
    if sel.string_matches:
        return [f"{sel.stack}/", layout.k8s_prefix(sel.stack)]
    if sel.namespace is not None:
        prefixes = []
        for key_prefix in _common_prefixes(s3, bucket, layout.k8s_prefix(sel.stack)):
            key_id = key_prefix.rstrip("/").rsplit("/", 1)[-1]
            if not layout.KEY_ID_RE.match(key_id):
                _skip(f"{key_prefix}: not a key id folder, skipped", on_skip)
                continue
            prefixes.append(layout.k8s_prefix(sel.stack, key_id, sel.namespace, sel.pod_name))
        return prefixes
    if sel.resource_id is None:  # container id: it may sit under any resource folder
        return [f"{sel.stack}/shareable/"]
    prefixes = []
    for schema_prefix in _common_prefixes(s3, bucket, f"{sel.stack}/shareable/"):
        schema = schema_prefix.rstrip("/").rsplit("/", 1)[-1]
        if schema not in ("v2", "v3"):
            _skip(f"{schema_prefix}: unknown archive schema folder, skipped", on_skip)
            continue
        for key_prefix in _common_prefixes(s3, bucket, schema_prefix):
            key_id = key_prefix.rstrip("/").rsplit("/", 1)[-1]
            if not layout.KEY_ID_RE.match(key_id):
                _skip(f"{key_prefix}: not a key id folder, skipped", on_skip)
                continue
            prefixes.append(layout.resource_prefix(sel.stack, schema, key_id, sel.kind, sel.resource_id))
    return prefixes


def is_instruction_file(key: str) -> bool:
    return key.endswith(envelope.INSTRUCTION_SUFFIX)


def find_archives(s3: Any, bucket: str, sel: Selection, *, on_skip: OnSkip | None = None) -> list[Match]:
    """Every archive in ``bucket`` that ``sel`` selects, sorted by container, then time.

    Keys that do not parse are skipped with a warning (logged, and passed to ``on_skip``,
    e.g. for an API response); instruction files are not archives and are skipped silently.
    """
    sel.validate()
    found: dict[str, Match] = {}
    for prefix in listing_prefixes(s3, bucket, sel, on_skip=on_skip):
        for obj in _objects(s3, bucket, prefix):
            key = obj["Key"]
            archive = _selected(key, sel, on_skip)
            if archive is not None:
                found[key] = Match(key, archive, int(obj.get("Size", 0)), obj.get("LastModified"),
                                   storage_class=obj.get("StorageClass") or "STANDARD")
    return sorted(found.values(), key=lambda m: m.sort_key)


def _selected(key: str, sel: Selection, on_skip: OnSkip | None) -> layout.ArchiveKey | None:
    """The parsed key when ``sel`` selects it; instruction files and folders are skipped
    silently, keys that do not parse with a warning."""
    if is_instruction_file(key) or key.endswith("/") or not sel.matches_key(key):
        return None
    try:
        archive = layout.parse(key)
    except LayoutError as exc:
        _skip(f"{exc} (skipped)", on_skip)
        return None
    return archive if sel.matches(archive) else None


# ---------------------------------------------------------------------------------------
# Through the retrieval API's index (``--api-url``)
# ---------------------------------------------------------------------------------------

API_SELECTORS = {"apps": "app_id", "databases": "database_id", "proxy": "endpoint_id"}
API_PAGE = 1000  # archives asked for a page (the API's maximum)
API_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def api_query(sel: Selection, *, now: datetime | None = None) -> dict[str, str]:
    """The ``GET /archives`` parameters of ``sel``: stack, its id, and ``[start, end)``.

    The index is read hour by hour, so the range must start somewhere: the dates or
    ``--start``. Without an end it runs to tomorrow (no line is written later than now).
    """
    lo, hi = sel.window
    if lo is None:
        raise SelectionError(
            "--api-url needs a time range: --start-date/--end-date or --start (the index is read by time)"
        )
    if hi is None:
        hi = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(days=1)
        if hi <= lo:
            raise SelectionError("--start is in the future")
    params = {"stack": sel.stack, "start": lo.strftime(API_TIME_FORMAT), "end": hi.strftime(API_TIME_FORMAT)}
    if sel.namespace is not None:
        params["namespace"] = sel.namespace
        for name, value in (("pod", sel.pod_name), ("container_name", sel.container_name)):
            if value is not None:
                params[name] = value
    elif sel.resource_id is not None:
        assert sel.kind is not None
        params[API_SELECTORS[sel.kind]] = sel.resource_id
    else:
        assert sel.container_id is not None
        params["container_id"] = sel.container_id
    return params


def find_archives_via_api(api: Any, sel: Selection, *, on_skip: OnSkip | None = None) -> list[Match]:
    """What ``find_archives`` finds, asked of the index (``api``: an ``api_client.ApiClient``).

    Every page is followed (``next_token``). Each answer is checked like a listed key: it must
    parse and ``sel`` must select it (so the API can only narrow the listing's answer, never
    name a key outside the stack), and ``--string-matches`` filters on the keys.
    """
    sel.validate(index=True)
    params = api_query(sel)
    found: dict[str, Match] = {}
    for entry in api.archives(limit=API_PAGE, **params):
        key, archive_id = entry.get("s3_key"), entry.get("id")
        if not isinstance(key, str) or not isinstance(archive_id, str):
            _skip(f"the API answered an archive without a key or an id ({str(entry)[:80]}), skipped", on_skip)
            continue
        archive = _selected(key, sel, on_skip)
        if archive is not None:
            size, cls = entry.get("size"), entry.get("storage_class")
            found[key] = Match(key, archive, size if isinstance(size, int) else 0, archive_id=archive_id,
                               storage_class=cls if isinstance(cls, str) else None)
    return sorted(found.values(), key=lambda m: m.sort_key)
