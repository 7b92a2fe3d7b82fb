"""``logarchive setup``: customer bucket policy, S3 Replication and bucket checks."""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3

from .. import aws
from ..awserrors import error_label
from ..errors import LogarchiveError, UsageError
from ..setup import (
    alarms,
    bucket_policy,
    check,
    deployment,
    host_policy,
    lifecycle,
    object_lock,
    post_deploy,
    replication,
    teardown,
)
from ..setup.resources import deployed_function_name
from ._common import add_endpoint_options, add_expected_owner_option, confirm_owner, pins_owner

ROLE_ENV = "LOGARCHIVE_REPLICATION_ROLE_ARN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setup", help="set up a customer bucket: policy, replication, checks")
    ssub = p.add_subparsers(dest="setup_command", required=True)

    bp = ssub.add_parser("bucket-policy", help="print the bucket policy the customer applies")
    bp.add_argument("--bucket", required=True, help="the customer's bucket")
    bp.add_argument("--role-arn", help=f"the replication role (default: ${ROLE_ENV})")
    bp.set_defaults(func=run_bucket_policy)

    hp = ssub.add_parser("host-policy", help="print the IAM policy of one Docker host's shipper role "
                         "(its own staging path only; docs/SHIPPER.md)")
    hp.add_argument("--staging", required=True, metavar="s3://BUCKET/PREFIX", help="where the hosts stage")
    hp.add_argument("--stack", required=True, help="the stack the host ships for")
    hp.add_argument("--host", required=True, help="the host's name, as its shipper's --host")
    hp.add_argument("--archive-bucket", default="",
                    help="also let it read the stack's archive metadata, for --rebuild-state (default: none)")
    hp.add_argument("--role-name", action="store_true",
                    help="print the role's name instead (<stack>-logarchive-ship-<host>; default: print "
                    "the policy)")
    hp.set_defaults(func=run_host_policy)

    rp = ssub.add_parser("replication", help="configure S3 Replication archive bucket -> customer bucket")
    rp.add_argument("--source-bucket", required=True, help="the archive bucket")
    rp.add_argument("--dest-bucket", required=True, help="the customer's bucket")
    rp.add_argument("--role-arn", required=True, help="the role S3 assumes to replicate")
    rp.add_argument("--dest-account", default="",
                    help="the customer's account id, for the owner override (default: none)")
    rp.add_argument("--prefix", default=None,
                    help="replicate only keys under this prefix (default: <stack>/shareable/ with --stack, "
                    "else every key)")
    rp.add_argument("--stack", default="",
                    help="the stack: its archives, by a second rule its Kubernetes archives "
                    "(_k8s/<stack>/) and by a third its signed digests (_logarchive/digests/<stack>/) "
                    "replicate (default: none)")
    rp.add_argument("--dry-run", action="store_true", help="print the configuration, change nothing")
    add_endpoint_options(rp)
    rp.set_defaults(func=run_replication)

    cp = ssub.add_parser("check", help="check a customer bucket against the prerequisites; check a "
                         "stage's buckets and list its alarms")
    cp.add_argument("--bucket", help="the customer's bucket, run with the customer's credentials "
                    "(required unless --stage)")
    cp.add_argument("--stage", help="check every bucket of this Chalice stage (exists, owned by the expected "
                    "account, in its region) and list its alarms, from .chalice/config.json (default: none)")
    cp.add_argument("--project-dir", default=".", help="the Chalice project, with --stage (default: .)")
    cp.add_argument("--stack-region",
                    help="the region the stack runs in (default: --region, else the session's region)")
    cp.add_argument("--role-arn", default="",
                    help="the replication role the policy must grant (default: any)")
    cp.add_argument("--stack", default="",
                    help="only keys under <stack>/shareable/ count as ours (default: any stack's)")
    cp.add_argument("--sample", type=int, default=check.DEFAULT_SAMPLE,
                    help="object versions to inspect for foreign content, at most 1000 (default: "
                         "%(default)s)")
    cp.add_argument("--retention-days", type=int, metavar="R",
                    help="warn when a lifecycle rule expires archives sooner (default: Object Lock's)")
    add_endpoint_options(cp)
    add_expected_owner_option(cp)
    cp.set_defaults(func=pins_owner(run_check))

    lp = ssub.add_parser("object-lock",
                         help="enable S3 Object Lock on a versioned bucket with a default retention")
    lp.add_argument("--bucket", required=True, help="the versioned bucket to lock (archive or customer)")
    lp.add_argument("--mode", required=True, choices=object_lock.MODES,
                    help="compliance: nobody, root included, can delete or shorten it (needs --yes)")
    lp.add_argument("--days", required=True, type=int, help="default retention of every new object")
    lp.add_argument("--dry-run", action="store_true", help="print the configuration, change nothing")
    lp.add_argument("--yes", action="store_true", help="confirm compliance mode, which cannot be undone")
    add_endpoint_options(lp)
    lp.set_defaults(func=run_object_lock)

    lp = ssub.add_parser("lifecycle", help="move the stack's archives to a colder class, expire them later")
    lp.add_argument("--bucket", required=True, help="the customer's bucket or the archive bucket")
    lp.add_argument("--stack", required=True, help="the rule covers <stack>/shareable/ only")
    lp.add_argument("--transition-days", type=int, required=True, metavar="N",
                    help="days after an archive's creation that it moves to --storage-class")
    lp.add_argument("--storage-class", required=True, choices=lifecycle.STORAGE_CLASSES,
                    help="the class archives move to")
    lp.add_argument("--expire-days", type=int, metavar="M",
                    help="days after creation that archives expire, later than --transition-days "
                    "(default: never)")
    lp.add_argument("--retention-days", type=int, metavar="R",
                    help="refuse an expiry before this (default: the bucket's Object Lock default)")
    lp.add_argument("--dry-run", action="store_true", help="print the configuration, change nothing")
    add_endpoint_options(lp)
    lp.set_defaults(func=run_lifecycle)

    dp = ssub.add_parser("deployment-files",
                         help="IAM policy files and CloudFormation templates from .chalice/config.json")
    dp.add_argument("--project-dir", default=".", help="the Chalice project (default: .)")
    dp.add_argument("--stage", action="append", help="only this stage (repeatable; default: all)")
    dp.add_argument("--check", action="store_true", help="change nothing; fail if any file is stale")
    dp.add_argument("--set-account", metavar="ACCOUNT_ID",
                    help="first write this LOGARCHIVE_ACCOUNT_ID into the --stage(s) (default: keep it)")
    dp.add_argument("--set-region", metavar="REGION",
                    help="first write this LOGARCHIVE_REGION into the --stage(s) (default: keep it)")
    dp.set_defaults(func=run_deployment_files)

    ep = ssub.add_parser("post-deploy",
                         help="after `chalice deploy`: partial batch responses, workers' /tmp size, the "
                         "API's gateway responses")
    ep.add_argument("--stage", required=True, help="the deployed Chalice stage")
    ep.add_argument("--app-name", default="logarchive", help="the Chalice app name (default: logarchive)")
    ep.add_argument("--api-stage", default="api",
                    help="the API Gateway stage to redeploy (config.json's api_gateway_stage; default: api)")
    add_endpoint_options(ep)
    ep.set_defaults(func=run_post_deploy)

    tp = ssub.add_parser("teardown",
                         help="remove what `chalice deploy` made for a stage (after a failed deploy)")
    tp.add_argument("--stage", required=True, help="the Chalice stage whose leftovers to remove")
    tp.add_argument("--app-name", default="logarchive", help="the Chalice app name (default: logarchive)")
    tp.add_argument("--dry-run", action="store_true", help="show what would be removed, remove nothing")
    tp.add_argument("--yes", action="store_true", help="remove without asking")
    add_endpoint_options(tp)
    tp.set_defaults(func=run_teardown)


