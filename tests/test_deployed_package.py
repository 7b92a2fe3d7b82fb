"""The deployment package as Lambda runs it: the real deployment.zip, not the source tree.

``make package``'s build (``chalicelib/setup/package.py``: ``chalice package`` with
requirements.txt, then bytecode) is unzipped, and each handler runs in a clean interpreter
(``-I -S``: no site-packages, no environment of ours; only the package and the standard
library on the path) with the dev stage's environment, against the embedded AWS, on the event
shapes AWS sends: an EventBridge scheduled event, SQS batches, an S3 "Object Created" event
through EventBridge and API Gateway proxy events (``chalicelib/devkit/packaged.py``). A
runtime dependency missing from requirements.txt, a dev-only import or a wheel of the wrong
platform fails here.

pip needs PyPI once: the wheels are cached in ``~/.cache/logarchive`` (or
``$LOGARCHIVE_WHEELHOUSE_CACHE``) between runs.
"""

from __future__ import annotations

import gzip
import json
import urllib.request
from pathlib import Path

import boto3
import pytest
from archiver_support import archived, docker_lines, stage

from chalicelib.devkit import packaged

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    """The dev stage's deployment.zip, built as ``make package`` builds it, unzipped."""
    return packaged.build_task_root(ROOT, STAGE, tmp_path_factory.mktemp("deployed"))


def test_every_handler_runs_from_the_deployment_package(task_root, aws_endpoint, tmp_path) -> None:
    dev = packaged.stage_on_local_aws(ROOT, STAGE, aws_endpoint)
    res, s3 = dev.res, boto3.client("s3")
    lambdas = packaged.PackagedLambdas(task_root, dev, tmp_path)
    data = docker_lines(50)
    cid = "c0" * 32
    staged = stage(s3, res.staging_bucket, "web", data, cid=cid,
                   key=f"{res.staging_prefix}{res.stack}/host-1/{cid}/00000001-0000000000000000.log",
                   **{"logarchive-stack": res.stack})
    question = {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T13:00:00Z"}

    flow = packaged.run_every_handler(lambdas, question)

    assert (flow.schedule_report["listed"], flow.schedule_report["scheduled"]) == (1, 1), flow.schedule_report
    # archived, replicated (direct mode), unstaged
    for bucket in (res.archive_bucket, *res.replicate_to):
        assert archived(s3, bucket, dev.keyring, stack=res.stack) == {flow.archive_key: staged.data}, bucket
    assert s3.list_objects_v2(Bucket=res.staging_bucket, Prefix=res.staging_prefix)["KeyCount"] == 0
    # indexed
    items = boto3.client("dynamodb").scan(TableName=res.index_table)["Items"]
    assert [i["key"]["S"] for i in items if i["sk"]["S"] == "head"] == [flow.archive_key]
    # the retrieval job ran on the retrieval worker and its result is the archived lines
    assert flow.retrieval_created["statusCode"] == 202, flow.retrieval_created
    assert flow.retrieval_status["statusCode"] == 200, flow.retrieval_status
    job = json.loads(flow.retrieval_status["body"])
    assert job["status"] == "succeeded", job
    [result] = job["results"]
    with urllib.request.urlopen(result["url"], timeout=30) as resp:
        assert gzip.decompress(resp.read()) == data
    # The Lambdas published their metrics (EMF on stdout) as deployed.
    assert any('"ObjectsArchived"' in i.stdout for i in lambdas.invocations)


def test_every_module_ships_unchecked_bytecode_for_this_runtime(task_root) -> None:
    """Lambda's code directory is read-only: a module without a usable .pyc is compiled at every
    cold start, and a timestamp-checked one counts as stale once unzipped."""
    import importlib.util

    sources = [p for p in task_root.rglob("*.py")]
    assert len(sources) > 500
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        header = pyc.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, source
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{pyc}: not an unchecked hash-based .pyc"
        assert header[8:16] == importlib.util.source_hash(source.read_bytes()), source


def test_bytecode_of_another_python_is_refused(tmp_path) -> None:
    from chalicelib.setup import package

    with pytest.raises(package.PackageError, match=r"the runtime is python3\.2 but this is python3\.\d+"):
        package.add_bytecode(tmp_path / "deployment.zip", "python3.2")


def test_bytecode_is_what_compileall_unchecked_hash_writes(tmp_path) -> None:
    import py_compile

    from chalicelib.setup import package

    source = ROOT / "chalicelib" / "setup" / "teardown.py"
    cfile = tmp_path / "teardown.pyc"
    py_compile.compile(str(source), cfile=str(cfile), dfile="/var/task/chalicelib/setup/teardown.py",
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    assert package.hash_pyc(source.read_bytes(), "/var/task/chalicelib/setup/teardown.py") == cfile.read_bytes()
