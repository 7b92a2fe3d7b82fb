"""Cold start of the Lambda package: ``import app`` and each handler's first invocation.

    python bench/bench_coldstart.py [--repeat 7] [--stage dev] [--json FILE]

Builds the stage's real ``deployment.zip`` as ``make package`` does (with bytecode,
``chalicelib/setup/package.py``; wheels cached as in tests/test_deployed_package.py), unzips it
twice into read-only directories: as built ("compiled"), and with every ``.pyc`` removed
("source only", what ``chalice package``/``chalice deploy`` ship). Every run is a fresh
interpreter as Lambda starts one: ``-I -S`` with only the package and the standard library on
the path, the function's Lambda environment, and ``-B`` (the code directory is read-only in
Lambda; as root the permissions alone would not stop Python writing ``.pyc`` files).

1. ``python -v``: how many modules are compiled from source at ``import app`` (the compiled
   package must compile none).
2. The target: ``import app`` of the compiled package against the baseline ``import boto3,
   cryptography`` from the source-only package (no slower than it), and ``import app`` from
   source only (how it was). Median of ``--repeat`` runs, wall and process CPU time: the
   machine is shared, so the CPU column is the steadier one.
3. Each handler cold, on the events AWS sends, against the embedded AWS
   (``devkit/packaged.run_every_handler``): import and first invocation, both packages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from archiver_support import docker_lines, stage  # noqa: E402

from chalicelib.devkit import local_aws, packaged  # noqa: E402

IMPORT_TIMER = r"""
import sys, time
t, c = time.perf_counter(), time.process_time()
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2].split(","):
    __import__(name)
print(time.perf_counter() - t, time.process_time() - c)
"""
# "# code object from '/path/x.pyc'" is a .pyc read; from a .py path, a compilation.
COMPILED = re.compile(r"^# code object from '?(?P<path>[^']+\.py)'?$", re.M)


def read_only_copy(src: Path, dest: Path, *, bytecode: bool) -> Path:
    shutil.copytree(src, dest, ignore=None if bytecode else shutil.ignore_patterns("__pycache__", "*.pyc"))
    for d, _, files in os.walk(dest):
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
        os.chmod(d, 0o555)
    return dest


def lambda_env(lambdas: packaged.PackagedLambdas, task: Path, function: str) -> dict[str, str]:
    return {**lambdas.env(function), "LAMBDA_TASK_ROOT": str(task)}


def time_import(task: Path, modules: str, env: dict[str, str], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", IMPORT_TIMER, str(task), modules],
                             env=env, cwd=task, capture_output=True, text=True, check=True).stdout.split()
        walls.append(float(out[0]))
        cpus.append(float(out[1]))
    return statistics.median(walls), statistics.median(cpus)


def compiled_from_source(task: Path, env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-I", "-S", "-B", "-v", "-c", IMPORT_TIMER, str(task), "app"],
                          env=env, cwd=task, capture_output=True, text=True, check=True)
    return COMPILED.findall(proc.stderr)


def first_invocations(task: Path, dev: packaged.LocalStage, tmp: Path) -> list[tuple[str, dict[str, float]]]:
    lambdas = packaged.PackagedLambdas(task, dev, tmp, flags=("-B",))
    cid = "c0" * 32
    stage(__import__("boto3").client("s3"), dev.res.staging_bucket, "web", docker_lines(2000), cid=cid,
          key=f"{dev.res.staging_prefix}{dev.res.stack}/host-1/{cid}/00000001-0000000000000000.log",
          **{"logarchive-stack": dev.res.stack})
    question = {"app_id": "42", "start": "2022-01-01T12:00:00Z", "end": "2022-01-01T13:00:00Z"}
    packaged.run_every_handler(lambdas, question)
    # The first invocation of each function is its cold start; later ones (the second API
    # call, the retrieval worker's scan after its plan) are cold here too, and shown as such.
    seen: dict[str, int] = {}
    rows = []
    for i in lambdas.invocations:
        seen[i.function] = seen.get(i.function, 0) + 1
        rows.append((i.function + (f" ({seen[i.function]})" if seen[i.function] > 1 else ""), i.timings))
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--stage", default="dev")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="minutes"), "python": platform.python_version(),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                    "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        built = packaged.build_task_root(ROOT, args.stage, tmp / "build")
        compiled = read_only_copy(built, tmp / "compiled", bytecode=True)
        source = read_only_copy(built, tmp / "source", bytecode=False)
        pyc = sum(1 for _ in compiled.rglob("*.pyc"))
        print(f"package: {pyc} .pyc files; python {report['python']}; load {report['load']:.1f}")
        with local_aws.moto_server() as endpoint:
            local_aws.use_endpoint(endpoint)
            dev = packaged.stage_on_local_aws(ROOT, args.stage, endpoint)
            probe = packaged.PackagedLambdas(compiled, dev, tmp)
            env = lambda_env(probe, compiled, "api_handler")

            print("\n1. modules compiled from source at `import app` (python -v)")
            for name, task in (("compiled", compiled), ("source only", source)):
                found = compiled_from_source(task, {**env, "LAMBDA_TASK_ROOT": str(task)})
                report[f"compiled_at_import_{name.replace(' ', '_')}"] = len(found)
                print(f"   {name:12} {len(found):5d}" + (f"  e.g. {found[0]}" if found else ""))

            print(f"\n2. import times, median of {args.repeat} fresh interpreters (seconds)")
            rows = [("baseline: boto3, cryptography (source only)", source, "boto3,cryptography"),
                    ("import app (source only)", source, "app"),
                    ("import app (compiled)", compiled, "app"),
                    ("boto3, cryptography (compiled), for context", compiled, "boto3,cryptography")]
            times = {}
            for label, task, modules in rows:
                times[label] = time_import(task, modules, {**env, "LAMBDA_TASK_ROOT": str(task)}, args.repeat)
            base_wall, base_cpu = times[rows[0][0]]
            print(f"   {'':46} {'wall':>7} {'cpu':>7} {'vs baseline (wall / cpu)':>26}")
            for label, (wall, cpu) in times.items():
                print(f"   {label:46} {wall:7.3f} {cpu:7.3f} {wall / base_wall:12.2f}× {cpu / base_cpu:8.2f}×")
            report["imports"] = {k: {"wall": w, "cpu": c} for k, (w, c) in times.items()}

            print("\n3. each handler cold: import app + first invocation (seconds, wall)")
            runs = {}
            for name, task in (("compiled", compiled), ("source only", source)):
                local_aws.reset(endpoint)
                dev = packaged.stage_on_local_aws(ROOT, args.stage, endpoint)
                runs[name] = first_invocations(task, dev, tmp)
            print(f"   {'handler':26} {'compiled: import':>17} {'invoke':>7} {'source only: import':>20} {'invoke':>7}")
            for (name, c), (_, s) in zip(runs["compiled"], runs["source only"], strict=False):
                print(f"   {name:26} {c['import_s']:17.3f} {c['invoke_s']:7.3f} {s['import_s']:20.3f} "
                      f"{s['invoke_s']:7.3f}")
            report["handlers"] = {k: dict(v) for k, v in runs.items()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
