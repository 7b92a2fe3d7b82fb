"""Downloads that are interrupted or run out of disk (issue 18, finding 6).

The first Ctrl-C (or SIGTERM, SIGHUP) removes every partial file at once — by the time the
process says it was interrupted, none is left — and starts no new download; a second exits at
once. Streaming to stdout, the private scratch directory goes the same way, so no decrypted,
unverified byte outlives the process. A full disk is "No space left on device" naming the file,
and leaves no ``.part`` file.

Downloads are held mid-body by a proxy in front of the local AWS, so the interrupt lands while
parts exist, whatever the machine's speed: the tests wait on events (the proxy holding a body,
a line on stderr), never on time.
"""

from __future__ import annotations

import http.client
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from patience import patience
from retrieval_helpers import STACK, archive_key, leftovers, put_archive, t

from chalicelib.keyring import Keyring, MasterKey

ROOT = Path(__file__).resolve().parents[1]
K = MasterKey.generate()
HELD_TAIL = 64 * 1024  # a held GET sends all of the body but this much, then waits


class HoldingProxy:
    """HTTP in front of the local AWS; a GET of an archive object (a key under ``/shareable/``)
    gets its headers and all of its body but the last ``HELD_TAIL`` bytes, then waits for
    ``release()``. ``held`` counts such GETs."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.released = threading.Event()
        self.held: queue.Queue[str] = queue.Queue()
        self.gets = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(proxy.upstream)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                                       resp.getheader("Content-Length") or 0))
                self.end_headers()
                if self.command == "HEAD":
                    return
                hold = self.command == "GET" and "/shareable/" in self.path and "?" not in self.path
                if hold and len(data) > HELD_TAIL:
                    proxy.gets += 1
                    self.wfile.write(data[:-HELD_TAIL])
                    self.wfile.flush()
                    proxy.held.put(self.path)
                    proxy.released.wait()
                    data = data[-HELD_TAIL:]
                try:
                    self.wfile.write(data)
                except OSError:  # the client is gone (exited)
                    pass

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_held(self, n: int) -> None:
        for _ in range(n):
            self.held.get(timeout=patience(120))


def _noisy_lines(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return b"".join(
        b'{"log":"%s\\n","stream":"stdout","time":"2022-12-02T10:%02d:%02d.000000000Z"}\n'
        % (rnd.randbytes(450).hex().encode(), i // 60 % 60, i % 60) for i in range(n))


@pytest.fixture
def archives(buckets) -> dict[str, bytes]:
    """Six archives of ~1.3 MB (random text: the ciphertext is as large)."""
    s3, ring, out = boto3.client("s3"), Keyring([K]), {}
    for n in range(6):
        key = archive_key("apps", "90", f"{n:02x}" * 32, t("2022-12-02T10:00:00"), t("2022-12-02T10:59:59"),
                          K.key_id)
        out[key] = _noisy_lines(1400, n)
        put_archive(s3, buckets.customer, key, out[key], ring)
    return out


def _start(buckets, endpoint: str, dest: str, tmp: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "chalicelib.cli", "logs-from-archive", "--bucket", buckets.customer,
            "--stack", STACK, "--app-id", "90", "--download-location", dest, "--jobs", "2", *extra]
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "LOGARCHIVE_KEYS": K.to_base64(), "TMPDIR": str(tmp),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _lines(stream) -> queue.Queue[str]:
    """The lines of ``stream`` as they come (a thread reads it), then "" at its end."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for raw in stream:
            lines.put(raw.decode(errors="replace").rstrip("\n"))
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], pattern: str) -> list[str]:
    """Lines up to and including the first that matches ``pattern`` (fails at the stream's end)."""
    seen = []
    while True:
        line = lines.get(timeout=patience(120))
        seen.append(line)
        if re.search(pattern, line):
            return seen
        assert line, f"no line matching {pattern!r}: {seen}"


def _parts(root: Path) -> list[str]:
    return sorted({*leftovers(str(root)), *(str(p) for p in root.rglob(".logarchive-*"))})


SIGNALS = [(signal.SIGINT, "interrupted \\(Ctrl-C\\)"), (signal.SIGTERM, "terminated \\(SIGTERM\\)"),
           (signal.SIGHUP, "hung up \\(SIGHUP\\)")]


