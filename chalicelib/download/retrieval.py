"""Get archives back: download, decrypt, verify, then write, filter or stream them.

A library (no printing) of the ``logarchive logs-from-archive`` command; no Lambda imports
it (the retrieval worker shares ``archive_object``, ``codec`` and ``linefilter`` with it).
``selection`` finds the archives; per-object results come back as ``Outcome`` values and
through an optional ``on_done`` callback (a progress bar, a report). One object's failure
is its own ``Outcome``; it never stops the others.

Plaintext is never released before its GCM tag verified: every object is decrypted into a
locked temporary file (``partfile``) in the destination directory, which is renamed into
place, or decompressed/filtered (``logoutput``) into a second one that is, or copied to a
stream, only after ``codec.unseal`` returned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from .. import codec, envelope
from ..archive_object import open_archive, read_envelope
from ..awserrors import error_label
from ..crilog import CRI, DOCKER
from ..envelope import Envelope
from ..errors import EnvelopeError, LogarchiveError
from ..keyring import Keyring
from ..layout import K8S
from . import api_client, coldstore, partfile
from .logoutput import FORMATS, READ_CHUNK, CriSeams, OutputOptions, Written, write_output
from .partfile import PartFile
from .selection import (
    Match,
    Selection,
    SelectionError,
    find_archives,
    find_archives_via_api,
    listing_prefixes,
    parse_date,
    parse_instant,
)

__all__ = [
    "FORMATS", "ApiRetriever", "Match", "Outcome", "OutputOptions", "Retriever", "Selection",
    "SelectionError", "download_all", "find_archives", "find_archives_via_api", "listing_prefixes",
    "parse_date", "parse_instant", "run_as_ready", "run_parallel", "stream_all", "verify_all",
    "write_output",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def _s3_error(key: str, exc: Exception, what: str = "") -> LogarchiveError:
    return LogarchiveError(f"{key}: {what}S3 error {error_label(exc)}")


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


def _until_cancelled(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` until the run is interrupted (``partfile.Cancelled`` at the next chunk)."""
    for chunk in chunks:
        partfile.check()
        yield chunk


# ---------------------------------------------------------------------------------------
# One object
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    key: str
    ok: bool
    error: str | None = None
    path: str | None = None  # the file written (None for --verify-only, stdout, or no line kept)
    ciphertext_bytes: int = 0
    output_bytes: int = 0
    lines: int | None = None  # lines kept by a line filter (None: lines were not parsed)
    storage_class: str | None = None  # failed because S3 keeps it in this cold class, unrestored
    skipped: bool = False  # already written and verified by an earlier run


def _failed(match: Match, exc: LogarchiveError) -> Outcome:
    return Outcome(match.key, False, str(exc), storage_class=getattr(exc, "storage_class", None))


def _scratch_failed(key: str, exc: partfile.WriteFailed | OSError, scratch_dir: str) -> Outcome:
    """An archive's output that could not be kept in the scratch directory."""
    if isinstance(exc, partfile.WriteFailed):
        return Outcome(key, False, f"{key}: cannot write a scratch file in {scratch_dir}: {exc.strerror}")
    return Outcome(key, False, f"{key}: scratch file: {exc.strerror or exc}")


