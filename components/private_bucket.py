"""The one recipe for the S3 buckets the stack program creates: ALB access logs, CloudFront access logs
and the Batch API's files.

Each is private whatever its objects say: the public access block refuses public ACLs and policies,
ownership is BucketOwnerEnforced (ACLs off, so no grant can open an object), the caller's bucket policy
(a pure document from components.policies: TLS-only, one service principal to write) is applied only
after the public access block, and every lifecycle ends incomplete multipart uploads. Encryption is
SSE-S3 for all three: ALB log delivery supports only SSE-S3, CloudFront's vended-log delivery to an
SSE-KMS bucket would need a key policy for the delivery service, and the batch files are read by the
worker's own role, which the bucket policy already confines. Children keep the names `<name>-<part>`
they had when each component built its bucket itself, so moving here replaced nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws


def private_bucket(
    name: str,
    *,
    force_destroy: bool,
    lifecycle_rules: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgsDict],
    policy: Callable[[str], dict[str, Any]],
    opts: pulumi.ResourceOptions,
) -> tuple[aws.s3.Bucket, aws.s3.BucketPolicy]:
    """A private, SSE-S3 bucket `name` with `lifecycle_rules` and the policy `policy(bucket_arn)`.

    `opts` is the children's options (parent, and a provider for another region). Every lifecycle rule
    must abort incomplete multipart uploads: uploads that never complete are billed and never expire."""
    for rule in lifecycle_rules:
        if "abort_incomplete_multipart_upload" not in rule:
            raise ValueError(f"{name}: lifecycle rule {rule.get('id')!r} does not abort incomplete uploads")
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=opts)
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=opts,
    )
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=list(lifecycle_rules), opts=opts)
    bucket_policy = aws.s3.BucketPolicy(
        f"{name}-policy",
        bucket=bucket.id,
        policy=bucket.arn.apply(lambda arn: json.dumps(policy(arn))),
        # S3 refuses concurrent policy and public-access-block changes (OperationAborted).
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[public_access])),
    )
    return bucket, bucket_policy
