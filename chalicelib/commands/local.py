"""``logarchive local up``: a whole stage on this machine, for demos, tests and trying things out."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

from ..errors import LogarchiveError, UsageError
from ..options import add_deprecated

DESCRIPTION = """\
Start the embedded local AWS (moto's server on 127.0.0.1) with everything a stage has, and keep
it up until Ctrl-C or SIGTERM. For stack S it creates:

  buckets (versioned)  S-logarchive-staging, S-logarchive-archive, S-customer-logs,
                       S-logarchive-results (retrieval results)
  tables               S-logarchive-index, S-logarchive-jobs, S-logarchive-leases
  queues               S-logarchive-work, S-logarchive-retrieval,
                       S-logarchive-index-events (the archive bucket's S3 notifications)
  secrets              S-logarchive-api-token (API page tokens),
                       S-logarchive-keys (the --key-file keys, with --api-port)

Archives are indexed as they land in the archive bucket (the index_archive Lambda's code, fed
from S3 notifications as EventBridge feeds it in AWS). With --api-port it also serves the
retrieval API at http://127.0.0.1:Q/ (chalice's local server: IAM authorization is NOT enforced
locally) and runs retrieval jobs from the queue (the retrieval_worker Lambda's code) with the
keys of --key-file. Everything lives in memory and is gone when it stops.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("local", help="run a whole stage locally (moto server on 127.0.0.1)")
    lsub = p.add_subparsers(dest="local_command", required=True, metavar="{up,fake-docker,fake-kubelet}")
    up = lsub.add_parser(
        "up", help="start it with the stack's buckets, tables, queues and API; stay up until Ctrl-C",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--port", type=int, default=5000, metavar="P",
                    help="port of the local AWS endpoint; refused if taken (default: 5000)")
    up.add_argument("--stack", default="demo", metavar="S",
                    help="stack name in every name above (default: demo)")
    up.add_argument("--lambda-log", metavar="FILE",
                    help="append the Lambdas' logs (Powertools JSON) here (default: "
                    "logarchive-local-S-lambda.log in the temporary directory)")
    up.add_argument("--api-port", type=int, metavar="Q",
                    help="also serve the retrieval API on this port and run its jobs (default: no API)")
    up.add_argument("--key-file", metavar="K",
                    help="file of base64 master keys, one a line, for retrieval jobs "
                    "(required with --api-port; default: none)")
    up.add_argument("--iam", action="store_true",
                    help="enforce IAM: each function runs under a role of its generated policy, the "
                    "throwaway keys stop working and an administrator's keys are printed (default: off)")
    add_deprecated(up, "--decryption-keys-file", new="--key-file", dest="key_file", metavar="K")
    up.set_defaults(func=run_up)
    fake = lsub.add_parser(
        "fake-docker", help="write a Docker data root with a few exited containers, to ship from",
        description="Writes DIR/containers/<id>/ as dockerd's json-file driver does: exited containers "
        "of app 42 (rotated, compress=true) and database 9, a line a second from 2022-01-01T12:00:00Z.",
    )
    fake.add_argument("--root", required=True, metavar="DIR", help="the data root to create (must not exist)")
    fake.set_defaults(func=run_fake_docker)
    kube = lsub.add_parser(
        "fake-kubelet", help="write a Kubernetes node's /var/log/pods and /var/log/containers, to ship from",
        description="Writes DIR/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log as kubelet and a CRI "
        "runtime do, and DIR/containers/ symlinks: namespaces shop, kube-system and batch; restarts, "
        "rotations (older ones gzipped), partial records, a deleted pod; a line a second from "
        "2022-01-01T12:00:00Z. Ship it with: logarchive ship --pods-root DIR/pods …",
    )
    kube.add_argument("--root", required=True, metavar="DIR",
                      help="the node's log root to create (must not exist)")
    kube.set_defaults(func=run_fake_kubelet)


def run_up(args: argparse.Namespace) -> int:
    if args.api_port is not None and not args.key_file:
        raise UsageError("the following arguments are required with --api-port: --key-file")
    if args.key_file and args.api_port is None:
        raise UsageError("--key-file is used only with --api-port")
    if args.api_port is not None and args.api_port == args.port:
        raise UsageError("--api-port must differ from --port")
    from ..devkit import local_aws

    keys_text = None
    if args.key_file:
        from ..keyring import read_key_file

        keys_text = "\n".join(k.to_base64() for k in read_key_file(args.key_file))
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        if args.api_port is not None:
            local_aws.check_port_free(args.api_port, "--api-port")
        with ExitStack() as stack:
            endpoint = stack.enter_context(local_aws.moto_server(args.port, die_with_parent=True))
            from ..devkit import local_stack

            roles: list = []
            lambda_log = args.lambda_log or os.path.join(tempfile.gettempdir(),
                                                         f"logarchive-local-{args.stack}-lambda.log")
            api_url = stack.enter_context(local_stack.running_stage(
                endpoint, args.stack, keys_text=keys_text, api_port=args.api_port, lambda_log=lambda_log,
                iam=roles.append if args.iam else None))
            print(f"local AWS up at {endpoint}", flush=True)
            print(f"Lambda logs (Powertools JSON) go to {lambda_log}")
            if args.iam:
                print("IAM enforced: each function runs under a role of its generated policy")
            if api_url:
                print(f"retrieval API up at {api_url}/ (API Gateway's IAM authorization is not enforced "
                      "locally)")
            key, secret = ("testing", "testing") if not roles else (roles[0].admin.access_key,
                                                                    roles[0].admin.secret_key)
            # (throwaway keys of the local AWS's own administrator user, valid only on this endpoint)
            print(f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID={key} "
                  f"AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION={local_aws.LOCAL_REGION}")
            if roles:
                print("  roles (aws sts assume-role): "
                      + ", ".join(f"arn:aws:iam::123456789012:role/{args.stack}-logarchive-{who}"
                                  for who in ("host", "reader")) + ", one per function")
            for line in local_stack.LocalStage(args.stack).describe(keys=keys_text is not None):
                print(f"  {line}")
            print("Ctrl-C to stop.", flush=True)
            # With a timeout: the kernel may hand SIGTERM to another thread (the pump, the API
            # server), and a main thread blocked in an untimed wait would never run the handler.
            while not stopping.wait(timeout=0.5):
                pass
            print("stopping", flush=True)
    except local_aws.PortTaken as exc:
        raise LogarchiveError(str(exc)) from None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # chalice's server lost a race for --api-port after the check above
        raise LogarchiveError(f"--api-port {args.api_port} on 127.0.0.1 is taken ({exc.strerror})") from None
    except RuntimeError as exc:  # the moto child did not start
        raise LogarchiveError(str(exc)) from None
    return 0


def _new_root(arg: str) -> Path:
    """``--root`` of a fake host: a folder that does not exist yet (it is written whole)."""
    root = Path(arg)
    if root.exists():
        raise UsageError(f"--root {arg}: already exists")
    return root


def run_fake_docker(args: argparse.Namespace) -> int:
    from ..devkit.fakedocker import sample_host

    fake = sample_host(_new_root(args.root))
    for c in fake.containers:
        print(f"{c.id[:12]}  {c.name:12s} {len(c.written):7d} bytes  exited")
    return 0


def run_fake_kubelet(args: argparse.Namespace) -> int:
    from ..devkit.fakekubelet import sample_node

    root = _new_root(args.root)
    node = sample_node(root)
    for pod in node.all:
        gone = not pod.dir.exists()
        for c in pod.containers.values():
            state = "deleted" if gone else ("running" if c.running else "exited")
            print(f"{pod.namespace}/{pod.name}/{c.name}  restarts {c.restart}  "
                  f"{sum(len(b) for b in c.written.values()):7d} bytes  {state}")
    print(f"ship it with: logarchive ship --pods-root {root / 'pods'} …")
    return 0
