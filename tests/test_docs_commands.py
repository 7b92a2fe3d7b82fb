"""The documented commands, run from the docs' own text.

A fenced block preceded by ``<!-- run -->`` is run as written (all such blocks of one file, in
order, as one bash script in an empty directory, with the virtualenv's ``logarchive`` on PATH).
A block preceded by ``<!-- run: server -->`` holds one long-running command: it is started
there, the following blocks run once it printed "Ctrl-C to stop.", and it is stopped at the end.
The only change to the text: the ports 5000 and 8000 become free ports (other test runs share
the machine).

Every ``logarchive`` command line in a fenced block of README.md or docs/ is in a runnable block
or in a block of :data:`NOT_RUNNABLE`, which says why it cannot run here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from localup import clean_env

from chalicelib.devkit import local_aws

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN, SERVER = "<!-- run -->", "<!-- run: server -->"
COMMAND = re.compile(r"^\s*(?:\$ )?logarchive(?:-ship)?(?:\s|$)")
PORTS = ("5000", "8000")

# (file, the block's first line): why it cannot run on this machine.
NOT_RUNNABLE = {
    ("README.md", "Docker host                          AWS (one Chalice app per stage)"): "a diagram",
    ("docs/ARCHITECTURE.md", "Docker host                                 AWS (one Chalice app per stage)"):
        "a diagram",
    ("docs/AUDIT.md", "logarchive audit --bucket CUSTOMER_BUCKET --stack STACK --public-key-file signing.pub "
                      "[older.pub …] \\"): "a synopsis: placeholders and [optional] parts",
    ("docs/AUDIT.md", "logarchive digest backfill --bucket ARCHIVE_BUCKET --stack STACK --signing-key-file "
                      "signing.pem \\"): "a synopsis: placeholders and [optional] parts",
    ("docs/AUDIT.md", "logarchive setup object-lock --bucket BUCKET --mode governance --days 400 [--dry-run]"):
        "a synopsis: placeholders; compliance mode cannot be undone",
    ("docs/OPERATIONS.md", "aws cloudformation deploy --template-file .chalice/infra-dev.json --stack-name "
                           "logarchive-dev-infra \\"): "deploys to AWS (aws, chalice deploy)",
    ("docs/OPERATIONS.md", "logarchive setup lifecycle --bucket CUSTOMER_BUCKET --stack STACK --transition-days 30 \\"):
        "placeholders: CUSTOMER_BUCKET, STACK",
    ("docs/RETRIEVAL.md", "export AWS_PROFILE=logs-reader             # any standard boto3 credential source works"):
        "a customer's AWS profile and bucket (acme-logs)",
    ("docs/RETRIEVAL.md", "logarchive logs-from-archive --api-url https://abc123.execute-api.eu-west-1.amazonaws.com"
                          "/api \\"): "a deployed API Gateway URL",
    ("docs/SHIPPER.md", "logarchive ship --docker-root /var/lib/docker --staging s3://acme-logarchive-staging/staged \\"):
        "a real Docker host and AWS",
    ("docs/SHIPPER.md", "logarchive ship: 3 containers scanned in 0.1 s"): "output of a real host, not a command",
    ("docs/KUBERNETES.md", "logarchive logs-from-archive --bucket CUSTOMER_BUCKET --stack prod --key-file master.key \\"):
        "placeholders: CUSTOMER_BUCKET; the same command runs in make demo (devkit/demo.py)",
}


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    mark: str | None
    text: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def first(self) -> str:
        return self.text.split("\n", 1)[0]


def blocks(path: Path) -> list[Block]:
    found, lines = [], path.read_text().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
            mark = before if before in (RUN, SERVER) else None
            found.append(Block(path, i + 1, mark, "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return found


ALL = [b for p in DOCS for b in blocks(p)]


def test_every_documented_logarchive_command_runs_or_says_why_not() -> None:
    unaccounted = [f"{b.name}:{b.line}: {b.first}" for b in ALL
                   if any(COMMAND.match(x) for x in b.text.split("\n")) and b.mark is None
                   and (b.name, b.first) not in NOT_RUNNABLE]
    assert unaccounted == [], "mark these blocks <!-- run --> or list them in NOT_RUNNABLE"
    present = {(b.name, b.first) for b in ALL if b.mark is None}
    assert set(NOT_RUNNABLE) <= present, f"stale NOT_RUNNABLE entries: {set(NOT_RUNNABLE) - present}"


def _env(ports: dict[str, str]) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**clean_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}


def _script(part: list[Block], ports: dict[str, str]) -> str:
    text = "\n".join(b.text for b in part)
    for old, new in ports.items():
        text = text.replace(old, new)
    return "set -euo pipefail\n" + text + "\n"


def _bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    return proc.stdout


RUNNABLE_FILES = sorted({b.name for b in ALL if b.mark})


@pytest.mark.parametrize("name", RUNNABLE_FILES)
def test_documented_commands_run_as_written(name: str, tmp_path: Path) -> None:
    mine = [b for b in ALL if b.name == name and b.mark]
    ports = {p: str(local_aws.free_port()) for p in PORTS}
    env = _env(ports)
    servers = [i for i, b in enumerate(mine) if b.mark == SERVER]
    assert len(servers) <= 1
    if not servers:
        _bash(_script(mine, ports), tmp_path, env)
        return
    at = servers[0]
    if at:
        _bash(_script(mine[:at], ports), tmp_path, env)
    command = _script([mine[at]], ports).split("\n", 1)[1].strip()
    server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stdout:
            if line.startswith("Ctrl-C to stop."):
                break
        else:
            raise AssertionError(f"{command} exited: {server.stderr.read()}")
        out = _bash(_script(mine[at + 1:], ports), tmp_path, env)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    if name == "README.md":  # what the tour promises
        assert list((tmp_path / "logs").rglob("*.archived.gz"))
        assert (tmp_path / "db.log").stat().st_size > 0
        # The digest step seals a digest of real work, and the audit of the customer bucket passes.
        sealed = re.search(r"^sealed digest s3://prod-logarchive-archive/\S+ \((\d+) archives", out, re.M)
        assert sealed and int(sealed[1]) > 0, out[-4000:]
        audited = re.search(r"^(\d+) digests?, (\d+) archives?, \d+ containers? contiguous, 0 pending", out, re.M)
        assert audited and int(audited[1]) >= 1 and int(audited[2]) >= int(sealed[1]), out[-4000:]
        assert "FAILED" not in out


def test_the_decryptor_line_count_is_the_code_block_s() -> None:
    """README and FORMAT.md name the decryptor's length: the lines of FORMAT.md's block, counted here."""
    fmt = ROOT / "docs" / "FORMAT.md"
    text = fmt.read_text().split("\n")
    marker = next(i for i, x in enumerate(text) if x.startswith("<!-- snippet: decrypt.py"))
    snippet = next(b for b in blocks(fmt) if b.line > marker)
    lines = len(snippet.text.split("\n"))
    claims = [int(n) for p in (ROOT / "README.md", fmt)
              for n in re.findall(r"(\d+)-line\s+(?:independent\s+)?decryptor", p.read_text())]
    assert len(claims) >= 2 and claims == [lines] * len(claims), (claims, lines)
