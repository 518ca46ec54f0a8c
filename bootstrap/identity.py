"""DeliveryIdentity: the GitHub OIDC provider, the preview role, one deploy role per environment, and the
permissions boundary every role gantry creates must carry.

Trust is exact: the preview role trusts this repository's pull-request runs, each deploy role this
repository's jobs in that one GitHub environment (whose protection rules, such as required reviewers,
GitHub enforces before the job gets a token). Security stance: see `bootstrap.documents`; the roles live
under `/gantry-delivery/`, outside the `/gantry/` path the deploy roles may manage, and sessions last one
hour (a deploy that needs longer refreshes through the action).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from bootstrap import documents

SESSION_SECONDS = 3600
DEPLOY_SESSION_SECONDS = 7200
PREVIEW_SESSION_SECONDS = 3600


def _area_json(area: str, by_area: dict[str, dict[str, Any]]) -> str:
    return json.dumps(by_area[area])


@dataclass(frozen=True, kw_only=True)
class DeliveryIdentityArgs:
    scope: documents.Scope
    repository: str
    """owner/repo: the only repository whose tokens the roles accept."""
    environments: Sequence[str]
    """One deploy role per GitHub environment."""
    state_bucket_arn: pulumi.Input[str]
    state_key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]
    hosted_zone_ids: Sequence[str] = ()
    """Zones the deploy roles may change records in; default none."""


class DeliveryIdentity(pulumi.ComponentResource):
    provider: aws.iam.OpenIdConnectProvider
    boundary: aws.iam.Policy
    preview_role: aws.iam.Role
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

        state = pulumi.Output.all(
            bucket=args.state_bucket_arn, state_key=args.state_key_arn, secrets_key=args.secrets_key_arn
        )
        self.preview_role = self._role(
            f"{name}-preview",
            documents.pull_request_subject(),
            args.repository,
            "pull requests: read-only preview",
        )
        # Inline: the preview policy is under half of the 10,240 characters IAM allows a role's inline policies.
        aws.iam.RolePolicy(
            f"{name}-preview-policy",
            role=self.preview_role.id,
            policy=state.apply(
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
        # The deploy permissions do not fit one policy (IAM caps a managed policy at 6,144 characters and a
        # role's inline policies at 10,240 together; see documents.DEPLOY_POLICY_AREAS): one managed policy
        # per area, the same for every environment, each attached to every deploy role.
        deploy_documents = state.apply(
            lambda s: documents.deploy_role_policies(
                scope,
                state_bucket_arn=s["bucket"],
                state_key_arn=s["state_key"],
                secrets_key_arn=s["secrets_key"],
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
                role_name, documents.environment_subject(env), args.repository, f"GitHub environment {env}: pulumi up"
            )
            for area, policy in self.deploy_policies.items():
                aws.iam.RolePolicyAttachment(f"{role_name}-{area}", role=role.name, policy_arn=policy.arn, opts=child)
            self.deploy_roles[env] = role
        self.register_outputs(
            {
                "previewRoleArn": self.preview_role.arn,
                "deployRoleArns": {env: role.arn for env, role in self.deploy_roles.items()},
                "permissionsBoundaryArn": self.boundary.arn,
            }
        )

    def _role(self, name: str, subject: str, repository: str, description: str) -> aws.iam.Role:
        return aws.iam.Role(
            name,
            path=documents.DELIVERY_ROLE_PATH,
            description=f"gantry delivery ({repository}) - {description}",
            max_session_duration=SESSION_SECONDS,
            assume_role_policy=self.provider.arn.apply(
                lambda arn: json.dumps(
                    documents.github_trust_policy(provider_arn=arn, repository=repository, subject=subject)
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
