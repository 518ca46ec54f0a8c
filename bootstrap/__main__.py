"""gantry-bootstrap: run once per AWS account by an administrator, before any gantry stack exists.

Creates the state backend (bucket + state key + one secrets-provider key per environment) and the delivery
identity (GitHub OIDC provider, one preview and one deploy role per environment, the workload permissions
boundary). Config is validated in full before any resource is registered. Its outputs are what the
repository's workflows and stacks are configured with: the backend URL, each environment's secrets
provider, the role ARNs, and the boundary and path gantry's own roles must carry.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

# The CLI runs this file from bootstrap/ with ../.venv (Pulumi.yaml), where the repository is installed
# (`pip install -e .`): its modules are imported as the `bootstrap` package, with no path fix.
from bootstrap import documents
from bootstrap.identity import DeliveryIdentity, DeliveryIdentityArgs
from bootstrap.settings import KEYS, NAMESPACE, parse
from bootstrap.state import StateBackend, StateBackendArgs

region = aws.config.region
if not region:
    raise pulumi.RunError("aws:region is not set: `pulumi config set aws:region <region>`")
identity = aws.get_caller_identity()
partition = aws.get_partition().partition
config = pulumi.Config(NAMESPACE)
settings = parse(
    {f"{NAMESPACE}:{key}": value for key in KEYS if (value := config.get(key)) is not None},
    account_id=identity.account_id,
    region=region,
)
scope = documents.Scope(
    account_id=identity.account_id, region=region, partition=partition, prefix=settings.resource_prefix
)

backend = StateBackend(
    "gantry-state",
    StateBackendArgs(
        bucket_name=settings.state_bucket_name(identity.account_id, region),
        alias_prefix=settings.resource_prefix,
        environments=settings.environments,
    ),
)
delivery = DeliveryIdentity(
    "gantry-delivery",
    DeliveryIdentityArgs(
        scope=scope,
        repository=settings.repository,
        environments=settings.environments,
        pull_request_environment=settings.pull_request_environment,
        state_bucket_arn=backend.bucket.arn,
        state_key_arn=backend.state_key.arn,
        secrets_key_arns={env: key.arn for env, key in backend.secrets_keys.items()},
        bootstrap_key_arns=[
            backend.state_key.arn,
            backend.shared_secrets_key.arn,
            *(key.arn for key in backend.secrets_keys.values()),
        ],
        repository_ids=settings.repository_ids,
        hosted_zone_ids=settings.hosted_zone_ids,
    ),
)

pulumi.export("backendUrl", backend.bucket.bucket.apply(lambda b: f"s3://{b}"))
# One secrets provider per environment: `pulumi stack init <env> --secrets-provider <secretsProviders.env>`.
pulumi.export(
    "secretsProviders",
    {
        env: alias.name.apply(lambda a: f"awskms://{a}?region={region}")
        for env, alias in backend.secrets_aliases.items()
    },
)
pulumi.export("previewRoleArn", delivery.preview_role.arn)
pulumi.export("previewRoleArns", {env: role.arn for env, role in delivery.preview_roles.items()})
pulumi.export("deployRoleArns", {env: role.arn for env, role in delivery.deploy_roles.items()})
pulumi.export("permissionsBoundaryArn", delivery.boundary.arn)
pulumi.export("workloadRolePath", documents.WORKLOAD_ROLE_PATH)
