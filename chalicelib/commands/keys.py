"""``logarchive keys generate``, ``logarchive keys id`` and ``logarchive keys signing-generate``.

A key file holds base64 256-bit keys, one a line; the first encrypts, any decrypts. Key ids
(lowercase hex SHA-256 of the raw key) are what object keys carry; printing them is safe.
A digest signing key is an Ed25519 pair in PEM files; its id (SHA-256 of the public key's DER)
is what digests name (docs/AUDIT.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..errors import LogarchiveError, UsageError
from ..keyring import KEYS_ENV, MasterKey, gather_keys, parse_keys, read_secret_file
from ..options import add_deprecated


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="generate master keys and show their ids")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    gen = ksub.add_parser("generate", help="print one new base64 256-bit key (or add it to a key file "
                          "and print its id)")
    gen.add_argument("--output", metavar="FILE",
                     help="add the key to FILE (created with mode 0600) and print its id instead of "
                     "the key; it goes first, so it encrypts from now on, and the older keys still "
                     "decrypt (default: print the key)")
    gen.add_argument("--append", action="store_true",
                     help="with --output: add the key last, a decrypt-only key for now (default: first)")
    gen.set_defaults(func=run_generate)
    ids = ksub.add_parser("id", help="print the ids of keys (never the keys)")
    add_deprecated(ids, "--decryption-keys-file", new="--key-file", dest="key_files", metavar="FILE")
    ids.add_argument("--key-file", dest="key_files", action="append", default=[],
                     metavar="FILE", help=f"read keys from FILE (default: ${KEYS_ENV}, else stdin)")
    ids.set_defaults(func=run_id)
    sig = ksub.add_parser("signing-generate", help="make an Ed25519 key pair that signs digests; "
                          "prints the public key's id")
    sig.add_argument("--private-key-file", required=True, metavar="P",
                     help="write the private key here (PEM, mode 0600); it must not exist")
    sig.add_argument("--public-key-file", required=True, metavar="Q",
                     help="write the public key here (PEM): what auditors verify digests with")
    sig.set_defaults(func=run_signing_generate)


def _write_key_file(path: str, key: MasterKey, *, append: bool) -> None:
    """Add ``key`` to ``path`` atomically (temp file + rename), mode 0600."""
    try:
        old = (read_secret_file(path, missing_ok=True) or b"").decode("utf-8")
    except UnicodeDecodeError as exc:  # its message would quote key bytes
        raise LogarchiveError(f"key file {path}: not UTF-8 text (at byte {exc.start}); left alone") from None
    if old:
        parse_keys(old, source=f"key file {path}")  # refuse to rewrite a file we cannot read back
    line = key.to_base64() + "\n"
    if old and not old.endswith("\n"):
        old += "\n"
    _write_atomically(path, old + line if append else line + old, mode=0o600, what="key file")


def _write_atomically(path: str, text: str, *, mode: int, what: str) -> None:
    """Write ``path`` through a temporary file in its folder and a rename, with ``mode``."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".logarchive-keys-", suffix=".part")
    except OSError as exc:
        raise LogarchiveError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise LogarchiveError(f"{what} {path}: {exc.strerror or exc}") from None


def run_generate(args: argparse.Namespace) -> int:
    key = MasterKey.generate()
    if args.output:
        _write_key_file(args.output, key, append=args.append)
        print(key.key_id)  # the data: the new key's id (never the key)
        role = "last: it decrypts only" if args.append else "first: it encrypts from now on"
        print(f"logarchive: key {key.key_id[:12]}… added to {args.output} ({role})", file=sys.stderr)
        return 0
    if args.append:
        raise UsageError("--append needs --output")
    print(key.to_base64())
    return 0


def run_id(args: argparse.Namespace) -> int:
    if args.key_files:
        keys = gather_keys(files=args.key_files, env=False)
    elif os.environ.get(KEYS_ENV):
        keys = gather_keys(env=True)
    else:
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise LogarchiveError(f"stdin: not UTF-8 text (at byte {exc.start})") from None
        keys = parse_keys(text, source="stdin")
    if not keys:
        raise LogarchiveError("no key given (--key-file, $LOGARCHIVE_KEYS or stdin)")
    for k in keys:
        print(k.key_id)
    return 0


def run_signing_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from ..digest import public_key_id

    for path in (args.private_key_file, args.public_key_file):
        if os.path.exists(path):
            raise LogarchiveError(f"{path}: exists; a signing key is never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    _write_atomically(args.private_key_file, private, mode=0o600, what="private key file")
    _write_atomically(args.public_key_file, public, mode=0o644, what="public key file")
    print(public_key_id(key.public_key()))
    return 0
