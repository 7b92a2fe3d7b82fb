"""Overwrites of archive objects are refused by AWS too, not only by our code: every grant of
s3:PutObject under ``<stack>/shareable/`` (the archive bucket and the customer buckets) holds
only for requests carrying If-None-Match (PutObject, CompleteMultipartUpload), or for the
parts of a multipart upload (CreateMultipartUpload, UploadPart), whose completion carries it."""

from __future__ import annotations

from test_deployment_files import ENV

from chalicelib.setup import iam
from chalicelib.setup.resources import FUNCTIONS, StageResources

CONDITIONAL = {"Null": {"s3:if-none-match": "false"}}
PARTS = {"Bool": {"s3:ObjectCreationOperation": "false"}}


def test_archive_writes_are_conditional_in_every_mode():
    for mode, expected in (("direct", 2), ("s3-replication", 4)):
        res = StageResources.from_env("t", {**ENV, "LOGARCHIVE_REPLICATION_MODE": mode})
        archive_objects = [f"arn:aws:s3:::{b}/s1/shareable/*" for b in ("arc", "cust-a", "cust-b")]
        writes = 0
        for fn in FUNCTIONS:
            for st in iam.function_policy(res, fn)["Statement"]:
                if "s3:PutObject" in st["Action"] and set(st["Resource"]) & set(archive_objects):
                    assert st["Action"] == ["s3:PutObject"], (fn, st)
                    assert st.get("Condition") in (CONDITIONAL, PARTS), (fn, st)
                    writes += 1
        assert writes == expected, mode  # the worker's, and the scheduler's re-drive: two each
