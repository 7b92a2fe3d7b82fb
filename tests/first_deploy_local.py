"""The local stand-ins for the two first-deploy steps that need real Lambda (tests/test_first_deploy.py).

``deploy --stage S``: what ``chalice deploy`` does for IAM — a role ``logarchive-<stage>-<function>``
per function carrying its ``.chalice/policy-<stage>-<function>.json`` (as the local AWS can enforce
it: devkit/local_iam.py). ``invoke FUNCTION --stage S``: what ``aws lambda invoke`` does — the
function's real handler from this project's app.py, with the stage's environment, under that role;
prints its answer. Run from the project directory, with the local AWS's administrator's keys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["deploy", "invoke"])
    p.add_argument("function", nargs="?")
    p.add_argument("--stage", required=True)
    args = p.parse_args(argv)
    project = Path.cwd()
    sys.path.insert(0, str(project))
    from chalicelib import aws
    from chalicelib.devkit import local_iam
    from chalicelib.setup import deployment
    from chalicelib.setup.resources import FUNCTIONS, deployed_role_name

    admin = aws.Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    config = deployment.load_config(project)

    def role(fn: str) -> aws.Credentials:
        policy = json.loads((project / ".chalice" / deployment.policy_file(args.stage, fn)).read_text())
        return local_iam.role_credentials(deployed_role_name("logarchive", args.stage, fn),
                                          local_iam.local_policy(policy), admin=admin)

    if args.what == "deploy":
        for fn in FUNCTIONS:
            role(fn)
            print(f"role logarchive-{args.stage}-{fn}: {deployment.policy_file(args.stage, fn)}")
        return 0
    os.environ.update(deployment.stage_env(config, args.stage))
    os.environ.update({"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"})
    creds = role(args.function)
    from chalice.local import LambdaContext

    import app

    event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
             "resources": [], "account": "", "region": os.environ["AWS_REGION"], "time": "", "id": "local"}
    with aws.credentials(creds):
        answer = app.app.handler_map[args.function](
            event, LambdaContext(args.function, memory_size=512, max_runtime_ms=300_000))
    print(json.dumps(answer, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
