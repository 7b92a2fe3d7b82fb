"""``logarchive local up``: the embedded local AWS for demos and tests."""

from __future__ import annotations

import argparse
import time

from ..devkit import local_aws, local_stack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("local", help="run the embedded local AWS (moto server on 127.0.0.1)")
    lsub = p.add_subparsers(dest="local_command", required=True)
    up = lsub.add_parser("up", help="start it, create the stack's buckets, stay up until Ctrl-C")
    up.add_argument("--port", type=int, default=5000)
    up.add_argument("--stack", default="demo")
    up.set_defaults(func=run_up)


def run_up(args: argparse.Namespace) -> int:
    buckets = local_aws.StackBuckets.for_stack(args.stack)
    with local_aws.moto_server(args.port) as endpoint:
        local_aws.create_buckets(endpoint, buckets.all())
        local_aws.use_endpoint(endpoint)
        token_secret = local_stack.create_token_secret(f"logarchive-{args.stack}-api-token")
        print(f"local AWS up at {endpoint}")
        print(f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing "
              f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={local_aws.LOCAL_REGION}")
        print(f"  buckets (versioned): {', '.join(buckets.all())}")
        print(f"  export LOGARCHIVE_API_TOKEN_SECRET={token_secret}  # signs the API's page tokens")
        print("Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0
