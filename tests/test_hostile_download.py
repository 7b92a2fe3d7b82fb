"""``logs-from-archive`` never follows a symbolic link below ``--download-location``: a link
planted there (``DIR/apps-60 -> elsewhere/``) gets one line per object and nothing written
through it."""

from __future__ import annotations

import os

import boto3
import pytest
from retrieval_helpers import (
    STACK,
    archive_key,
    docker_lines,
    files_under,
    leftovers,
    put_archive,
    run_cli,
    t,
)

from chalicelib.keyring import Keyring, MasterKey

K1 = MasterKey.generate()


def _put(bucket: str, app: str, hour: int) -> str:
    s, e = t(f"2022-10-01T{hour:02d}:00:00"), t(f"2022-10-01T{hour:02d}:30:00")
    key = archive_key("apps", app, f"{hour:02x}" * 32, s, e, K1.key_id)
    put_archive(boto3.client("s3"), bucket, key, docker_lines(s, e), Keyring([K1]))
    return key


@pytest.mark.parametrize("link", ["apps-60", "apps-60/service-7"])
@pytest.mark.parametrize("mode", [[], ["--decompress"]])
def test_a_symlink_in_the_download_location_is_not_followed(buckets, capsys, tmp_path, link, mode):
    keys = [_put(buckets.customer, "60", 1), _put(buckets.customer, "60", 2)]
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(elsewhere, dest / link)
    rc, out, err = run_cli(["logs-from-archive", "--bucket", buckets.customer, "--stack", STACK, "--app-id", "60",
                            "--decryption-keys", K1.to_base64(), "--download-location", str(dest), *mode],
                           capsys)
    assert rc == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all("symbolic link" in line for line in lines), err
    assert sorted(k for k in keys if any(k in line for line in lines)) == sorted(keys)
    assert "Traceback" not in err
    assert files_under(elsewhere) == [] and leftovers(str(tmp_path)) == []
    assert files_under(dest) == []
