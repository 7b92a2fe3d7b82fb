"""Generate (or check) the deployment files of every stage from .chalice/config.json.

For each stage: ``policy-<stage>-<function>.json`` (the ``iam_policy_file`` of each
function), ``merge-template-<stage>.json`` (``chalice package --merge-template``) and
``infra-<stage>.json`` (the same resources as a stack of their own, for ``chalice deploy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..settings import Settings
from . import iam, templates
from .resources import FUNCTIONS, DeploymentConfigError, StageResources, api_token_secret_name


def load_config(project_dir: Path) -> dict[str, Any]:
    return json.loads((project_dir / ".chalice" / "config.json").read_text())


def stage_env(config: dict[str, Any], stage: str) -> dict[str, str]:
    """The stage's environment, as Chalice merges it (top level, then the stage)."""
    try:
        stage_cfg = config["stages"][stage]
    except KeyError:
        raise DeploymentConfigError(f"no stage {stage!r} in .chalice/config.json") from None
    return {**config.get("environment_variables", {}), **stage_cfg.get("environment_variables", {})}


def stage_resources(config: dict[str, Any], stage: str) -> StageResources:
    return StageResources.from_env(stage, stage_env(config, stage))


def policy_file(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def render(config: dict[str, Any], stage: str) -> dict[str, str]:
    """File name (relative to .chalice/) -> contents, for one stage."""
    res = stage_resources(config, stage)
    files = {policy_file(stage, fn): _dump(iam.function_policy(res, fn)) for fn in FUNCTIONS}
    files[f"merge-template-{stage}.json"] = _dump(templates.merge_template(res))
    files[f"infra-{stage}.json"] = _dump(templates.infra_template(res))
    return files


def config_problems(config: dict[str, Any], stage: str) -> list[str]:
    """Settings Chalice must have for the policy files to be used at all."""
    problems = []
    stage_cfg = config["stages"][stage]
    if stage_cfg.get("autogen_policy", config.get("autogen_policy")) is not False:
        problems.append(f"stage {stage}: autogen_policy must be false")
    if not stage_env(config, stage).get("LOGARCHIVE_API_TOKEN_SECRET"):
        # The API reads it at run time: without it no pagination token can be issued.
        problems.append(f"stage {stage}: LOGARCHIVE_API_TOKEN_SECRET must name the secret the template "
                        f"generates ({api_token_secret_name(stage)!r})")
    functions = stage_cfg.get("lambda_functions", {})
    for fn in FUNCTIONS:
        named = functions.get(fn, {}).get("iam_policy_file")
        if named != policy_file(stage, fn):
            problems.append(f"stage {stage}: lambda_functions.{fn}.iam_policy_file should be "
                            f"{policy_file(stage, fn)!r}, is {named!r}")
    return problems


def set_stage_place(project_dir: Path, stages: list[str], *, account: str = "", region: str = "") -> None:
    """Write the stages' ``LOGARCHIVE_ACCOUNT_ID`` / ``LOGARCHIVE_REGION`` (the one place of each)
    into .chalice/config.json; everything region- or account-bound derives from them."""
    path = project_dir / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    for stage in stages:
        if stage not in config.get("stages", {}):
            raise DeploymentConfigError(f"no stage {stage!r} in .chalice/config.json")
        env = config["stages"][stage].setdefault("environment_variables", {})
        for name, value in (("LOGARCHIVE_ACCOUNT_ID", account), ("LOGARCHIVE_REGION", region)):
            if value:
                env[name] = value
        Settings.from_env(env)  # one line naming a malformed value, before anything is written
    path.write_text(json.dumps(config, indent=2) + "\n")


def region_disagreement(config: dict[str, Any], stage: str, environ: Mapping[str, str]) -> str:
    """One line when ``$AWS_REGION`` names another region than the stage's (else "")."""
    configured = environ.get("AWS_REGION", "").strip()
    stage_region = Settings.from_env(stage_env(config, stage)).region
    if configured and stage_region and configured != stage_region:
        return (f"stage {stage} is in {stage_region} (LOGARCHIVE_REGION) but AWS_REGION is {configured}: "
                f"run with AWS_REGION={stage_region}, or set the stage's region with "
                f"`logarchive setup deployment-files --stage {stage} --set-region {configured}`")
    return ""


def sync(project_dir: Path, stages: list[str] | None = None, *, check: bool = False,
         environ: Mapping[str, str] | None = None) -> list[str]:
    """Write the files (or, with ``check``, list the ones that are stale); returns problems.
    A stage in another region than ``$AWS_REGION`` is refused before anything is written."""
    config = load_config(project_dir)
    problems: list[str] = []
    names = stages or sorted(config.get("stages", {}))
    env = os.environ if environ is None else environ
    refused = [line for line in (region_disagreement(config, s, env) for s in names) if line]
    if refused:
        return refused
    for stage in names:
        problems += config_problems(config, stage)
        for name, text in render(config, stage).items():
            path = project_dir / ".chalice" / name
            current = path.read_text() if path.exists() else None
            if current == text:
                continue
            if check:
                problems.append(f".chalice/{name} is {'stale' if current else 'missing'}: "
                                "run `logarchive setup deployment-files`")
            else:
                path.write_text(text)
    return problems
