"""Helpers for the retrieval tests: Docker log lines and archives written to the local S3."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from chalicelib import cli, codec, layout
from chalicelib.envelope import Envelope
from chalicelib.keyring import Keyring, MasterKey

STACK = "teststack"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def docker_lines(start: datetime, end: datetime, n: int = 6, tag: str = "") -> bytes:
    """``n`` json-file lines evenly spread over [start, end], stdout/stderr alternating."""
    step = (end - start) / max(1, n - 1)
    out = []
    for i in range(n):
        when = start + step * i
        stream = "stdout" if i % 2 == 0 else "stderr"
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}123Z"
        out.append(json.dumps({"log": f"{tag}line {i} at {when:%H:%M:%S}\n", "stream": stream, "time": stamp},
                              separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


def archive_key(kind: str, rid: str | None, cid: str, start: datetime, end: datetime, key_id: str,
                rotation: int | None = None, service: str | None = "7") -> str:
    return layout.ArchiveKey(
        stack=STACK, key_id=key_id, kind=kind, resource_id=rid, container_id=cid,
        service_id=service if kind == "apps" else None, rotation=rotation, start=start, end=end,
    ).key()


def seal_bytes(data: bytes, ring: Keyring) -> tuple[bytes, Envelope]:
    out = io.BytesIO()
    res = codec.seal(io.BytesIO(data), out, ring)
    return out.getvalue(), res.envelope


def put_archive(s3, bucket: str, key: str, data: bytes, ring: Keyring, *, instruction: bool = False) -> bytes:
    """Seal ``data`` and store it under ``key``; returns the ciphertext."""
    body, env = seal_bytes(data, ring)
    if instruction:
        s3.put_object(Bucket=bucket, Key=key + ".instruction", Body=env.to_instruction().encode(),
                      Metadata={"x-amz-crypto-instr-file": ""})
        s3.put_object(Bucket=bucket, Key=key, Body=body,
                      Metadata={"x-amz-unencrypted-content-length": str(env.unencrypted_length)})
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=env.to_fields())
    return body


def upload_sealed(bucket: str, key: str, sealed: str) -> None:
    """Put what ``logarchive seal`` wrote (``sealed`` and ``sealed.instruction``) under ``key``."""
    import boto3

    s3 = boto3.client("s3")
    s3.upload_file(sealed, bucket, key)
    s3.upload_file(sealed + ".instruction", bucket, key + ".instruction")


def put_legacy_cbc(s3, bucket: str, key: str, data: bytes, master: MasterKey) -> None:
    """A v1 (x-amz-key) object: data key wrapped AES/ECB/PKCS5, content AES/CBC/PKCS5."""
    data_key, iv = os.urandom(32), os.urandom(16)
    p = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(master.raw), modes.ECB()).encryptor()
    wrapped = enc.update(p.update(data_key) + p.finalize()) + enc.finalize()
    p = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(data_key), modes.CBC(iv)).encryptor()
    body = enc.update(p.update(gzip.compress(data)) + p.finalize()) + enc.finalize()
    env = Envelope(wrap_alg="AES", encrypted_key=wrapped, iv=iv, legacy=True, cek_alg="AES/CBC/PKCS5Padding")
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=env.to_fields())


def cli_logging(monkeypatch) -> None:
    """The ``chalicelib`` loggers as a ``logarchive`` process has them (propagating to the root,
    where caplog listens), whatever an earlier test's in-process Lambda import (Powertools
    adopting them: JSON to stdout, no propagation) left; undone after the test."""
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and (name == "chalicelib" or name.startswith("chalicelib.")):
            monkeypatch.setattr(lg, "handlers", [])
            monkeypatch.setattr(lg, "propagate", True)
            monkeypatch.setattr(lg, "disabled", False)
            monkeypatch.setattr(lg, "level", logging.NOTSET)
    logging.Logger.manager._clear_cache()  # levels are cached per logger


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def leftovers(root: str) -> list[str]:
    """Temporary files left anywhere under ``root``."""
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".part")]


def files_under(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


__all__ = ["STACK", "t", "timedelta", "docker_lines", "archive_key", "seal_bytes", "put_archive",
           "put_legacy_cbc", "run_cli", "leftovers", "files_under"]


def on_terminal(cmd: list[str], env: dict[str, str], *, stdout: bool, stderr: bool) -> tuple[int, str, str]:
    """Run ``cmd`` with stdout and/or stderr on a pseudo-terminal (160 columns); returns the exit
    status, what the terminal showed, and the other stream (piped) or ''."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a terminal has a size
    piped = subprocess.PIPE if not (stdout and stderr) else None
    p = subprocess.Popen(cmd, env=env, stdout=slave if stdout else piped, stderr=slave if stderr else piped,
                         text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    other = ""
    if piped:
        other = (p.stdout if not stdout else p.stderr).read()
    rc = p.wait(timeout=120)
    os.close(master)
    return rc, b"".join(chunks).decode(errors="replace"), other
