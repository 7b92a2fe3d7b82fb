"""``logarchive seal`` / ``logarchive unseal``: the archive format on local files.

``seal IN OUT`` writes OUT (gzip, then AES-256-GCM) and its envelope to ``OUT.instruction``;
``unseal IN OUT`` reads the envelope from ``IN.instruction``. Both write through a temporary
file renamed into place, so OUT is either complete or absent; unseal renames only after the
authentication tag verified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from .. import codec, envelope
from ..download import partfile
from ..download.partfile import PartFile
from ..envelope import Envelope
from ..errors import EnvelopeError, LogarchiveError, UsageError
from ._common import (
    add_compression_option,
    add_endpoint_options,
    add_jobs_option,
    add_key_options,
    keyring_from_args,
)

MAX_INSTRUCTION = 1 << 16


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("seal", help="compress and encrypt a local file (envelope in OUT.instruction)")
    s.add_argument("input", metavar="IN", help="file to seal ('-' for stdin)")
    s.add_argument("output", metavar="OUT", help="sealed file to write")
    add_key_options(s, encrypt=True)
    add_endpoint_options(s)
    add_compression_option(s)
    add_jobs_option(s, None, "compress with N threads", "--threads", dest="threads",
                    default_text="every CPU this process may use")
    s.set_defaults(func=run_seal)

    u = sub.add_parser("unseal", help="decrypt a sealed local file (envelope from IN.instruction)")
    u.add_argument("input", metavar="IN", help="sealed file")
    u.add_argument("output", metavar="OUT", help="file to write ('-' for stdout, after verification)")
    u.add_argument("--decompress", action="store_true", help="write the original bytes, not the gzip")
    add_key_options(u)
    add_endpoint_options(u)
    u.set_defaults(func=run_unseal)


def _part_beside(path: str) -> PartFile:
    directory = os.path.dirname(os.path.abspath(path))
    partfile.sweep(directory)  # what a killed earlier run left here
    try:
        return PartFile(directory)
    except OSError as exc:
        raise LogarchiveError(f"{path}: {exc.strerror or exc}") from None


def run_seal(args: argparse.Namespace) -> int:
    ring = keyring_from_args(args)
    if not ring.can_encrypt:
        raise UsageError("seal needs a key: --key-file FILE, $LOGARCHIVE_KEYS or --kms-key-id")
    try:
        src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as exc:
        raise LogarchiveError(f"{args.input}: {exc.strerror or exc}") from None
    try:
        with _part_beside(args.output) as body, _part_beside(args.output) as instr:
            result = codec.seal(src, body.file, ring, compression=args.compression,
                                threads=args.threads, sha256=False)
            instr.write(result.envelope.to_instruction().encode())
            # The envelope first: an OUT without its instruction file would be unreadable.
            instr.commit(args.output + envelope.INSTRUCTION_SUFFIX)
            body.commit(args.output)
    except OSError as exc:
        raise LogarchiveError(f"{args.output}: {exc.strerror or exc}") from None
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    print(
        f"sealed {args.input}: {result.plaintext_bytes} bytes -> {result.ciphertext_bytes} "
        f"(compression {result.compression}, key {ring.encrypting_key_id[:12]}…, "
        f"envelope in {args.output}{envelope.INSTRUCTION_SUFFIX})",
        file=sys.stderr,
    )
    return 0


def read_instruction(path: str) -> Envelope:
    ipath = path + envelope.INSTRUCTION_SUFFIX
    try:
        with open(ipath, "rb") as fh:
            text = fh.read(MAX_INSTRUCTION + 1)
    except FileNotFoundError:
        raise EnvelopeError(f"{path}: no instruction file {ipath}") from None
    except OSError as exc:
        raise EnvelopeError(f"{ipath}: {exc.strerror or exc}") from None
    if len(text) > MAX_INSTRUCTION:
        raise EnvelopeError(f"{ipath}: too large to be an instruction file")
    return Envelope.from_instruction(text, name=path)


def run_unseal(args: argparse.Namespace) -> int:
    from ..download import retrieval

    ring = keyring_from_args(args)  # a bad key file first, as every command
    env = read_instruction(args.input)
    to_stdout = args.output == "-"
    scratch = tempfile.mkdtemp(prefix="logarchive-") if to_stdout else None
    parts: list[PartFile] = []
    try:
        try:
            src = open(args.input, "rb")
        except OSError as exc:
            raise LogarchiveError(f"{args.input}: {exc.strerror or exc}") from None
        with src:
            parts.append(PartFile(scratch, durable=False) if scratch else _part_beside(args.output))
            # Decrypt the gzip as it is; gunzip only once the tag verified.
            codec.unseal(src, parts[0].file, env, ring, name=args.input)
            parts[0].close()
        result = parts[0]
        if args.decompress:
            result = PartFile(scratch, durable=False) if scratch else _part_beside(args.output)
            parts.append(result)
            assert parts[0].path is not None
            retrieval.write_output(parts[0].path, result.file, retrieval.OutputOptions(decompress=True),
                                   name=args.input)
            result.close()
        if to_stdout:
            assert result.path is not None
            with open(result.path, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer, codec.CHUNK)
            sys.stdout.buffer.flush()
        else:
            result.commit(args.output)
    except OSError as exc:
        raise LogarchiveError(f"{args.output}: {exc.strerror or exc}") from None
    finally:
        for p in parts:
            p.release()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0
