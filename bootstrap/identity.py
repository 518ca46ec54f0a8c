"""DeliveryIdentity: the GitHub OIDC provider, the preview role, one deploy role per environment, and the
permissions boundary every role gantry creates must carry.

Trust is exact: the pull-request environment's preview role (dev by default) trusts this repository's
pull-request runs, every other environment's preview role only jobs in the GitHub environment
`<env>-preview`, and each deploy role this repository's jobs in that one GitHub environment (whose
protection rules, such as required reviewers, GitHub enforces before the job gets a token). Each role
decrypts only its own environment's stack secrets. Security stance: see `bootstrap.documents`; the roles
live under `/gantry-delivery/`, outside the `/gantry/` path the deploy roles may manage. A deploy session
lasts as long as the longest deploy job (prod's 120 minutes; the 90-minute rollback drill), so no job
outlives its credentials and leaves its stack locked; a preview session the one hour a preview job gets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from bootstrap import documents

# A role's MaxSessionDuration (IAM allows 3,600 to 43,200 seconds, "IAM and AWS STS quotas") and what the
# workflows request (configure-aws-credentials' role-duration-seconds may not exceed it). The deploy jobs
# time out at 60 (dev), 120 (prod) and 90 (rollback drill) minutes, the preview jobs at 60.
DEPLOY_SESSION_SECONDS = 7200
PREVIEW_SESSION_SECONDS = 3600


def _area_json(area: str, by_area: dict[str, dict[str, Any]]) -> str:
    return json.dumps(by_area[area])


def _environment_json(scope: documents.Scope, environment: str, arns: list[str]) -> str:
    secrets_key_arn, state_bucket_arn = arns
    return json.dumps(
        documents.deploy_environment_policy(
            scope, environment=environment, secrets_key_arn=secrets_key_arn, state_bucket_arn=state_bucket_arn
        )
    )


@dataclass(frozen=True, kw_only=True)
class DeliveryIdentityArgs:
    scope: documents.Scope
    repository: str
    """owner/repo: the only repository whose tokens the roles accept."""
    environments: Sequence[str]
    """One deploy role and one preview role per GitHub environment."""
    pull_request_environment: str
    """The environment whose preview role trusts every pull request; the others need `<env>-preview`."""
    state_bucket_arn: pulumi.Input[str]
    state_key_arn: pulumi.Input[str]
    secrets_key_arns: Mapping[str, pulumi.Input[str]]
    """Environment -> its stacks' secrets key: the only one that environment's roles may use."""
    bootstrap_key_arns: Sequence[pulumi.Input[str]]
    """Every key of the bootstrap (state, secrets, the shared one): no deploy may administer them."""
    repository_ids: tuple[str, str] | None = None
    """(owner id, repository id): trust the repository-id `sub` form instead of the name; default None."""
    hosted_zone_ids: Sequence[str] = ()
    """Zones the deploy roles may change records in; default none."""


class DeliveryIdentity(pulumi.ComponentResource):
    provider: aws.iam.OpenIdConnectProvider
    boundary: aws.iam.Policy
    preview_role: aws.iam.Role
    """The pull-request environment's preview role."""
    preview_roles: dict[str, aws.iam.Role]
    deploy_policies: dict[str, aws.iam.Policy]
    deploy_roles: dict[str, aws.iam.Role]

    def __init__(self, name: str, args: DeliveryIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry-bootstrap:identity:DeliveryIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        scope = args.scope

        # No thumbprints: IAM verifies GitHub's JWKS endpoint against its library of trusted root CAs and
        # uses configured thumbprints only for certificates outside it ("AWS secures communication with OIDC
        # identity providers using our library of trusted root certificate authorities", IAM API
        # CreateOpenIDConnectProvider, https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html);
        # the parameter is optional there ("If it is not included, IAM will retrieve and use the top
        # intermediate CA thumbprint"), so no pinned value can go stale.
        self.provider = aws.iam.OpenIdConnectProvider(
            f"{name}-github",
            url=f"https://{documents.GITHUB_OIDC_HOST}",
            client_id_lists=[documents.GITHUB_AUDIENCE],
            opts=child,
        )
        self.boundary = aws.iam.Policy(
            f"{name}-boundary",
            name=documents.BOUNDARY_POLICY_NAME,
            path=documents.WORKLOAD_ROLE_PATH,
            description="gantry: permissions boundary of every role a gantry stack creates",
            policy=json.dumps(documents.workload_boundary_policy(scope)),
            opts=child,
        )

        self.preview_roles = {}
        for env in args.environments:
            # The pull-request environment keeps the first layout's logical names (nothing replaced).
            pr = env == args.pull_request_environment
            role_name = f"{name}-preview" if pr else f"{name}-preview-{env.lower()}"
            role = self._role(
                role_name,
                documents.pull_request_subject() if pr else documents.environment_subject(f"{env}-preview"),
                args,
                f"{env} pull requests: read-only preview",
                PREVIEW_SESSION_SECONDS,
            )
            # Inline: the preview policy is under half of the 10,240 characters IAM allows a role's inline policies.
            aws.iam.RolePolicy(
                f"{role_name}-policy",
                role=role.id,
                policy=pulumi.Output.all(
                    bucket=args.state_bucket_arn, state_key=args.state_key_arn, secrets_key=args.secrets_key_arns[env]
                ).apply(
                    lambda s: json.dumps(
                        documents.preview_role_policy(
                            scope,
                            state_bucket_arn=s["bucket"],
                            state_key_arn=s["state_key"],
                            secrets_key_arn=s["secrets_key"],
                        )
                    )
                ),
                opts=child,
            )
            self.preview_roles[env] = role
        self.preview_role = self.preview_roles[args.pull_request_environment]
        # The deploy permissions do not fit one policy (IAM caps a managed policy at 6,144 characters and a
        # role's inline policies at 10,240 together; see documents.DEPLOY_POLICY_AREAS): one managed policy
        # per area, the same for every environment, each attached to every deploy role; what differs per
        # environment (its secrets key, its topics) is a small inline policy on its role.
        deploy_documents = pulumi.Output.all(
            bucket=args.state_bucket_arn, state_key=args.state_key_arn, keys=pulumi.Output.all(*args.bootstrap_key_arns)
        ).apply(
            lambda s: documents.deploy_role_policies(
                scope,
                state_bucket_arn=s["bucket"],
                state_key_arn=s["state_key"],
                bootstrap_key_arns=s["keys"],
                hosted_zone_ids=args.hosted_zone_ids,
            )
        )
        self.deploy_policies = {
            area: aws.iam.Policy(
                f"{name}-deploy-{area}",
                name=documents.deploy_policy_name(scope, area),
                path=documents.WORKLOAD_ROLE_PATH,
                description=f"gantry delivery: pulumi up - {summary}",
                policy=deploy_documents.apply(functools.partial(_area_json, area)),
                opts=child,
            )
            for area, summary in documents.DEPLOY_POLICY_AREAS.items()
        }
        self.deploy_roles = {}
        for env in args.environments:
            role_name = f"{name}-deploy-{env.lower()}"
            role = self._role(
                role_name,
                documents.environment_subject(env),
                args,
                f"GitHub environment {env}: pulumi up",
                DEPLOY_SESSION_SECONDS,
            )
            for area, policy in self.deploy_policies.items():
                aws.iam.RolePolicyAttachment(f"{role_name}-{area}", role=role.name, policy_arn=policy.arn, opts=child)
            aws.iam.RolePolicy(
                f"{role_name}-environment",
                role=role.id,
                policy=pulumi.Output.all(args.secrets_key_arns[env], args.state_bucket_arn).apply(
                    functools.partial(_environment_json, scope, env)
                ),
                opts=child,
            )
            self.deploy_roles[env] = role
        self.register_outputs(
            {
                "previewRoleArns": {env: role.arn for env, role in self.preview_roles.items()},
                "deployRoleArns": {env: role.arn for env, role in self.deploy_roles.items()},
                "permissionsBoundaryArn": self.boundary.arn,
            }
        )

    def _role(
        self, name: str, subject: str, args: DeliveryIdentityArgs, description: str, max_session_seconds: int
    ) -> aws.iam.Role:
        repository, ids = args.repository, args.repository_ids
        return aws.iam.Role(
            name,
            path=documents.DELIVERY_ROLE_PATH,
            description=f"gantry delivery ({repository}) - {description}",
            max_session_duration=max_session_seconds,
            assume_role_policy=self.provider.arn.apply(
                lambda arn: json.dumps(
                    documents.github_trust_policy(
                        provider_arn=arn, repository=repository, subject=subject, repository_ids=ids
                    )
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
