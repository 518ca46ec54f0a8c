"""StateBackend: where every gantry stack keeps its Pulumi state, and the key its secrets are encrypted with.

An S3 bucket (versioned, so a bad write is recoverable; SSE-KMS with a customer-managed key and bucket
keys; all four public-access blocks; bucket-owner-enforced ownership; a policy refusing plain HTTP) and one
customer-managed KMS key per environment that is that environment's stacks' secrets provider
(`awskms://alias/<prefix>-secrets-<env>`). Separate keys, because they answer different questions: reading
state needs the state key only through S3, decrypting a stack secret needs that environment's secrets key,
so a role of one environment (dev's deploy, a pull request's preview) can never read another's (prod's)
secrets. All rotate yearly. The first, shared secrets key (`alias/<prefix>-secrets`) stays, protected,
only so stacks initialised with it can be re-keyed (`pulumi stack change-secrets-provider`, run by an
administrator); no delivery role may use it. Security stance: the bucket and the keys are protected
(`pulumi destroy` refuses them) and the keys have a 30-day deletion window: losing one loses every stack
or every secret of an environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from bootstrap import documents

# Noncurrent state versions are kept this long: enough to roll back a damaged checkpoint.
NONCURRENT_VERSION_DAYS = 90


# Marks every key of the bootstrap: the deploy roles are denied administering a key with this tag, may not
# change the tag (documents.ProgramKeyTagIsFixed), and may manage only keys tagged `program`.
BOOTSTRAP_KEY_TAGS = {documents.PROGRAM_KEY_TAG: documents.BOOTSTRAP_KEY_TAG_VALUE}


def protected(parent: pulumi.Resource) -> pulumi.ResourceOptions:
    """Losing the bucket or a key loses every stack's state or secrets: Pulumi refuses to delete them."""
    return pulumi.ResourceOptions(parent=parent, protect=True)


@dataclass(frozen=True, kw_only=True)
class StateBackendArgs:
    bucket_name: str
    """`<stateBucketPrefix>-<account>-<region>`, validated by bootstrap.settings."""
    alias_prefix: str
    """The KMS aliases are `alias/<alias_prefix>-state`, `alias/<alias_prefix>-secrets-<env>` and the shared
    key's `alias/<alias_prefix>-secrets`."""
    environments: Sequence[str]
    """One secrets key per environment (bootstrap.settings: the GitHub environments, one stack each)."""


def secrets_alias_name(alias_prefix: str, environment: str) -> str:
    """`alias/<prefix>-secrets-<env>`: inside documents.bootstrap_alias_patterns, which no deploy may touch."""
    return f"alias/{alias_prefix}-secrets-{environment.lower()}"


class StateBackend(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    state_key: aws.kms.Key
    shared_secrets_key: aws.kms.Key
    """The first layout's one key for every environment: kept for re-keying only, used by no role."""
    secrets_keys: dict[str, aws.kms.Key]
    secrets_aliases: dict[str, aws.kms.Alias]

    def __init__(self, name: str, args: StateBackendArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry-bootstrap:state:StateBackend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.state_key = aws.kms.Key(
            f"{name}-state-key",
            description="gantry: encrypts Pulumi state objects in the state bucket",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=BOOTSTRAP_KEY_TAGS,
            opts=protected(self),
        )
        aws.kms.Alias(
            f"{name}-state-alias", name=f"alias/{args.alias_prefix}-state", target_key_id=self.state_key.id, opts=child
        )
        # Logical names unchanged from the one-key layout: the key and its alias are not replaced.
        self.shared_secrets_key = aws.kms.Key(
            f"{name}-secrets-key",
            description="gantry: Pulumi secrets provider for every gantry stack",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=BOOTSTRAP_KEY_TAGS,
            opts=protected(self),
        )
        aws.kms.Alias(
            f"{name}-secrets-alias",
            name=f"alias/{args.alias_prefix}-secrets",
            target_key_id=self.shared_secrets_key.id,
            opts=child,
        )
        self.secrets_keys, self.secrets_aliases = {}, {}
        for env in args.environments:
            key = aws.kms.Key(
                f"{name}-secrets-key-{env.lower()}",
                description=f"gantry: Pulumi secrets provider for the {env} stack",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                tags=BOOTSTRAP_KEY_TAGS,
                opts=protected(self),
            )
            self.secrets_keys[env] = key
            self.secrets_aliases[env] = aws.kms.Alias(
                f"{name}-secrets-alias-{env.lower()}",
                name=secrets_alias_name(args.alias_prefix, env),
                target_key_id=key.id,
                opts=child,
            )

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket=args.bucket_name, force_destroy=False, opts=protected(self)
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.state_key.arn,
                    },
                    # One data key per bucket instead of one KMS call per object.
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-old-state-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(documents.state_bucket_policy(bucket_arn=arn))),
            # S3 refuses concurrent policy and public-access-block changes (OperationAborted).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        self.register_outputs(
            {
                "bucket": self.bucket.bucket,
                "secretsKeyAliases": {env: alias.name for env, alias in self.secrets_aliases.items()},
            }
        )
