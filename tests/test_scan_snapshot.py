"""A scan of a container's log files is one moment of its folder, whatever renames run meanwhile.

A listing and then an lstat per name are two moments: a rotation between them binds the listed
``0.log`` (or ``-json.log``) to the new, empty file, and the file the listing saw under that name,
renamed, is in neither. The shipper then ships the newer file's bytes (``--max-age``) before the
rest of the older one: segments out of byte order (test_k8s_daemon's kill -9 test saw it once
under load). These tests put the rotation exactly there, in the real scan code, on real files:
``os.scandir`` returns its real entries, and the writer acts once they are listed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dockerfake import FakeDockerRoot
from test_k8s import joined, ship, staged

from chalicelib import layout
from chalicelib.devkit.fakekubelet import FakeKubelet, compress_file
from chalicelib.shipper.pods import scan_pods
from chalicelib.shipper.scan import read_container

_real_scandir = os.scandir


class _Listing:
    """The real entries of a directory, listed in full before ``after`` runs."""

    def __init__(self, entries: list[os.DirEntry]) -> None:
        self.entries = entries

    def __iter__(self):
        return iter(self.entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass


def act_after_listing(monkeypatch: pytest.MonkeyPatch, folder: Path, after: Callable[[], None],
                      times: int = 1) -> list[int]:
    """Run ``after`` right after the next ``times`` listings of ``folder`` (and not later ones);
    returns a list that counts the listings of ``folder``."""
    listed: list[int] = []

    def scandir(path=".", *args):
        with _real_scandir(path, *args) as it:
            entries = list(it)
        if os.path.abspath(path) == os.path.abspath(folder):
            listed.append(1)
            if len(listed) <= times:
                after()
        return _Listing(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    return listed


def _inodes(files) -> dict[int, str]:
    return {f.ino: f.name for f in files}


def test_k8s_rotation_between_listing_and_stat_loses_no_file_from_the_scan(tmp_path: Path, monkeypatch) -> None:
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("ns", "p").container("app")
    c.log("first file")
    first = c.rotate()
    c.log("second file: rotated between the listing and the lstat")
    second = os.stat(c.log_path).st_ino

    def rotate() -> None:
        c.rotate()
        c.log("third file: the new live log")

    act_after_listing(monkeypatch, c.dir, rotate)
    [run] = scan_pods(str(node.pods))
    files = _inodes(run.files)
    assert second in files, f"the file rotated while the folder was listed is missing from the scan: {files}"
    # Oldest first: the first file (gzipped by the rotation), the second, the new live log.
    assert [f.name for f in run.ordered_files()] == [first.name + ".gz", files[second], "0.log"]
    assert [f.ino for f in run.ordered_files()][1:] == [second, os.stat(c.log_path).st_ino]


def test_k8s_gzip_between_listing_and_stat_loses_no_file_from_the_scan(tmp_path: Path, monkeypatch) -> None:
    """kubelet's gzip of an older rotation: listed as the plain file, removed before its lstat."""
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("ns", "p").container("app")
    c.log("first file")
    older = c.rotate(compress=False)
    c.log("second file")
    c.rotate(compress=False)
    c.log("live")
    act_after_listing(monkeypatch, c.dir, lambda: compress_file(older))
    [run] = scan_pods(str(node.pods))
    names = sorted(f.name for f in run.files)
    assert older.name + ".gz" in names, f"the gzipped rotation is missing from the scan: {names}"
    assert [f.rotation for f in run.ordered_files()] == [2, 1, 0]


def test_docker_rotation_between_listing_and_stat_loses_no_file_from_the_scan(tmp_path: Path, monkeypatch) -> None:
    docker = FakeDockerRoot(tmp_path / "docker")
    c = docker.add("web", max_size=1 << 20, max_file=4)
    c.log("first file")
    c.rotate()
    c.log("second file")
    before = {name: os.stat(c.dir / name).st_ino for name in (c.log_path.name, c.log_path.name + ".1")}

    def rotate() -> None:
        c.rotate()
        c.log("third file")

    act_after_listing(monkeypatch, c.dir, rotate)
    found = read_container(str(c.dir), c.id)
    files = _inodes(found.files)
    assert set(before.values()) <= set(files), f"a file rotated while the folder was listed is missing: {files}"
    assert [f.rotation for f in found.ordered_files()] == [2, 1, 0]


def test_a_folder_that_changes_at_every_listing_waits_for_the_next_pass(tmp_path: Path, monkeypatch) -> None:
    """No moment found in a few tries: the container is marked, its files not trusted this pass."""
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("ns", "p").container("app")
    c.log("line")

    def rotate() -> None:
        c.rotate(compress=False)
        c.log("line")

    listed = act_after_listing(monkeypatch, c.dir, rotate, times=1000)
    [run] = scan_pods(str(node.pods))
    assert run.changing and len(listed) > 1


def test_segments_stay_in_byte_order_when_kubelet_rotates_during_the_scan(buckets, tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """The symptom, end to end (``logarchive ship --once --max-age 1ms``, twice): the first file
    rotated between the listing and the lstat must still ship before the new live log."""
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("ns", "p").container("app")
    old = time.time_ns() - 60 * 10**9  # lines older than --max-age: the live log ships as it is
    for i in range(3):
        c.log(f"first file, line {i}", ns=old + i)

    def rotate() -> None:
        c.rotate()
        for i in range(3):
            c.log(f"second file, line {i}", ns=old + 100 + i)

    act_after_listing(monkeypatch, c.dir, rotate)
    for _ in range(2):
        rc, out = ship(tmp_path, buckets.staging, capsys, "--max-age", "1ms")
        assert rc == 0, out
    segs = staged(buckets.staging)[layout.cri_container_id(c.pod.uid, "app", 0)]
    firsts = [body.split(b"\n", 1)[0][-20:] for _, body in segs]
    assert joined(segs) == bytes(c.written[0]), f"segments' first lines, in segment order: {firsts}"


def test_a_container_whose_folder_never_holds_still_waits_then_ships_in_order(buckets, tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    node = FakeKubelet(tmp_path / "node")
    c = node.pod("ns", "p").container("app")
    old = time.time_ns() - 60 * 10**9
    c.log("first file", ns=old)
    n = iter(range(1, 1000))

    def rotate() -> None:
        c.rotate(max_files=1000)  # kubelet deletes none of them
        i = next(n)
        c.log(f"file {i + 1}", ns=old + i)

    act_after_listing(monkeypatch, c.dir, rotate, times=1000)
    rc, out = ship(tmp_path, buckets.staging, capsys, "--max-age", "1ms")
    assert rc == 0 and staged(buckets.staging) == {}, out
    assert "changed at every listing" in out
    monkeypatch.undo()
    rc, out = ship(tmp_path, buckets.staging, capsys, "--max-age", "1ms")
    assert rc == 0, out
    assert joined(staged(buckets.staging)[layout.cri_container_id(c.pod.uid, "app", 0)]) == bytes(c.written[0])
