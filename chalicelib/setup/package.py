"""The Lambda deployment package: ``chalice package``, then bytecode compiled for the runtime.

Lambda's code directory is read-only, so a package without ``.pyc`` files compiles every
module it imports on every cold start. The ``.pyc`` files are those ``compileall
--invalidation-mode unchecked-hash`` writes (PEP 552), written straight into the zip (no
unzip and re-zip), with the code's paths under ``/var/task``: a timestamp-checked ``.pyc``
compares the source's mtime, which unzipping does not keep exactly (zip stores local time to
2 s), so it counts as stale and is silently ignored. ``.pyc`` files are specific to the Python minor version,
so the building interpreter must be the runtime's (Chalice takes the runtime from it too).

``python -m chalicelib.setup.package --stage S OUT`` is what ``make package`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import LogarchiveError

# Lambda's x86_64 runtimes (Amazon Linux 2023: glibc 2.34) install manylinux2014 wheels.
PLATFORM = "manylinux2014_x86_64"
# Where Lambda unzips the package.
TASK_ROOT = "/var/task"


class PackageError(LogarchiveError):
    """The deployment package could not be built."""


def runtime_of(sam: dict) -> str:
    """The Python runtime (``python3.11``) of every function of a packaged template."""
    runtimes = {r["Properties"]["Runtime"] for r in sam["Resources"].values()
                if r["Type"] == "AWS::Serverless::Function"}
    if len(runtimes) != 1:
        raise PackageError(f"sam.json: expected one Python runtime, found {sorted(runtimes)}")
    return runtimes.pop()


def this_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def wheelhouse(requirements: Path, cache_dir: Path) -> Path:
    """Lambda's wheels of ``requirements``, downloaded once into ``cache_dir`` (needs PyPI once)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(requirements.read_bytes() + f"{version} {PLATFORM}".encode()).hexdigest()[:16]
    dest = cache_dir / f"wheelhouse-cp{version.replace('.', '')}-{digest}"
    if (dest / ".complete").exists():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=cache_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--platform", PLATFORM,
         "--python-version", version, "--implementation", "cp", "--only-binary=:all:",
         "-r", str(requirements), "-d", str(partial)],
        capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PackageError(f"pip download of {requirements}: {last}")
    (partial / ".complete").touch()
    if dest.exists() and not (dest / ".complete").exists():
        shutil.rmtree(dest, ignore_errors=True)  # never completed: not in use
    try:
        partial.rename(dest)
    except OSError:
        # Another build finished the same wheelhouse first: use it.
        shutil.rmtree(partial, ignore_errors=True)
        if not (dest / ".complete").exists():
            raise PackageError(f"{dest}: cannot be written") from None
    return dest


def chalice_package(project: Path, stage: str, out: Path, *, merge_template: Path | None = None,
                    wheels: Path | None = None) -> dict:
    """Run ``chalice package`` (pip reads only ``wheels`` when given); returns sam.json."""
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if wheels:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    cmd = [str(Path(sys.executable).with_name("chalice")), "package", "--stage", stage]
    if merge_template:
        cmd += ["--merge-template", str(merge_template.resolve())]
    proc = subprocess.run([*cmd, str(out.resolve())], cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = ((proc.stderr + proc.stdout).strip().splitlines() or ["no output"])[-1]
        raise PackageError(f"chalice package --stage {stage}: {last}")
    return json.loads((out / "sam.json").read_text())


def hash_pyc(source: bytes, filename: str) -> bytes:
    """An unchecked hash-based ``.pyc`` (PEP 552) of ``source``, as compileall writes it."""
    code = compile(source, filename, "exec", dont_inherit=True)
    flags = 0b01  # hash-based; the "check_source" bit (0b10) unset: never compared with the source
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def add_bytecode(zip_path: Path, runtime: str) -> tuple[int, list[str]]:
    """Add a ``.pyc`` of every module to ``zip_path``; returns how many, and those that do not
    compile (a vendored test of another Python version: never imported)."""
    if runtime != this_runtime():
        raise PackageError(f"{zip_path}: the runtime is {runtime} but this is {this_runtime()}; "
                           "build with the runtime's Python")
    added, failed = 0, []
    with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED) as zf:
        present = set(zf.namelist())
        for info in zf.infolist():
            name = info.filename
            pyc = importlib.util.cache_from_source(name)
            if not name.endswith(".py") or pyc in present:
                continue
            try:
                # The path the code has in Lambda, for tracebacks.
                data = hash_pyc(zf.read(name), f"{TASK_ROOT}/{name}")
            except (SyntaxError, ValueError):
                failed.append(name)
                continue
            entry = zipfile.ZipInfo(pyc, date_time=info.date_time)
            entry.external_attr = info.external_attr
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
            added += 1
    return added, failed


def build(project: Path, stage: str, out: Path, *, merge_template: Path | None = None,
          wheels: Path | None = None) -> Path:
    """``chalice package`` into ``out`` plus bytecode; returns the deployment.zip."""
    sam = chalice_package(project, stage, out, merge_template=merge_template, wheels=wheels)
    zip_path = out / "deployment.zip"
    _, failed = add_bytecode(zip_path, runtime_of(sam))
    for name in failed:
        print(f"{zip_path}: {name} does not compile for {runtime_of(sam)}: shipped without bytecode",
              file=sys.stderr)
    return zip_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chalicelib.setup.package", description=__doc__.split("\n")[0])
    p.add_argument("--stage", required=True)
    p.add_argument("--merge-template", type=Path)
    p.add_argument("--wheelhouse", type=Path, help="pip reads only these wheels (offline builds)")
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    try:
        zip_path = build(Path.cwd(), args.stage, args.out, merge_template=args.merge_template,
                         wheels=args.wheelhouse)
    except LogarchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{zip_path}: {zip_path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
