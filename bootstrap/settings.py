"""The bootstrap project's config, validated in full before any resource is registered.

Keys (namespace `gantry-bootstrap`, set with `pulumi config set`): githubOwner, githubRepo, environments,
pullRequestEnvironment, oidcSubject, githubOwnerId, githubRepositoryId, stateBucketPrefix, resourcePrefix,
hostedZoneIds. Security stance: every value ends up inside an IAM trust
condition or an ARN pattern, so anything that would widen one is refused: wildcard or separator characters
in the owner, repository or an environment name (`*`, `?`, `:` or `/` would turn an exact `sub` into a
pattern), an empty environment list, a resource prefix shorter than 3 characters (a one-letter prefix
scopes nothing). Each error names the key, the value and what is allowed, and all of them are reported
at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

NAMESPACE = "gantry-bootstrap"

# GitHub: owners are 1-39 alphanumerics or single hyphens, not at either end; repositories are up to 100
# of [A-Za-z0-9._-]. Environment names are checked against the characters that are safe in `sub`.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PREFIX = re.compile(r"[a-z][a-z0-9-]{2,29}")
_BUCKET_PREFIX = re.compile(r"[a-z][a-z0-9-]{2,48}")
_ZONE = re.compile(r"Z[0-9A-Z]{1,31}")
_GITHUB_ID = re.compile(r"[1-9][0-9]{0,19}")
# How the trust policies name the repository in `sub`: GitHub's default template (by name), or the
# repository's customised template of owner id, repository id and context (documents.REPOSITORY_ID_CLAIM_KEYS).
SUBJECT_FORMS = ("repository-name", "repository-id")
# Each zone adds its ARN to the deploy role's `edge` managed policy, which IAM caps at 6,144 characters;
# 20 of the longest ids with the longest prefix, partition and region still fit (tests/test_quotas.py).
MAX_HOSTED_ZONES = 20
# Each environment adds its secrets key's ARN to the deploy roles' NeverTouchBootstrapKeys deny, in the
# `operations-and-jobs` managed policy (6,144 characters): 10 environments with the longest prefix,
# partition and region still fit (tests/test_quotas.py), and each gets two roles of IAM's 1,000 per account.
MAX_ENVIRONMENTS = 10
# S3 bucket names are at most 63 characters; the state bucket is <prefix>-<account>-<region>.
_BUCKET_MAX = 63


class BootstrapConfigError(ValueError):
    """The bootstrap config is invalid; the message lists every problem and what is allowed."""


@dataclass(frozen=True, kw_only=True)
class BootstrapSettings:
    github_owner: str
    """The GitHub user or organisation owning the repository (required)."""
    github_repo: str
    """The repository whose workflows may assume the roles (required)."""
    environments: tuple[str, ...] = ("dev", "prod")
    """GitHub environments, one deploy role each; default dev and prod, gantry's committed stacks."""
    pull_request_environment: str = "dev"
    """The environment whose preview role trusts every same-repository pull request (`sub` ...:pull_request);
    default dev, else the first environment. Every other environment's preview role trusts only jobs in the
    GitHub environment `<env>-preview`, whose required reviewers gate a pull request's preview of it."""
    oidc_subject: str = "repository-name"
    """`repository-name` (default, GitHub's default `sub`: repo:OWNER/REPO:...) or `repository-id`
    (repository_owner_id:ID:repository_id:ID:..., immune to a renamed or re-created repository; needs
    githubOwnerId, githubRepositoryId and the repository's OIDC subject template set, see bootstrap/README.md)."""
    github_owner_id: str | None = None
    """The owner's numeric id (`gh api users/OWNER --jq .id`); required with oidcSubject repository-id."""
    github_repository_id: str | None = None
    """The repository's numeric id (`gh api repos/OWNER/REPO --jq .id`); required with oidcSubject repository-id."""
    state_bucket_prefix: str = "gantry-state"
    """The state bucket is `<prefix>-<account>-<region>`: globally unique, and obvious in a bucket list."""
    resource_prefix: str = "gantry"
    """What gantry's resources are named after (Pulumi auto-names children of `gantry-*` logical names):
    the deploy roles' permissions are scoped to names starting with `<prefix>-`."""
    hosted_zone_ids: tuple[str, ...] = ()
    """Route 53 zones the deploy roles may write records in (gantry:domain); default none (no domain)."""

    @property
    def repository(self) -> str:
        return f"{self.github_owner}/{self.github_repo}"

    @property
    def repository_ids(self) -> tuple[str, str] | None:
        """(owner id, repository id) when the trust names the repository by id, else None."""
        if self.oidc_subject != "repository-id" or not self.github_owner_id or not self.github_repository_id:
            return None
        return (self.github_owner_id, self.github_repository_id)

    def state_bucket_name(self, account_id: str, region: str) -> str:
        return f"{self.state_bucket_prefix}-{account_id}-{region}"


def _list(key: str, raw: str | None, errors: list[str]) -> list[str] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        errors.append(f"{NAMESPACE}:{key} must be a JSON list of strings, got {raw!r}")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{NAMESPACE}:{key} must be a list of strings, got {value!r}")
        return None
    return value


