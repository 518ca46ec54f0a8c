"""Pages on-call through a stack's alert topic when a post-deploy check fails.

The deploy workflow's prod eval runs after CodeDeploy has shifted all traffic (the canary was already
checked before any user saw it, by the eval hook on the test listener); it proves the public path
(CloudFront, WAF, ALB) serves the evaluated model. When it fails, users are already on the release, so
a red run is not enough: `python scripts/ci/page.py --stack prod --subject S --message M` publishes to
the stack's `gantry-<stack>-page` topic (components/notifications.py: one topic per severity, named
`<prefix>-<severity>`; `--severity ticket` for the other one), whose subscribers are on-call. The
topic's ARN is built from that contract and the caller's account (STS GetCallerIdentity) rather than
read from a stack output, because the stack exports no topic and a failed check must page even when
reading outputs is what broke. Exit 0 published, 1 not published (the message says why). boto3 from
the program's lock, the job's deploy-role session.
Security stance: needs sns:Publish on that one topic (and kms:GenerateDataKey/Decrypt on its key); the
message names the run and the check, never a key or a response body.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

SEVERITIES = ("page", "ticket")
# SNS limits an email subject to 100 printable ASCII characters (Publish API, `Subject`).
SUBJECT_MAX = 100


def topic_arn(caller_arn: str, region: str, stack: str, severity: str) -> str:
    """The stack's alert topic for `severity`, in the caller's partition and account."""
    parts = caller_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"{caller_arn!r} is not an ARN")
    partition, account = parts[1], parts[4]
    return f"arn:{partition}:sns:{region}:{account}:gantry-{stack}-{severity}"


def subject_line(text: str) -> str:
    printable = "".join(c if 32 <= ord(c) < 127 else " " for c in text)
    return printable[:SUBJECT_MAX]


def main(argv: Sequence[str] | None = None, sts: Any = None, sns: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci/page.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--severity", choices=SEVERITIES, default="page")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--region", default=None, help="default: the session's region (AWS_REGION)")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    region = args.region or session.region_name
    if not region:
        print("page: no region: set AWS_REGION or --region", file=sys.stderr)
        return 1
    try:
        caller = (sts or session.client("sts")).get_caller_identity()["Arn"]
        arn = topic_arn(caller, region, args.stack, args.severity)
        (sns or session.client("sns")).publish(TopicArn=arn, Subject=subject_line(args.subject), Message=args.message)
    except (ClientError, BotoCoreError, ValueError) as error:
        print(f"page: could not publish to gantry-{args.stack}-{args.severity}: {error}", file=sys.stderr)
        return 1
    print(f"page: published to {arn}: {subject_line(args.subject)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
