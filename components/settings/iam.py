"""Settings of `iam`: the path and permissions boundary every IAM role gantry's program creates carries.

The defaults are the bootstrap's (`components/contract.py`, shared, not copied): its deploy roles may
create, change and pass roles only under `/gantry/`, and create them only with the boundary policy
`gantry-workload-boundary` attached, so a stack on the defaults is exactly what those roles allow.
Security stance: the boundary is on by default, so a role a deploy creates can never do more than the
boundary allows whatever its own policy says; going without one is an opt-in under a name that says so
(`withoutPermissionsBoundary`, for an account where nobody ran the bootstrap), and the program checks
with an invoke, before any resource exists, that the boundary it names is really there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator

from components.contract import BOUNDARY_POLICY_NAME, WORKLOAD_ROLE_PATH
from components.settings.base import Section, Token, Where, parse_arn

# IAM's path rules (IAM API Role.Path: "/" alone, or "/" + segments of [\w+=,.@-] each ending in "/",
# at most 512 characters; https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html).
_PATH = re.compile(r"/(?:[\w+=,.@-]+/)*")
# Managed-policy names: 1-128 of [\w+=,.@-] (IAM API CreatePolicy.PolicyName).
_POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}")


def _role_path(value: str) -> str:
    if len(value) > 512 or not _PATH.fullmatch(value):
        raise ValueError(
            "must be an IAM path: / or /segment/.../ (letters, digits and +=,.@_- between slashes, starting and "
            "ending with /, at most 512 characters)"
        )
    return value


def _boundary(value: str) -> str:
    if value.startswith("arn:"):
        parts = parse_arn(value)
        if parts is None or parts["service"] != "iam" or parts["region"] or not parts["resource"].startswith("policy/"):
            raise ValueError("is not an IAM policy ARN (arn:<partition>:iam::<account>:policy/<path><name>)")
        if not re.fullmatch(r"\d{12}|aws", parts["account"]):
            raise ValueError("names no account: an IAM policy ARN has a 12-digit account id (or aws)")
        return value
    if not _POLICY_NAME.fullmatch(value):
        raise ValueError("must be a managed policy's name (1-128 of letters, digits and +=,.@_-) or its full ARN")
    return value


class IamSettings(Section):
    role_path: Annotated[Token, AfterValidator(_role_path)] = WORKLOAD_ROLE_PATH
    """The path of every role the program creates (the bootstrap's workload path); the bootstrap's deploy roles may
    create, change and pass roles only under this path."""
    permissions_boundary: Annotated[Token, AfterValidator(_boundary)] = BOUNDARY_POLICY_NAME
    """The permissions boundary of every role (the one the bootstrap creates), as a
    managed policy name (this account's policy under rolePath) or a full policy ARN. `pulumi preview`
    refuses a boundary that does not exist."""
    without_permissions_boundary: bool = False
    """On, roles are created with no boundary at all: only for an account without the
    bootstrap, whose credentials may create unbounded roles anyway; the bootstrap's deploy roles refuse it."""

    def boundary_arn(self, *, partition: str, account_id: str) -> str | None:
        """The boundary's ARN in this account (a bare name is the policy under rolePath), or None without one."""
        if self.without_permissions_boundary:
            return None
        if self.permissions_boundary.startswith("arn:"):
            return self.permissions_boundary
        return f"arn:{partition}:iam::{account_id}:policy{self.role_path}{self.permissions_boundary}"

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.without_permissions_boundary and "permissions_boundary" in self.model_fields_set:
            yield (
                "withoutPermissionsBoundary",
                "is true while permissionsBoundary is also set: choose one (remove permissionsBoundary to go "
                "without a boundary, or withoutPermissionsBoundary to keep it)",
            )
        if self.permissions_boundary.startswith("arn:"):
            partition = (parse_arn(self.permissions_boundary) or {}).get("partition")
            if partition != where.partition:
                yield (
                    "permissionsBoundary",
                    f"is in partition {partition}, but the stack deploys to {where.partition} ({where.region})",
                )
