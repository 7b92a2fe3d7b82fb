"""`make demo` end to end: shipper → archiver → customer bucket → logs-from-archive → API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_restores_exact_bytes_and_answers_the_api_question() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chalicelib.devkit.demo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("restored bytes equal what Docker and kubelet's runtime wrote: yes; API answer exact: yes; "
            "audit passed: yes") in proc.stdout
    assert "shop/worker-0/worker: all 2610 bytes of 3 run(s), exactly once" in proc.stdout  # a Kubernetes node too
    assert "postgres-1   1 archive(s),   28090 of   28090 bytes: all bytes, exactly once" in proc.stdout
    # Only the demo's own lines: the Lambdas' JSON logs go to the file it names.
    assert not [x for x in proc.stdout.splitlines() if x.startswith("{")], proc.stdout[-3000:]
    assert "Lambda logs in demo-output/lambda.log" in proc.stdout
    assert '"function_name":"index_archive"' in (ROOT / "demo-output" / "lambda.log").read_text()
