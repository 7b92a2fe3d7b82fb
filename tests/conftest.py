"""Test fixtures: one moto server per session on 127.0.0.1, reached over real HTTP (``make test``
runs two pytest-xdist workers: each is a session with its own server).

No in-process fakes: every test's boto3 calls travel through ``AWS_ENDPOINT_URL`` to a
``moto.server`` child process, exactly as the code runs against AWS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chalicelib import aws
from chalicelib.devkit import local_aws

# What the tests write is private, as an operator's key files are (``keys generate`` makes them
# 0600): a key file that group or others may read draws a warning on stderr (keyring.py).
os.umask(0o077)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in (*local_aws.LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL")}
    with local_aws.moto_server() as endpoint:
        local_aws.use_endpoint(endpoint)
        yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    aws.reset_clients()


@pytest.fixture
def aws_endpoint(moto_endpoint: str) -> str:
    """A clean local AWS for one test (state reset, clients re-created)."""
    local_aws.reset(moto_endpoint)
    local_aws.use_endpoint(moto_endpoint)
    return moto_endpoint


@pytest.fixture
def buckets(aws_endpoint: str) -> local_aws.StackBuckets:
    b = local_aws.StackBuckets.for_stack("teststack")
    local_aws.create_buckets(aws_endpoint, b.all())
    return b