def run_bucket_policy(args: argparse.Namespace) -> int:
    role = args.role_arn or os.environ.get(ROLE_ENV, "")
    if not role:
        raise UsageError(f"no replication role: pass --role-arn or set ${ROLE_ENV}")
    print(bucket_policy.dumps(bucket_policy.render(args.bucket, role)))
    return 0


def run_host_policy(args: argparse.Namespace) -> int:
    url = args.staging
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise UsageError(f"--staging {url!r}: expected s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[5:].partition("/")
    if args.role_name:
        print(host_policy.role_name(args.stack, args.host))
    else:
        doc = host_policy.policy(stack=args.stack, host=args.host, staging_bucket=bucket,
                                 staging_prefix=prefix, archive_bucket=args.archive_bucket)
        print(host_policy.dumps(doc))
    return 0


def run_replication(args: argparse.Namespace) -> int:
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    target = replication.ReplicationTarget(
        source_bucket=args.source_bucket,
        dest_bucket=args.dest_bucket,
        role_arn=args.role_arn,
        dest_account=args.dest_account,
        prefix=args.prefix if args.prefix is not None else (f"{args.stack}/shareable/" if args.stack else ""),
    )
    also = ((replication.k8s_target(target, args.stack), replication.digests_target(target, args.stack))
            if args.stack else ())
    problems, warnings = replication.check_versioning(s3, target)
    for w in warnings:
        print(f"logarchive: warning: {w}", file=sys.stderr)
    if problems and not args.dry_run:
        for p in problems:
            print(f"logarchive: error: {p}", file=sys.stderr)
        return 1
    config = replication.configure(s3, target, dry_run=args.dry_run, also=also)
    if args.dry_run:
        print(json.dumps(config, indent=2))
        for p in problems:
            print(f"logarchive: error: {p}", file=sys.stderr)
        return 1 if problems else 0
    rules = " and ".join(t.id for t in (target, *also))
    print(f"replication {args.source_bucket} -> {args.dest_bucket}: rule(s) {rules} set "
          f"({len(config['Rules'])} rule(s) in all)")
    return 0


def run_lifecycle(args: argparse.Namespace) -> int:
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    plan = lifecycle.RetentionPlan(args.stack, args.transition_days, args.storage_class, args.expire_days)
    contradictions = lifecycle.validate(plan, args.retention_days, "--retention-days")
    if contradictions:  # the options contradict each other: a usage error, before any request
        raise UsageError("; ".join(contradictions))
    retention, source = args.retention_days, "--retention-days"
    if retention is None:
        try:
            retention = lifecycle.object_lock_days(s3, args.bucket)
            source = "the bucket's Object Lock default"
        except Exception as exc:
            raise LogarchiveError(f"bucket {args.bucket}: cannot read its Object Lock configuration "
                                  f"({error_label(exc)})") from None
    problems = lifecycle.validate(plan, retention, source)
    for p in problems:
        print(f"logarchive: error: {p}", file=sys.stderr)
    if problems:
        return 1
    warning = lifecycle.early_deletion_warning(plan)
    if warning:
        print(f"logarchive: warning: {warning}", file=sys.stderr)
    try:
        config = lifecycle.configure(s3, args.bucket, plan, dry_run=args.dry_run)
    except Exception as exc:
        raise LogarchiveError(f"bucket {args.bucket}: cannot {'read' if args.dry_run else 'set'} its "
                              f"lifecycle configuration ({error_label(exc)})") from None
    if args.dry_run:
        print(json.dumps(config, indent=2))
        return 0
    print(json.dumps(lifecycle.build_rules(plan), indent=2))
    print(f"lifecycle of {args.bucket}: rules {lifecycle.rule_id(args.stack)} and "
          f"{lifecycle.k8s_rule_id(args.stack)} set "
          f"({len(config['Rules'])} rule(s) in all)")
    return 0


def run_stage_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..settings import Settings

    config = deployment.load_config(Path(args.project_dir))
    env = deployment.stage_env(config, args.stage)
    deployment.stage_resources(config, args.stage)  # one line for a stage that cannot deploy
    stage = Settings.from_env(env)
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region or stage.region)
    sts = aws.client("sts", endpoint_url=args.endpoint_url, region=args.region or stage.region)
    results = check.check_stage_buckets(s3, sts, stage)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
        if not r.ok and r.fix:
            print(f"     fix: {r.fix}")
    failed = [r.name for r in results if not r.ok]
    print(f"stage {args.stage}: " + (f"{len(failed)} bucket(s) failed: {', '.join(failed)}" if failed
                                     else f"all {len(results)} bucket(s) exist where and whose they should"))
    return 1 if failed else 0


def run_check(args: argparse.Namespace) -> int:
    if not args.bucket and not args.stage:
        raise UsageError("the following arguments are required: --bucket (or --stage)")
    if args.expected_owner and not args.bucket:
        raise UsageError("--expected-owner goes with --bucket (--stage checks each bucket's owner from "
                         "the stage)")
    stage_status = 0
    if args.stage:
        lines = alarms.stage_listing(args.project_dir, args.stage)
        print(f"stage {args.stage}: {len(lines)} alarms, each notifying logarchive-{args.stage}-alarms "
              "(docs/OPERATIONS.md §6)")
        for line in lines:
            print(f"  {line}")
        stage_status = run_stage_check(args)
    if not args.bucket:
        return stage_status
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    stack_region = args.stack_region or args.region or boto3.session.Session().region_name
    if not stack_region:
        raise UsageError("--stack-region is needed: no region is configured (--region, $AWS_DEFAULT_REGION)")
    confirm_owner(s3, args.bucket, args.expected_owner)
    results = check.run_checks(
        s3, args.bucket, stack_region=stack_region, role_arn=args.role_arn,
        stack=args.stack, sample=args.sample, retention_days=args.retention_days,
    )
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
        if not r.ok and r.fix:
            print(f"     fix: {r.fix}")
        for w in r.warnings:
            print(f"warn {r.name}: {w}")
    failed = [r.name for r in results if not r.ok]
    print(f"{args.bucket}: " + (f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed
                                 else "ready for log archives"))
    return 1 if failed or stage_status else 0


def run_object_lock(args: argparse.Namespace) -> int:
    if args.mode == "compliance":
        print("compliance mode: no one, the account's root user included, can delete these objects or "
              f"shorten their retention for {args.days} days, and Object Lock cannot be disabled")
        if not args.yes and not args.dry_run:  # the help says it needs --yes: a usage error
            raise UsageError("compliance mode cannot be undone: run again with --yes (--dry-run shows "
                             "what it sets)")
    s3 = aws.client("s3", endpoint_url=args.endpoint_url, region=args.region)
    config, problems = object_lock.plan(s3, args.bucket, args.mode, args.days)
    before = object_lock.state(s3, args.bucket).describe()
    print(f"s3://{args.bucket}: {before}; will set {args.mode.upper()} {args.days} days default retention "
          "(objects written from now on; existing versions keep theirs)")
    if args.dry_run:
        print(json.dumps(config, indent=2))
    for p in problems:
        print(f"logarchive: error: {p}", file=sys.stderr)
    if problems or args.dry_run:
        return 1 if problems else 0
    object_lock.apply(s3, args.bucket, config)
    print(f"s3://{args.bucket}: {object_lock.state(s3, args.bucket).describe()}")
    return 0


def run_deployment_files(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.set_account or args.set_region:
        if not args.stage:
            raise UsageError("--set-account/--set-region need --stage")
        if args.check:
            raise UsageError("--set-account/--set-region change config.json: not with --check")
        deployment.set_stage_place(Path(args.project_dir), args.stage, account=args.set_account or "",
                                   region=args.set_region or "")
    problems = deployment.sync(Path(args.project_dir), args.stage, check=args.check)
    for p in problems:
        print(f"logarchive: error: {p}", file=sys.stderr)
    if not problems and not args.check:
        print("deployment files written to .chalice/")
    return 1 if problems else 0


def run_post_deploy(args: argparse.Namespace) -> int:
    client = aws.client("lambda", endpoint_url=args.endpoint_url, region=args.region)
    missing = []
    for fn in post_deploy.SQS_FUNCTIONS:
        name = deployed_function_name(args.app_name, args.stage, fn)
        found = post_deploy.enable_partial_batch_responses(client, name)
        if not found:
            missing.append(name)
            continue
        for queue, changed in found:
            print(f"{name} <- {queue}: {'ReportBatchItemFailures enabled' if changed else 'already enabled'}")
        if post_deploy.ensure_ephemeral_storage(client, name):
            print(f"{name}: /tmp raised to {post_deploy.EPHEMERAL_STORAGE_MB} MB")
    apigw = aws.client("apigateway", endpoint_url=args.endpoint_url, region=args.region)
    api_function = deployed_function_name(args.app_name, args.stage, "api_handler")
    api_id = post_deploy.rest_api_of(apigw, args.app_name, api_function)
    if api_id is None:
        missing.append(f"the REST API of {api_function}")
    else:
        written = post_deploy.ensure_gateway_responses(apigw, api_id, args.api_stage)
        print(f"rest api {api_id}: gateway responses {', '.join(written)} in the API's error shape")
    for name in missing:
        print(f"logarchive: error: {name} not found (deployed?)" if name.startswith("the REST")
              else f"logarchive: error: {name} has no SQS event source (deployed?)", file=sys.stderr)
    return 1 if missing else 0


def run_teardown(args: argparse.Namespace) -> int:
    clients = {name: aws.client(name, endpoint_url=args.endpoint_url, region=args.region)
               for name in ("lambda", "iam", "events", "apigateway", "cloudformation")}
    inv = teardown.find(clients, args.app_name, args.stage)
    for what, why in inv.kept:
        print(f"kept: {what}: {why}")
    if not inv.remove:
        print(f"nothing of {args.app_name} stage {args.stage} to remove")
        return 0
    print(f"{args.app_name} stage {args.stage}, made by `chalice deploy` "
          f"({len(inv.remove)}, in removal order):")
    for found in inv.remove:
        print(f"  {found}")
    print("Buckets, tables, queues, secrets, parameters, keys and CloudFormation stacks "
          "are left as they are.")
    if args.dry_run:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise LogarchiveError("teardown: not removing without --yes (standard input is not a terminal)")
        if input(f"Type the stage name ({args.stage}) to remove these: ").strip() != args.stage:
            print("nothing removed")
            return 1
    failed = 0
    for found, error in teardown.remove_all(clients, inv.remove):
        if error:
            failed += 1
            print(f"logarchive: error: {found.kind} {found.id}: {error}", file=sys.stderr)
        else:
            print(f"removed {found.kind} {found.id}")
    return 1 if failed else 0