def parse(values: Mapping[str, str], *, account_id: str, region: str) -> BootstrapSettings:
    """Settings from the CLI's config values (`<namespace>:<key>` -> string, lists JSON-encoded)."""
    errors: list[str] = []

    def get(key: str) -> str | None:
        return values.get(f"{NAMESPACE}:{key}")

    owner, repo = get("githubOwner"), get("githubRepo")
    if not owner or not _OWNER.fullmatch(owner):
        errors.append(
            f"{NAMESPACE}:githubOwner={owner!r} is invalid; allowed: a GitHub user or organisation name "
            "(1-39 letters, digits or single inner hyphens)"
        )
    if not repo or not _REPO.fullmatch(repo) or repo in (".", ".."):
        errors.append(f"{NAMESPACE}:githubRepo={repo!r} is invalid; allowed: 1-100 of A-Z a-z 0-9 . _ -")

    environments = _list("environments", get("environments"), errors)
    if environments is not None:
        if not environments:
            errors.append(f"{NAMESPACE}:environments is empty; allowed: at least one GitHub environment name")
        for env in environments:
            if not _ENVIRONMENT.fullmatch(env):
                errors.append(
                    f"{NAMESPACE}:environments entry {env!r} is invalid; allowed: 1-64 of A-Z a-z 0-9 . _ - "
                    "starting with a letter or digit (no * ? : / that would make the sub condition a pattern)"
                )
        if len(environments) > MAX_ENVIRONMENTS:
            errors.append(
                f"{NAMESPACE}:environments lists {len(environments)} environments; allowed: at most "
                f"{MAX_ENVIRONMENTS} (each adds its secrets key to a deploy policy IAM caps at 6,144 characters)"
            )
        duplicates = sorted({e.lower() for e in environments if [x.lower() for x in environments].count(e.lower()) > 1})
        if duplicates:
            errors.append(f"{NAMESPACE}:environments repeats {duplicates} (GitHub environment names ignore case)")

    envs = environments if environments is not None else list(BootstrapSettings.environments)
    default_pr = "dev" if "dev" in envs else (envs[0] if envs else BootstrapSettings.pull_request_environment)
    pull_request_environment = get("pullRequestEnvironment") or default_pr
    if envs and pull_request_environment not in envs:
        errors.append(
            f"{NAMESPACE}:pullRequestEnvironment={pull_request_environment!r} is invalid; allowed: one of the "
            f"environments {envs} (its preview role is the one every pull request may assume)"
        )
    oidc_subject = get("oidcSubject") or BootstrapSettings.oidc_subject
    if oidc_subject not in SUBJECT_FORMS:
        errors.append(f"{NAMESPACE}:oidcSubject={oidc_subject!r} is invalid; allowed: {', '.join(SUBJECT_FORMS)}")
    ids = {key: get(key) for key in ("githubOwnerId", "githubRepositoryId")}
    for key, value in ids.items():
        if value is not None and not _GITHUB_ID.fullmatch(value):
            errors.append(f"{NAMESPACE}:{key}={value!r} is invalid; allowed: GitHub's numeric id (digits only)")
        if oidc_subject == "repository-id" and value is None:
            errors.append(
                f"{NAMESPACE}:{key} is required with oidcSubject repository-id; allowed: GitHub's numeric id "
                "(`gh api repos/OWNER/REPO --jq .owner.id,.id`)"
            )

    prefix = get("stateBucketPrefix") or BootstrapSettings.state_bucket_prefix
    bucket = f"{prefix}-{account_id}-{region}"
    if not _BUCKET_PREFIX.fullmatch(prefix) or prefix.endswith("-") or "--" in prefix or len(bucket) > _BUCKET_MAX:
        errors.append(
            f"{NAMESPACE}:stateBucketPrefix={prefix!r} is invalid; allowed: 3-49 of a-z 0-9 - starting with a "
            f"letter, no trailing or double hyphen, and <prefix>-{account_id}-{region} at most {_BUCKET_MAX} "
            "characters (S3 bucket naming rules)"
        )

    resource_prefix = get("resourcePrefix") or BootstrapSettings.resource_prefix
    if not _PREFIX.fullmatch(resource_prefix) or resource_prefix.endswith("-"):
        errors.append(
            f"{NAMESPACE}:resourcePrefix={resource_prefix!r} is invalid; allowed: 3-30 of a-z 0-9 - starting with "
            "a letter (what gantry's logical names start with)"
        )

    zones = _list("hostedZoneIds", get("hostedZoneIds"), errors) or []
    for zone in zones:
        if not _ZONE.fullmatch(zone):
            errors.append(f"{NAMESPACE}:hostedZoneIds entry {zone!r} is invalid; allowed: a Route 53 zone id (Z...)")
    if len(zones) > MAX_HOSTED_ZONES:
        errors.append(
            f"{NAMESPACE}:hostedZoneIds lists {len(zones)} zones; allowed: at most {MAX_HOSTED_ZONES} (each one "
            "grows a deploy policy IAM caps at 6,144 characters)"
        )

    if errors:
        raise BootstrapConfigError("invalid bootstrap config:\n  - " + "\n  - ".join(errors))
    assert owner is not None and repo is not None
    return BootstrapSettings(
        github_owner=owner,
        github_repo=repo,
        environments=tuple(envs),
        pull_request_environment=pull_request_environment,
        oidc_subject=oidc_subject,
        github_owner_id=ids["githubOwnerId"],
        github_repository_id=ids["githubRepositoryId"],
        state_bucket_prefix=prefix,
        resource_prefix=resource_prefix,
        hosted_zone_ids=tuple(zones),
    )
