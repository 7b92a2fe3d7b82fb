"""Find archives in a bucket and get them back: search, download, decrypt, filter, verify.

A library (no printing): the ``logarchive logs-from-archive`` command and the retrieval
Lambdas both call it. Warnings go to this module's logger; per-object results come back as
``Outcome`` values and through an optional ``on_done`` callback (a progress bar, a report).

Selection follows the reference CLI (``aptible logs_from_archive``): either
``--string-matches`` or exactly one of app / database / endpoint / container id, and
``--start-date``/``--end-date`` only with an id. Differences, on purpose:

* the end date is included whole (the reference CLI stops at its midnight);
* string matches are literal substrings of the key (the reference applies them as regexes);
* listing reads only the prefixes the id selects (``<stack>/shareable/<schema>/<key id>/
  <kind>-<id>/``), not the whole stack; a container id still lists ``<stack>/shareable/``;
* a key that does not parse is a warning and a skip, never the end of the search;
* v2 keys carry only their upload time: a v2 archive matches a time range unless it provably
  holds no line in it, i.e. unless it was uploaded before the range starts (its lines all
  precede its upload). Unparseable upload times match (with a warning).

Plaintext is never released before its GCM tag verified: every object is decrypted into a
temporary file in the destination directory, which is renamed into place (or filtered into
the final file, or copied to stdout) only after ``codec.unseal`` returned.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, BinaryIO

from isal import igzip

from . import aws, codec, envelope, layout, partfile
from .dockerlog import LineFilter, LogLine, line_time, split_lines
from .envelope import Envelope
from .errors import EnvelopeError, LayoutError, LogarchiveError
from .keyring import Keyring
from .partfile import PartFile

log = logging.getLogger(__name__)

READ_CHUNK = codec.CHUNK
FORMATS = ("jsonl", "text")
ONE_SECOND = timedelta(seconds=1)


class SelectionError(LogarchiveError):
    """The search options contradict each other (same rules as the reference CLI)."""


# ---------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------


def parse_date(text: str, option: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise SelectionError(f"{option} {text!r}: please provide dates in YYYY-MM-DD format") from None


def parse_instant(text: str, option: str) -> datetime:
    """ISO-8601 to an aware UTC datetime, second precision (a naive time is UTC)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SelectionError(
            f"{option} {text!r}: not an ISO-8601 time (e.g. 2022-08-24T21:12:33Z)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).replace(microsecond=0)


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

    def validate(self) -> None:
        """The reference CLI's rules, with its messages."""
        if not layout.STACK_RE.match(self.stack):
            raise SelectionError(f"--stack {self.stack!r} is not a valid stack name")
        ids = [x for x in (self.resource_id, self.container_id) if x is not None]
        if not self.string_matches and not ids:
            raise SelectionError(
                "You must specify an option to identify the logs to download, either: "
                "--string-matches, --app-id, --database-id, --endpoint-id, or --container-id"
            )
        if self.string_matches and ids:
            raise SelectionError(
                "You cannot pass --app-id, --database-id, --endpoint-id, or --container-id "
                "when using --string-matches."
            )
        if len(ids) > 1:
            raise SelectionError(
                "You must specify only one of --app-id, --database-id, --endpoint-id or --container-id"
            )
        dates = (self.start_date, self.end_date)
        if self.string_matches and any(d is not None for d in dates):
            raise SelectionError(
                "The options --start-date/--end-date cannot be used when searching by string"
            )
        if any(d is not None for d in dates) and not all(d is not None for d in dates):
            raise SelectionError("You must pass both --start-date and --end-date")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise SelectionError("End date must be after start date.")
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

    def matches_key(self, key: str) -> bool:
        """Cheap test on the raw key (before parsing), so foreign keys that are not even
        candidates raise no warning."""
        return all(s in key for s in self.string_matches)

    def matches(self, archive: layout.ArchiveKey) -> bool:
        if archive.stack != self.stack:
            return False
        if self.resource_id is not None:
            if archive.kind != self.kind or archive.resource_id != self.resource_id:
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

    @property
    def relative_path(self) -> str:
        """Where the reference CLI puts it under the download directory."""
        return self.archive.download_path(self.key)

    @property
    def sort_key(self) -> tuple[Any, ...]:
        a = self.archive
        t = a.start or a.uploaded_at or datetime.min.replace(tzinfo=UTC)
        return (a.container_id, t, a.rotation is None, -(a.rotation or 0), self.key)


def _common_prefixes(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            yield cp["Prefix"]


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def listing_prefixes(s3: Any, bucket: str, sel: Selection) -> list[str]:
    """The prefixes to list in full for ``sel``: as narrow as the id allows."""
    if sel.string_matches:
        return [f"{sel.stack}/"]
    if sel.resource_id is None:  # container id: it may sit under any resource folder
        return [f"{sel.stack}/shareable/"]
    prefixes = []
    for schema_prefix in _common_prefixes(s3, bucket, f"{sel.stack}/shareable/"):
        schema = schema_prefix.rstrip("/").rsplit("/", 1)[-1]
        if schema not in ("v2", "v3"):
            log.warning("%s: unknown archive schema folder, skipped", schema_prefix)
            continue
        for key_prefix in _common_prefixes(s3, bucket, schema_prefix):
            key_id = key_prefix.rstrip("/").rsplit("/", 1)[-1]
            if not layout.KEY_ID_RE.match(key_id):
                log.warning("%s: not a key id folder, skipped", key_prefix)
                continue
            prefixes.append(layout.resource_prefix(sel.stack, schema, key_id, sel.kind, sel.resource_id))
    return prefixes


def is_instruction_file(key: str) -> bool:
    return key.endswith(envelope.INSTRUCTION_SUFFIX)


def find_archives(s3: Any, bucket: str, sel: Selection) -> list[Match]:
    """Every archive in ``bucket`` that ``sel`` selects, sorted by container, then time.

    Keys that do not parse are logged as warnings and skipped; instruction files are not
    archives and are skipped silently.
    """
    sel.validate()
    found: dict[str, Match] = {}
    for prefix in listing_prefixes(s3, bucket, sel):
        for obj in _objects(s3, bucket, prefix):
            key = obj["Key"]
            if is_instruction_file(key) or key.endswith("/") or not sel.matches_key(key):
                continue
            try:
                archive = layout.parse(key)
            except LayoutError as exc:
                log.warning("%s (skipped)", exc)
                continue
            if sel.matches(archive):
                found[key] = Match(key, archive, int(obj.get("Size", 0)), obj.get("LastModified"))
    return sorted(found.values(), key=lambda m: m.sort_key)


# ---------------------------------------------------------------------------------------
# Envelope
# ---------------------------------------------------------------------------------------


def _s3_error(key: str, exc: Exception, what: str = "") -> LogarchiveError:
    code = aws.error_code(exc)
    return LogarchiveError(f"{key}: {what}S3 error {code}")


def read_envelope(s3: Any, bucket: str, key: str, metadata: dict[str, str]) -> Envelope:
    """The object's envelope: from its metadata, or from ``<key>.instruction`` when the
    metadata says so (``x-amz-crypto-instr-file``) or carries no envelope."""
    if envelope.has_envelope(metadata) and not envelope.uses_instruction_file(metadata):
        return Envelope.from_fields(metadata, name=key)
    instr_key = key + envelope.INSTRUCTION_SUFFIX
    try:
        resp = s3.get_object(Bucket=bucket, Key=instr_key)
        try:
            text = resp["Body"].read((1 << 16) + 1)
        finally:
            resp["Body"].close()
    except Exception as exc:  # botocore ClientError (NoSuchKey) and connection errors
        code = aws.error_code(exc)
        if code in ("NoSuchKey", "404"):
            raise EnvelopeError(
                f"{key}: no encryption envelope (no x-amz-key-v2 in its metadata and no {instr_key})"
            ) from None
        raise _s3_error(key, exc, "reading its instruction file: ") from None
    if len(text) > 1 << 16:
        raise EnvelopeError(f"{key}: instruction file is too large to be an envelope")
    env_fields = _instruction_fields(text, key)
    # The SDKs keep x-amz-unencrypted-content-length in the object's metadata, not in the
    # instruction file: take it from there when the file lacks it.
    lowered = {k.lower(): v for k, v in metadata.items()}
    if envelope.UNENCRYPTED_LENGTH not in env_fields and envelope.UNENCRYPTED_LENGTH in lowered:
        env_fields[envelope.UNENCRYPTED_LENGTH] = lowered[envelope.UNENCRYPTED_LENGTH]
    return Envelope.from_fields(env_fields, name=key)


def _instruction_fields(text: bytes, key: str) -> dict[str, str]:
    # Envelope.from_instruction validates; we want the dict to merge one metadata field in.
    try:
        data = json.loads(text)
    except ValueError:
        raise EnvelopeError(f"{key}: instruction file is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise EnvelopeError(f"{key}: instruction file is not a JSON object of strings")
    return {k.lower(): v for k, v in data.items()}


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputOptions:
    """How a verified archive is written out.

    Default: the gzip exactly as archived. ``decompress``: the original log bytes.
    ``fmt='jsonl'``: the (filtered) original lines; ``fmt='text'``: only their ``log``
    field. Both formats imply decompression. A line filter without ``decompress``/``fmt``
    re-compresses the kept lines as gzip, so the file is still what its name says.
    """

    decompress: bool = False
    fmt: str | None = None
    line_filter: LineFilter = field(default_factory=LineFilter)

    def __post_init__(self) -> None:
        if self.fmt is not None and self.fmt not in FORMATS:
            raise LogarchiveError(f"unknown output format {self.fmt!r} (jsonl or text)")

    @property
    def plain(self) -> bool:
        """The output is uncompressed."""
        return self.decompress or self.fmt is not None

    @property
    def line_level(self) -> bool:
        """Lines are parsed (filter or text format) rather than copied through."""
        return self.line_filter.active or self.fmt == "text"

    def output_name(self, relative: str) -> str:
        if not self.plain:
            return relative
        base = relative[: -len(".gz")] if relative.endswith(".gz") else relative
        return base + (".txt" if self.fmt == "text" else ".jsonl")


def _render(lines: Iterable[bytes], opts: OutputOptions) -> Iterator[bytes]:
    """The kept lines of a verified, decompressed stream, in the output format.

    Cheap byte-level tests reject most lines before the JSON parse (the costly part). They
    only ever reject lines the full filter would reject too: a line of a stream contains
    that stream's name, and a line's time is what ``dockerlog.line_time`` reads. Survivors
    go through the exact ``LineFilter``.
    """
    filt = opts.line_filter
    stream_bytes = filt.stream.encode() if filt.stream is not None else None
    timed = filt.start is not None or filt.end is not None
    text = opts.fmt == "text"
    parse = text or filt.grep is not None or filt.stream is not None
    for raw in lines:
        if stream_bytes is not None and stream_bytes not in raw:
            continue
        if timed:
            when = line_time(raw)
            if when is None or (filt.start is not None and when < filt.start):
                continue
            if filt.end is not None and when >= filt.end:
                continue
        if not parse:
            yield raw + b"\n"
            continue
        line = LogLine.parse(raw)
        if filt.active and not filt.matches(line):
            continue
        if text and line.log is not None:
            yield line.log.encode("utf-8", "surrogatepass")
        else:
            yield raw + b"\n"


def _gunzipped(path: str, name: str) -> Iterator[bytes]:
    """Blocks of the verified gzip file ``path``; a corrupt stream is one clear error."""
    try:
        with igzip.open(path, "rb") as src:
            yield from codec.iter_chunks(src, READ_CHUNK)
    except EOFError:
        raise LogarchiveError(f"{name}: decrypted content is a truncated gzip stream") from None
    except Exception as exc:  # BadGzipFile, isal's IsalError on a corrupt deflate stream
        raise LogarchiveError(
            f"{name}: decrypted content is not valid gzip ({type(exc).__name__})"
        ) from None


def write_output(verified_gzip_path: str, dst: BinaryIO, opts: OutputOptions, *, name: str) -> int:
    """Gunzip a verified temp file into ``dst`` (filtering and formatting its lines when asked);
    returns the bytes produced (before re-compression, when the output is gzip again).

    Decompression runs only on verified bytes: gunzipping the output of tampered ciphertext
    would fail with a gzip error before the tag could say "tampered".
    """
    written = 0
    gz_out = None
    if not opts.plain:
        gz_out = igzip.IGzipFile(fileobj=dst, mode="wb", compresslevel=codec.DEFAULT_LEVEL)
    sink: Any = gz_out if gz_out is not None else dst
    blocks = _gunzipped(verified_gzip_path, name)
    pieces = _render(split_lines(blocks), opts) if opts.line_level else blocks
    buf: list[bytes] = []
    size = 0
    for piece in pieces:
        buf.append(piece)
        size += len(piece)
        if size >= READ_CHUNK:
            sink.write(b"".join(buf))
            written += size
            buf, size = [], 0
    if buf:
        sink.write(b"".join(buf))
        written += size
    if gz_out is not None:
        gz_out.close()
    return written


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


# ---------------------------------------------------------------------------------------
# One object
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    key: str
    ok: bool
    error: str | None = None
    path: str | None = None  # the file written (None for --verify-only and stdout)
    ciphertext_bytes: int = 0
    output_bytes: int = 0


class Retriever:
    """Downloads, decrypts, verifies and writes archives of one bucket.

    ``s3`` is a boto3 S3 client (thread-safe: one is shared by all workers).
    """

    def __init__(self, s3: Any, bucket: str, keyring: Keyring, opts: OutputOptions | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.keyring = keyring
        self.opts = opts or OutputOptions()
        self._swept: set[str] = set()
        self._sweep_lock = threading.Lock()

    def _sweep_once(self, directory: str) -> None:
        """Remove the temporary files a killed earlier run left where we are about to write."""
        with self._sweep_lock:
            if directory in self._swept:
                return
            self._swept.add(directory)
            removed = partfile.sweep(directory)
        if removed:
            log.info("removed %d temporary file(s) an interrupted run left in %s", len(removed), directory)

    def _open(self, key: str) -> tuple[Any, Envelope]:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _s3_error(key, exc) from None
        try:
            env = read_envelope(self.s3, self.bucket, key, resp.get("Metadata") or {})
        except BaseException:
            resp["Body"].close()
            raise
        return resp["Body"], env

    def _unseal_into(
        self, key: str, key_hint: str | None, dst: Any, *, decompress: bool
    ) -> codec.UnsealResult:
        body, env = self._open(key)
        try:
            return codec.unseal(
                body.iter_chunks(READ_CHUNK), dst, env, self.keyring,
                name=key, key_hint=key_hint, decompress=decompress,
            )
        except LogarchiveError:
            raise
        except Exception as exc:  # connection reset mid-body, read timeouts
            code = aws.error_code(exc)
            raise LogarchiveError(f"{key}: download failed ({code})") from None
        finally:
            body.close()

    def verify(self, match: Match) -> Outcome:
        """Check the object's tag; writes nothing."""
        try:
            res = self._unseal_into(match.key, match.archive.key_id, _Discard(), decompress=False)
        except LogarchiveError as exc:
            return Outcome(match.key, False, str(exc))
        return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, output_bytes=res.gzip_bytes)

    def download(self, match: Match, dest_dir: str) -> Outcome:
        """Decrypt into ``dest_dir/<relative path>``; nothing is left there on failure."""
        final = os.path.join(dest_dir, self.opts.output_name(match.relative_path))
        directory = os.path.dirname(final)
        parts: list[PartFile] = []
        try:
            try:
                os.makedirs(directory, exist_ok=True)
                self._sweep_once(directory)
                parts.append(PartFile(directory))
            except OSError as exc:
                raise LogarchiveError(f"{match.key}: cannot write {final}: {exc.strerror or exc}") from None
            produced, res, out_bytes = self._produce(match, parts, directory, durable=True)
            produced.commit(final)
            return Outcome(match.key, True, path=final, ciphertext_bytes=res.ciphertext_bytes,
                           output_bytes=out_bytes)
        except LogarchiveError as exc:
            return Outcome(match.key, False, str(exc))
        except OSError as exc:
            return Outcome(match.key, False, f"{match.key}: cannot write {final}: {exc.strerror or exc}")
        finally:
            for p in parts:
                p.release()

    def _produce(
        self, match: Match, parts: list[PartFile], directory: str, *, durable: bool
    ) -> tuple[PartFile, codec.UnsealResult, int]:
        """Decrypt into ``parts[0]`` (the archive's gzip), then, once the tag verified, derive
        the requested output from it. Returns (the part holding the output, result, size)."""
        first = parts[0]
        res = self._unseal_into(match.key, match.archive.key_id, first.file, decompress=False)
        first.close()
        # The tag verified: from here on the plaintext may be released.
        if not self.opts.plain and not self.opts.line_level:
            return first, res, res.output_bytes
        second = PartFile(directory, durable=durable)
        parts.append(second)
        assert first.path is not None
        n = write_output(first.path, second.file, self.opts, name=match.key)
        second.close()
        return second, res, n

    def to_stream(self, match: Match, scratch_dir: str) -> tuple[Outcome, PartFile | None]:
        """Decrypt, verify and render into a private temporary file; the caller copies it to
        its stream (in order) and releases it."""
        parts: list[PartFile] = []
        try:
            parts.append(PartFile(scratch_dir, durable=False))
            produced, res, n = self._produce(match, parts, scratch_dir, durable=False)
            parts.remove(produced)
            return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, output_bytes=n), produced
        except LogarchiveError as exc:
            return Outcome(match.key, False, str(exc)), None
        except OSError as exc:
            return Outcome(match.key, False, f"{match.key}: scratch file: {exc.strerror or exc}"), None
        finally:
            for p in parts:
                p.release()


# ---------------------------------------------------------------------------------------
# Many objects, in parallel
# ---------------------------------------------------------------------------------------


def run_parallel(
    fn: Callable[[Match], Outcome],
    matches: list[Match],
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Apply ``fn`` to every match with ``jobs`` threads; outcomes in the matches' order.

    ``fn`` must not raise for an expected failure (it returns a failed Outcome); anything
    unexpected still becomes a failed Outcome naming the object, so one bad object never
    stops the others.
    """
    lock = threading.Lock()

    def guarded(m: Match) -> Outcome:
        try:
            out = fn(m)
        except Exception as exc:  # defensive: one line, no traceback, never key bytes
            out = Outcome(m.key, False, f"{m.key}: unexpected {type(exc).__name__}")
            log.debug("unexpected error on %s", m.key, exc_info=True)
        if on_done is not None:
            with lock:
                on_done(out)
        return out

    if jobs <= 1 or len(matches) <= 1:
        return [guarded(m) for m in matches]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="logarchive-get")
    try:
        futures = [pool.submit(guarded, m) for m in matches]
        return [f.result() for f in futures]
    except BaseException:
        # Ctrl-C: start no new object; the ones running finish (or fail) and clean up
        # their temporary files before this returns.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def download_all(
    retriever: Retriever,
    matches: list[Match],
    dest_dir: str,
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    return run_parallel(lambda m: retriever.download(m, dest_dir), matches, jobs=jobs, on_done=on_done)


def verify_all(
    retriever: Retriever,
    matches: list[Match],
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    return run_parallel(retriever.verify, matches, jobs=jobs, on_done=on_done)


def stream_all(
    retriever: Retriever,
    matches: list[Match],
    out: BinaryIO,
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Write every verified archive to ``out`` in the matches' order.

    Workers decrypt and verify ahead into a private scratch directory (mode 0700); the
    caller's thread copies each verified file to ``out`` in turn, so output never
    interleaves and never holds a byte whose tag has not verified.
    """
    scratch = tempfile.mkdtemp(prefix="logarchive-")
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    try:
        def work(m: Match) -> tuple[Outcome, PartFile | None]:
            try:
                res = retriever.to_stream(m, scratch)
            except Exception as exc:  # defensive, as in run_parallel
                res = (Outcome(m.key, False, f"{m.key}: unexpected {type(exc).__name__}"), None)
            if on_done is not None:
                with lock:
                    on_done(res[0])
            return res

        # Bound the read-ahead so the scratch space stays near jobs x object size.
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="logarchive-get")
        try:
            pending: list[Future[tuple[Outcome, PartFile | None]]] = []
            it = iter(matches)
            for m in it:
                pending.append(pool.submit(work, m))
                if len(pending) >= 2 * max(1, jobs):
                    break
            while pending:
                outcome, part = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(work, nxt))
                if part is not None:
                    try:
                        assert part.path is not None
                        with open(part.path, "rb") as fh:
                            shutil.copyfileobj(fh, out, READ_CHUNK)
                        out.flush()
                    finally:
                        part.release()
                outcomes.append(outcome)
        finally:
            # On Ctrl-C or a closed output: start nothing new; running workers finish first.
            pool.shutdown(wait=True, cancel_futures=True)
            for f in pending:
                if f.done() and not f.cancelled() and f.exception() is None:
                    leftover = f.result()[1]
                    if leftover is not None:
                        leftover.release()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcomes
