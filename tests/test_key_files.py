"""Key files (issue 18, finding 6): only a regular file of bounded size is read — a FIFO would
block the command forever, ``/dev/zero`` exhaust memory — and one that group or others may read
gets a warning naming it, as ssh gives for a private key."""

from __future__ import annotations

import logging
import os

import pytest
from localup import clean_env
from localup import cli as run_child

from chalicelib import cli
from chalicelib.keyring import KEY_FILE_MAX_BYTES, MasterKey


def _key_file(path, mode=0o600) -> str:
    path.write_text(MasterKey.generate().to_base64() + "\n")
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("argv", [
    ["keys", "id", "--key-file", "{f}"],
    ["keys", "generate", "--output", "{f}"],
    ["seal", "--key-file", "{f}", "{f}", "{f}.out"],
    ["digest", "backfill", "--signing-key-file", "{f}", "--bucket", "b", "--stack", "s", "--table", "t"],
])
@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "too-big"])
def test_a_key_file_that_is_not_a_small_regular_file_is_refused(tmp_path, capsys, argv, kind) -> None:
    f = tmp_path / "keys"
    if kind == "fifo":
        os.mkfifo(f)  # nothing ever writes: opened for reading, it would block the command forever
        expected = "a FIFO, not a file of keys"
    elif kind == "device":
        f = "/dev/zero"  # read to the end, it would exhaust memory
        expected = "a character device, not a file of keys"
    elif kind == "directory":
        f.mkdir()
        expected = "a directory, not a file of keys"
    else:
        keys = "".join(MasterKey.generate().to_base64() + "\n" for _ in range(KEY_FILE_MAX_BYTES // 45 + 10))
        f.write_text(keys)
        os.chmod(f, 0o600)
        expected = f"larger than {KEY_FILE_MAX_BYTES // 1024} KiB, not a file of keys"
    capsys.readouterr()
    rc = cli.main([a.format(f=f) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{f}: {expected}" in lines[0], err
    assert "Traceback" not in err


def test_a_key_file_others_may_read_gets_a_warning(tmp_path, caplog) -> None:
    private = _key_file(tmp_path / "private.key", 0o600)
    shared = _key_file(tmp_path / "shared.key", 0o644)
    group = _key_file(tmp_path / "group.key", 0o640)
    with caplog.at_level(logging.WARNING):
        assert cli.main(["keys", "id", "--key-file", private]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with caplog.at_level(logging.WARNING):
        assert cli.main(["keys", "id", "--key-file", shared, "--key-file", group]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"key file {shared} is readable by group and others (mode 0644): whoever reads it can decrypt "
        f"the archive; chmod 600 {shared}",
        f"key file {group} is readable by group (mode 0640): whoever reads it can decrypt the archive; "
        f"chmod 600 {group}",
    ]


def test_the_warning_reaches_the_user_on_stderr(tmp_path) -> None:
    shared = _key_file(tmp_path / "shared.key", 0o604)
    proc = run_child("keys", "id", "--key-file", shared, env=clean_env())
    assert proc.stdout.strip() and "WARNING" not in proc.stdout
    assert proc.stderr.splitlines() == [
        f"WARNING key file {shared} is readable by others (mode 0604): whoever reads it can decrypt the "
        f"archive; chmod 600 {shared}"]