# Without --restore, what to do about an archive S3 keeps cold.
RESTORE_HOW = "run again with --restore (and --wait)"
# The archive's raw log, as the archiver records it (archiver/metadata.py).
RAW_SHA256 = "logarchive-sha256"
RAW_BYTES = "logarchive-bytes"


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

    def _sweep_once(self, directory: str, shown: str | None = None) -> None:
        """Remove the temporary files a killed earlier run left where we are about to write
        (``directory``, which ``shown`` names for people and for remembering it was swept)."""
        shown = shown or directory
        with self._sweep_lock:
            if shown in self._swept:
                return
            self._swept.add(shown)
            removed = partfile.sweep(directory)
        if removed:
            log.info("removed %d temporary file(s) an interrupted run left in %s", len(removed), shown)

    def key_problems(self, matches: list[Match]) -> dict[str, str]:
        """Before any download: the key ids (path components) whose archives cannot be
        decrypted with the keys given, each with the cause.

        One archive per key id is looked at (its envelope, by HEAD): a raw key id the ring does
        not hold is missing; a KMS key is tried on that archive's data key, and an error that is
        not about that one archive (access denied, disabled, not found) holds for all of them.
        Anything else is left to the download, which names the object.
        """
        problems: dict[str, str] = {}
        first: dict[str, Match] = {}
        for m in matches:
            first.setdefault(m.archive.key_id, m)
        for key_id, m in first.items():
            if self.keyring.has_key(key_id):
                continue
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=m.key)
                env = read_envelope(self.s3, self.bucket, m.key, head.get("Metadata") or {})
            except Exception:  # the download will say what is wrong with this object
                continue
            if env.wrap_alg != envelope.WRAP_KMS_CONTEXT:
                have = ", ".join(k[:12] for k in self.keyring.key_ids) or "none"
                problems[key_id] = f"needs the key with id {key_id}; keys given: {have}"
                continue
            try:
                self.keyring.unwrap(env, name=m.key, key_id=key_id)
            except LogarchiveError as exc:
                cause = str(exc).removeprefix(f"{m.key}: ")
                if "InvalidCiphertext" not in cause:  # that archive's own damage
                    problems[key_id] = cause
        return problems

    def _open(self, match: Match) -> tuple[Any, Envelope]:
        """The object's body (``iter_chunks``, ``close``) and its envelope."""
        try:
            obj = open_archive(self.s3, self.bucket, match.key)
        except LogarchiveError:
            raise
        except Exception as exc:
            raise coldstore.cold_error(match.key, exc, RESTORE_HOW) or _s3_error(match.key, exc) from None
        return obj.body, obj.envelope

    def _unseal_into(self, match: Match, dst: Any, *, decompress: bool, check_gzip: bool | str = False
                     ) -> codec.UnsealResult:
        key = match.key
        partfile.check()
        body, env = self._open(match)
        try:
            return codec.unseal(
                _until_cancelled(body.iter_chunks(READ_CHUNK)), dst, env, self.keyring,
                name=key, key_id=match.archive.key_id, decompress=decompress, check_gzip=check_gzip,
            )
        except LogarchiveError:
            raise
        except Exception as exc:  # connection reset mid-body, read timeouts
            raise LogarchiveError(f"{key}: download failed ({error_label(exc)})") from None
        finally:
            body.close()

    def verify(self, match: Match) -> Outcome:
        """Check the object's tag; writes nothing."""
        try:
            res = self._unseal_into(match, _Discard(), decompress=False, check_gzip=True)
        except LogarchiveError as exc:
            return _failed(match, exc)
        return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, output_bytes=res.gzip_bytes)

    def output_path(self, match: Match, dest_dir: str) -> str:
        return os.path.join(dest_dir, self.opts.output_name(match.relative_path))

    def written_and_verified(self, match: Match, dest_dir: str, metadata: dict[str, str]) -> bool:
        """Whether an earlier run already wrote this archive's output, whole and right.

        Only a file renamed into place after its tag verified exists under the final name;
        it is trusted again when its raw log bytes (gunzipped for the default output) have
        the SHA-256 and length the archiver recorded in the object's metadata. Filtered or
        text outputs, and archives without those fields, cannot be checked: they are fetched
        again.
        """
        path = self.output_path(match, dest_dir)
        sha, size = metadata.get(RAW_SHA256), metadata.get(RAW_BYTES)
        if self.opts.line_level or not sha or not size or not os.path.isfile(path):
            return False
        digest, n = hashlib.sha256(), 0
        try:
            with open(path, "rb") as fh:
                chunks = codec.iter_chunks(fh, READ_CHUNK)
                for block in chunks if self.opts.plain else codec.gunzip(chunks, path):
                    digest.update(block)
                    n += len(block)
        except (OSError, LogarchiveError):  # unreadable, or not whole gzip: fetch it again
            return False
        return str(n) == size and digest.hexdigest() == sha

    def download(self, match: Match, dest_dir: str) -> Outcome:
        """Decrypt into ``dest_dir/<relative path>``; nothing is left there on failure."""
        relative = self.opts.output_name(match.relative_path)
        final = self.output_path(match, dest_dir)
        parts: list[PartFile] = []
        dir_fd = None
        try:
            try:
                os.makedirs(dest_dir, exist_ok=True)
                # Below dest_dir no symbolic link is followed, now or while we write.
                dir_fd, directory = partfile.open_below(dest_dir, os.path.dirname(relative))
                self._sweep_once(directory, os.path.dirname(final))
                parts.append(PartFile(directory))
            except OSError as exc:
                raise LogarchiveError(f"{match.key}: cannot write {final}: {exc.strerror or exc}") from None
            produced, res, written = self._produce(match, parts, directory, durable=True)
            if written.lines == 0 and self.opts.line_filter.active:
                # No line passed the filter: no empty file to mistake for a result.
                return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, lines=0)
            produced.commit(os.path.join(directory, os.path.basename(final)))
            return Outcome(match.key, True, path=final, ciphertext_bytes=res.ciphertext_bytes,
                           output_bytes=written.bytes, lines=written.lines)
        except partfile.WriteFailed as exc:  # disk full: the file it was becoming, and why
            return Outcome(match.key, False, f"{match.key}: cannot write {final}: {exc.strerror}")
        except LogarchiveError as exc:
            return _failed(match, exc)
        except OSError as exc:
            return Outcome(match.key, False, f"{match.key}: cannot write {final}: {exc.strerror or exc}")
        finally:
            for p in parts:
                p.release()
            if dir_fd is not None:
                os.close(dir_fd)

    def _produce(
        self, match: Match, parts: list[PartFile], directory: str, *, durable: bool
    ) -> tuple[PartFile, codec.UnsealResult, Written]:
        """Decrypt into ``parts[0]`` (the archive's gzip), then, once the tag verified, derive
        the requested output from it. Returns (the part holding the output, result, written)."""
        first = parts[0]
        as_archived = not self.opts.plain and not self.opts.line_level
        # The archive's gzip written as it is must be one (its header checked: the GCM tag
        # proves the rest is the archiver's; codec.unseal); other outputs gunzip it anyway.
        res = self._unseal_into(match, first, decompress=False,
                                check_gzip=codec.GZIP_HEADER if as_archived else False)
        first.close()
        # The tag verified: from here on the plaintext may be released.
        if as_archived:
            return first, res, Written(res.output_bytes, None)
        second = PartFile(directory, durable=durable)
        parts.append(second)
        assert first.path is not None
        written = write_output(first.path, second, self.opts, name=match.key,  # type: ignore[arg-type]
                               source=CRI if match.archive.kind == K8S else DOCKER)
        second.close()
        return second, res, written

    def joins(self, match: Match) -> bool:
        """Whether ``match`` is rendered in the output's order (``stream_all``): CRI records in a
        ``--format``, where a partial record may continue from the archive before
        (``logoutput.CriSeams``)."""
        return self.opts.fmt is not None and match.archive.kind == K8S

    def to_stream(self, match: Match, scratch_dir: str, *, render: bool = True
                  ) -> tuple[Outcome, PartFile | None]:
        """Decrypt, verify and render into a private temporary file; the caller copies it to
        its stream (in order) and releases it. ``render=False``: the verified gzip, for
        ``render_in_order``."""
        parts: list[PartFile] = []
        try:
            parts.append(PartFile(scratch_dir, durable=False))
            if not render:
                res = self._unseal_into(match, parts[0], decompress=False)
                parts[0].close()
                return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes), parts.pop()
            produced, res, written = self._produce(match, parts, scratch_dir, durable=False)
            if written.lines == 0 and self.opts.line_filter.active:
                # No line passed the filter: nothing to write (not even an empty gzip member).
                return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, lines=0), None
            parts.remove(produced)
            return Outcome(match.key, True, ciphertext_bytes=res.ciphertext_bytes, output_bytes=written.bytes,
                           lines=written.lines), produced
        except (partfile.WriteFailed, OSError) as exc:
            return _scratch_failed(match.key, exc, scratch_dir), None
        except LogarchiveError as exc:
            return _failed(match, exc), None
        finally:
            for p in parts:
                p.release()


    def render_in_order(self, outcome: Outcome, verified: PartFile, scratch_dir: str, seams: CriSeams
                        ) -> tuple[Outcome, PartFile | None]:
        """``to_stream(render=False)``'s verified gzip rendered after the archive before it in
        the output (``seams``); releases ``verified``."""
        parts = [verified]
        try:
            second = PartFile(scratch_dir, durable=False)
            parts.append(second)
            assert verified.path is not None
            written = write_output(verified.path, second, self.opts, name=outcome.key,  # type: ignore[arg-type]
                                   source=CRI, seams=seams)
            second.close()
            seams.done()
            if written.lines == 0:
                return replace(outcome, lines=0), None
            parts.remove(second)
            return replace(outcome, output_bytes=written.bytes, lines=written.lines), second
        except (partfile.WriteFailed, OSError) as exc:
            return _scratch_failed(outcome.key, exc, scratch_dir), None
        except LogarchiveError as exc:
            return Outcome(outcome.key, False, str(exc)), None
        finally:
            for p in parts:
                p.release()