@pytest.mark.parametrize("sig,said", SIGNALS, ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_an_interrupt_removes_partial_files_at_once_and_starts_nothing(
        buckets, aws_endpoint, archives, tmp_path, sig, said) -> None:
    dest = tmp_path / "dl"
    with HoldingProxy(aws_endpoint) as proxy:
        proc = _start(buckets, proxy.url, str(dest), tmp_path)
        err = _lines(proc.stderr)
        try:
            proxy.wait_held(2)  # two downloads (--jobs 2) in the middle of their bodies
            assert len(_parts(dest)) == 2
            proc.send_signal(sig)
            said_lines = _until(err, f"^logarchive: {said}: starting no new download; partial files removed")
            assert _parts(dest) == []  # gone before it said so, not when the downloads wind down
            proxy.released.set()  # the held downloads go on, see the interrupt and stop
            out, _ = proc.communicate(timeout=patience(120))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rest = [line for line in iter(err.get, "")]
    assert proc.returncode == 128 + sig, said_lines + rest
    assert proxy.gets == 2  # no download started after the interrupt
    assert _parts(tmp_path) == [] and not [p for p in dest.rglob("*") if p.is_file()]
    assert out == b"" and not [line for line in said_lines + rest if "error" in line or "Traceback" in line]


def test_a_second_ctrl_c_exits_at_once(buckets, aws_endpoint, archives, tmp_path) -> None:
    """The downloads stay held (a stalled network): the second Ctrl-C does not wait for them."""
    dest = tmp_path / "dl"
    with HoldingProxy(aws_endpoint) as proxy:
        proc = _start(buckets, proxy.url, str(dest), tmp_path)
        err = _lines(proc.stderr)
        try:
            proxy.wait_held(2)
            proc.send_signal(signal.SIGINT)
            _until(err, "^logarchive: interrupted")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=patience(120))  # while the proxy still holds both bodies
            assert not proxy.released.is_set()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert _parts(tmp_path) == []


@pytest.mark.parametrize("sig,said", SIGNALS, ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_streaming_to_stdout_leaves_no_scratch_file(buckets, aws_endpoint, archives, tmp_path, sig, said) -> None:
    """``--download-location -``: workers decrypt ahead into a scratch directory under $TMPDIR."""
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    with HoldingProxy(aws_endpoint) as proxy:
        proc = _start(buckets, proxy.url, "-", scratch_root, "--decompress")
        err = _lines(proc.stderr)
        try:
            proxy.wait_held(2)
            assert len(_parts(scratch_root)) == 2  # decrypted, unverified bytes in the scratch directory
            proc.send_signal(sig)
            _until(err, f"^logarchive: {said}:")
            assert list(scratch_root.iterdir()) == []  # the scratch directory itself is gone
            proxy.released.set()
            proc.communicate(timeout=patience(120))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 128 + sig
    assert list(scratch_root.iterdir()) == []


# -- a full disk ----------------------------------------------------------------------------------

_MOUNT = 'mount -t tmpfs -o size=256k logarchive-test "$0" && { "$@"; rc=$?; find "$0" -name "*.part" ' \
         '-printf "LEFT %p\\n" >&2; exit $rc; }'


def _unshare() -> list[str]:
    """A private mount namespace (a user namespace too when not root) in which to mount a small
    tmpfs: a full disk that is real, and unmounts itself when the command exits."""
    cmd = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    probe = subprocess.run([*cmd, "sh", "-c", 'mount -t tmpfs -o size=64k t "$0"', "/mnt"], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {probe.stderr.decode()[:200]}")
    return cmd


@pytest.mark.parametrize("mode", [[], ["--decompress"], ["--format", "jsonl"]], ids=["default", "decompress", "jsonl"])
def test_a_full_disk_names_the_file_and_leaves_no_part(buckets, aws_endpoint, archives, tmp_path, mode) -> None:
    dest = tmp_path / "small"
    dest.mkdir()
    argv = [sys.executable, "-m", "chalicelib.cli", "logs-from-archive", "--bucket", buckets.customer,
            "--stack", STACK, "--app-id", "90", "--download-location", str(dest), "--jobs", "2", *mode]
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "LOGARCHIVE_KEYS": K.to_base64(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*_unshare(), "sh", "-c", _MOUNT, str(dest), *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=patience(300))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("logarchive: error:")]
    assert proc.returncode == 1, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("LEFT ")], proc.stderr
    assert len(errors) == len(archives), proc.stderr
    for line in errors:
        assert re.fullmatch(rf"logarchive: error: (\S+): cannot write {re.escape(str(dest))}/\S+: "
                            r"No space left on device", line), line
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