class ApiRetriever(Retriever):
    """A ``Retriever`` that gets the encrypted bytes through the retrieval API (``--api-url``).

    ``GET /archives/{id}`` answers a presigned URL of the object's version, so the caller
    needs no S3 permission; the envelope comes with the object's metadata headers. From
    there on everything is ``Retriever``'s: the same verification, temporary files, outputs
    and error lines. ``api`` is an ``api_client.ApiClient``.
    """

    def __init__(self, api: Any, keyring: Keyring, opts: OutputOptions | None = None) -> None:
        super().__init__(None, "", keyring, opts)
        self.api = api

    def key_problems(self, matches: list[Match]) -> dict[str, str]:
        # No HEAD through the API: whether an unknown key id is a KMS key shows only in the
        # object's headers, so each download reports its own key problem.
        return {}

    def _open(self, match: Match) -> tuple[Any, Envelope]:
        key = match.key
        if match.archive_id is None:
            raise LogarchiveError(f"{key}: no archive id (it was not found through the API)")
        try:
            url = self.api.archive(match.archive_id).get("download_url")
        except LogarchiveError as exc:  # ApiError (one line: status and message), unreachable
            raise LogarchiveError(f"{key}: {exc}") from None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise LogarchiveError(f"{key}: the API answered no download URL")
        resp = self._get(url, key)
        try:
            env = _envelope_of_headers(resp.headers, key)
        except BaseException:
            resp.close()
            raise
        return _HttpBody(resp), env


    def _get(self, url: str, key: str) -> Any:
        """The open response of a presigned GET; S3's transient answers (500, 503) and
        connection failures are retried, as botocore retries them on the bucket path."""
        for attempt in range(1, api_client.ATTEMPTS + 1):
            try:
                return urllib.request.urlopen(url, timeout=self.api.timeout)
            except urllib.error.HTTPError as exc:  # e.g. 403: the URL expired; 404: the version is gone
                cold = _cold_answer(exc, key) if exc.code == 403 else None
                exc.close()
                if cold is not None:
                    raise cold from None
                if exc.code not in (500, 502, 503, 504) or attempt == api_client.ATTEMPTS:
                    raise LogarchiveError(f"{key}: download failed (HTTP {exc.code})") from None
            except (urllib.error.URLError, OSError) as exc:
                if attempt == api_client.ATTEMPTS:
                    reason = getattr(exc, "reason", None) or type(exc).__name__
                    raise LogarchiveError(f"{key}: download failed ({reason})") from None
            time.sleep(api_client.BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover


# Through the API: the customer restores with their own access to the bucket.
API_RESTORE_HOW = ("restore it with `logarchive logs-from-archive --bucket BUCKET ... --restore --wait` "
                   "(needs s3:RestoreObject on the bucket)")
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_ERROR_CLASS = re.compile(rb"<StorageClass>([^<]*)</StorageClass>")


def _cold_answer(exc: urllib.error.HTTPError, key: str) -> coldstore.ColdArchiveError | None:
    """S3's 403 to a presigned GET of an archived object (``InvalidObjectState``)."""
    try:
        body = exc.read(4096)
    except OSError:
        return None
    code = _ERROR_CODE.search(body)
    if code is None or code.group(1) != b"InvalidObjectState":
        return None
    cls = _ERROR_CLASS.search(body)
    name = cls.group(1).decode("ascii", "replace") if cls else "an archive storage class"
    return coldstore.ColdArchiveError(key, name, API_RESTORE_HOW)


def _envelope_of_headers(headers: Any, key: str) -> Envelope:
    """The envelope in an S3 GET response's ``x-amz-meta-*`` headers."""
    prefix = "x-amz-meta-"
    metadata = {k.lower()[len(prefix):]: v for k, v in headers.items() if k.lower().startswith(prefix)}
    if envelope.has_envelope(metadata) and not envelope.uses_instruction_file(metadata):
        return Envelope.from_fields(metadata, name=key)
    # The API serves objects only, not their instruction files.
    raise EnvelopeError(
        f"{key}: its envelope is in {key}{envelope.INSTRUCTION_SUFFIX}, which the API does not serve "
        "(retrieve it without --api-url)"
    )


class _HttpBody:
    """An HTTP response with the two methods of a botocore body that ``Retriever`` uses."""

    def __init__(self, resp: Any) -> None:
        self._resp = resp

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        return codec.iter_chunks(self._resp, size)

    def close(self) -> None:
        self._resp.close()


# ---------------------------------------------------------------------------------------
# Many objects, in parallel
# ---------------------------------------------------------------------------------------


def _guard(
    fn: Callable[[Match], Outcome], on_done: Callable[[Outcome], None] | None
) -> Callable[[Match], Outcome]:
    """``fn`` that never raises (anything unexpected becomes a failed Outcome naming the
    object) and reports each outcome to ``on_done``, one at a time."""
    lock = threading.Lock()

    def guarded(m: Match) -> Outcome:
        try:
            out = fn(m)
        except Exception as exc:  # defensive: one line, no traceback, never key bytes
            out = Outcome(m.key, False, f"{m.key}: unexpected {type(exc).__name__}")
            log.debug("unexpected error on %s", m.key, exc_info=True)
        if on_done is not None and not partfile.cancelled():  # interrupted: said once, not per object
            with lock:
                on_done(out)
        return out

    return guarded


def run_as_ready(
    fn: Callable[[Match], Outcome],
    first: list[Match],
    feed: Callable[[Callable[[Match], None]], None],
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """``run_parallel`` for matches that become ready one by one: ``first`` start at once,
    then ``feed(submit)`` runs in the calling thread and submits each further match when it
    is ready (a restore completed). Outcomes in the order submitted."""
    guarded = _guard(fn, on_done)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="logarchive-get")
    futures: list[Future[Outcome]] = []
    try:
        futures.extend(pool.submit(guarded, m) for m in first)
        feed(lambda m: futures.append(pool.submit(guarded, m)))
        return [f.result() for f in futures]
    except BaseException:
        # Ctrl-C: as in run_parallel, start nothing new; running downloads clean up.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


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
    if jobs <= 1 or len(matches) <= 1:
        guarded = _guard(fn, on_done)
        return [guarded(m) for m in matches]
    return run_as_ready(fn, matches, lambda submit: None, jobs=jobs, on_done=on_done)


def download_all(
    retriever: Retriever,
    matches: list[Match],
    dest_dir: str,
    *,
    jobs: int = 4,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Download every match under ``dest_dir``; directories this run created and left empty
    (every archive in them failed, or kept no line) are removed at the end."""
    made = _missing_dirs(dest_dir, {os.path.dirname(retriever.output_path(m, dest_dir)) for m in matches})
    try:
        return run_parallel(lambda m: retriever.download(m, dest_dir), matches, jobs=jobs, on_done=on_done)
    finally:
        root = os.path.realpath(dest_dir)
        for d in sorted(made, key=len, reverse=True):  # deepest first
            real = os.path.realpath(d)
            if os.path.islink(d) or (real != root and not real.startswith(root + os.sep)):
                continue  # a link planted meanwhile: remove nothing outside dest_dir
            try:
                os.rmdir(d)
            except OSError:  # not empty (or gone): it holds results
                pass


def _missing_dirs(root: str, leaves: set[str]) -> set[str]:
    """``root``, the ``leaves`` and the directories between them that do not exist yet."""
    missing: set[str] = set()
    for d in leaves:
        while True:
            if os.path.isdir(d):
                break
            missing.add(d)
            parent = os.path.dirname(d)
            if parent == d or os.path.normpath(d) == os.path.normpath(root):
                break
            d = parent
    return missing


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
    interleaves and never holds a byte whose tag has not verified. CRI records in a
    ``--format`` are rendered by the caller's thread, in order (``Retriever.joins``), so a
    partial record ending one archive joins its continuation in the next
    (``logoutput.CriSeams``).
    """
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    seams = CriSeams(retriever.opts)
    with partfile.scratch_dir() as scratch:  # interrupted: removed at once, with what it holds
        def work(m: Match) -> tuple[Outcome, PartFile | None]:
            try:
                res = retriever.to_stream(m, scratch, render=not retriever.joins(m))
            except Exception as exc:  # defensive, as in run_parallel
                res = (Outcome(m.key, False, f"{m.key}: unexpected {type(exc).__name__}"), None)
            if on_done is not None and not partfile.cancelled():
                with lock:
                    on_done(res[0])
            return res

        def emit(data: bytes) -> None:
            if data:
                out.write(data)
                out.flush()

        def in_order(m: Match, outcome: Outcome, part: PartFile | None) -> tuple[Outcome, PartFile | None]:
            """The leftover partial lines an archive does not continue, then its own output."""
            if not outcome.ok or part is None:
                return outcome, part
            left, n = seams.begin(m.archive)
            emit(left)
            outcome, part = retriever.render_in_order(outcome, part, scratch, seams)
            return (replace(outcome, lines=(outcome.lines or 0) + n) if n else outcome), part

        # Bound the read-ahead so the scratch space stays near jobs x object size.
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="logarchive-get")
        try:
            pending: list[tuple[Match, Future[tuple[Outcome, PartFile | None]]]] = []
            it = iter(matches)
            for m in it:
                pending.append((m, pool.submit(work, m)))
                if len(pending) >= 2 * max(1, jobs):
                    break
            while pending:
                m, future = pending.pop(0)
                outcome, part = future.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(work, nxt)))
                if retriever.joins(m):
                    outcome, part = in_order(m, outcome, part)
                if part is not None:
                    try:
                        assert part.path is not None
                        with open(part.path, "rb") as fh:
                            shutil.copyfileobj(fh, out, READ_CHUNK)
                        out.flush()
                    finally:
                        part.release()
                outcomes.append(outcome)
            left, n = seams.finish()
            emit(left)
            if n and outcomes:
                outcomes[-1] = replace(outcomes[-1], lines=(outcomes[-1].lines or 0) + n)
        finally:
            # On Ctrl-C or a closed output: start nothing new; running workers finish first.
            pool.shutdown(wait=True, cancel_futures=True)
            for _, f in pending:
                if f.done() and not f.cancelled() and f.exception() is None:
                    leftover = f.result()[1]
                    if leftover is not None:
                        leftover.release()
    return outcomes
