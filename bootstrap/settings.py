"""The bootstrap project's config, validated in full before any resource is registered.

Keys (namespace `gantry-bootstrap`, set with `pulumi config set`): githubOwner, githubRepo, environments,
pullRequestEnvironment, oidcSubject, githubOwnerId, githubRepositoryId, stateBucketPrefix, resourcePrefix,
hostedZoneIds. One model, `BootstrapSettings`, on the program's settings base (components/settings/base.py
`Section`: frozen, strict, camelCase aliases, each field declared once with its default and why), so both
projects validate in one house style. Security stance: every value ends up inside an IAM trust condition
or an ARN pattern, so anything that would widen one is refused: wildcard or separator characters in the
owner, repository or an environment name (`*`, `?`, `:` or `/` would turn an exact `sub` into a pattern),
an empty environment list, a resource prefix shorter than 3 characters (a one-letter prefix scopes
nothing). Each error names the key, the value and what is allowed, and all of them are reported at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, ValidationError, ValidationInfo, field_validator, model_validator

from components.settings.base import Section

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
SubjectForm = Literal["repository-name", "repository-id"]
SUBJECT_FORMS: tuple[str, ...] = get_args(SubjectForm)
# Each zone adds its ARN to the deploy role's `edge` managed policy, which IAM caps at 6,144 characters;
# 20 of the longest ids with the longest prefix, partition and region still fit (tests/test_quotas.py).
MAX_HOSTED_ZONES = 20
# Each environment adds its secrets key's ARN to the deploy roles' NeverTouchBootstrapKeys deny, in the
# `operations-and-jobs` managed policy (6,144 characters): 10 environments with the longest prefix,
# partition and region still fit (tests/test_quotas.py), and each gets two roles of IAM's 1,000 per account.
MAX_ENVIRONMENTS = 10
# S3 bucket names are at most 63 characters; the state bucket is <prefix>-<account>-<region>.
_BUCKET_MAX = 63

# What each key allows, said with every refusal of it (and of its absence, for the required ones).
ALLOWED = {
    "githubOwner": "a GitHub user or organisation name (1-39 letters, digits or single inner hyphens)",
    "githubRepo": "1-100 of A-Z a-z 0-9 . _ -",
    "environments": "1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit (no * ? : / that would make "
    "the sub condition a pattern)",
    "githubOwnerId": "GitHub's numeric id (digits only)",
    "githubRepositoryId": "GitHub's numeric id (digits only)",
    "resourcePrefix": "3-30 of a-z 0-9 - starting with a letter (what gantry's logical names start with)",
    "hostedZoneIds": "a Route 53 zone id (Z...)",
}


class BootstrapConfigError(ValueError):
    """The bootstrap config is invalid; the message lists every problem and what is allowed.

    As the program's ConfigError (components/settings/base.py): `problems` holds one line per problem,
    each starting with the key it is about (`gantry-bootstrap:<key>`)."""

    def __init__(self, problems: list[str] | tuple[str, ...]):
        self.problems = tuple(problems)
        super().__init__("invalid bootstrap config:\n  - " + "\n  - ".join(self.problems))


def _matching(pattern: re.Pattern[str], key: str, *, also: Any = None) -> AfterValidator:
    """A string `pattern` matches in full (and `also`, if given, accepts), else refused with what is allowed."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value) or (also is not None and not also(value)):
            raise ValueError(f"is invalid; allowed: {ALLOWED[key]}")
        return value

    return AfterValidator(check)


Owner = Annotated[str, _matching(_OWNER, "githubOwner")]
Repo = Annotated[str, _matching(_REPO, "githubRepo", also=lambda v: v not in (".", ".."))]
Environment = Annotated[str, _matching(_ENVIRONMENT, "environments")]
GithubId = Annotated[str, _matching(_GITHUB_ID, "githubOwnerId")]
ResourcePrefix = Annotated[str, _matching(_PREFIX, "resourcePrefix", also=lambda v: not v.endswith("-"))]
ZoneId = Annotated[str, _matching(_ZONE, "hostedZoneIds")]


class BootstrapSettings(Section):
    """The bootstrap's config (`gantry-bootstrap:*`), one field per key."""

    github_owner: Owner
    """The GitHub user or organisation owning the repository (required)."""
    github_repo: Repo
    """The repository whose workflows may assume the roles (required)."""
    environments: tuple[Environment, ...] = ("dev", "prod")
    """GitHub environments, one deploy role each: gantry's committed stacks."""
    pull_request_environment: str = "dev"
    """The environment whose preview role trusts every same-repository pull request (`sub` ...:pull_request);
    `dev` when listed, else the first environment. Every other environment's preview role trusts only jobs in
    the GitHub environment `<env>-preview`, whose required reviewers gate a pull request's preview of it."""
    oidc_subject: SubjectForm = "repository-name"
    """`repository-name` (GitHub's default `sub`: repo:OWNER/REPO:...) or `repository-id`
    (repository_owner_id:ID:repository_id:ID:..., immune to a renamed or re-created repository; needs
    githubOwnerId, githubRepositoryId and the repository's OIDC subject template set, see bootstrap/README.md)."""
    github_owner_id: GithubId | None = None
    """The owner's numeric id (`gh api users/OWNER --jq .id`); required with oidcSubject repository-id."""
    github_repository_id: GithubId | None = None
    """The repository's numeric id (`gh api repos/OWNER/REPO --jq .id`); required with oidcSubject repository-id."""
    state_bucket_prefix: str = "gantry-state"
    """The state bucket is `<prefix>-<account>-<region>`: globally unique, and obvious in a bucket list."""
    resource_prefix: ResourcePrefix = "gantry"
    """What gantry's resources are named after (Pulumi auto-names children of `gantry-*` logical names):
    the deploy roles' permissions are scoped to names starting with `<prefix>-`."""
    hosted_zone_ids: tuple[ZoneId, ...] = ()
    """Route 53 zones the deploy roles may write records in (gantry:domain); none without a domain."""

    @field_validator("environments")
    @classmethod
    def _environment_list(cls, environments: tuple[str, ...]) -> tuple[str, ...]:
        if not environments:
            raise ValueError("is empty; allowed: at least one GitHub environment name")
        if len(environments) > MAX_ENVIRONMENTS:
            raise ValueError(
                f"lists {len(environments)} environments; allowed: at most {MAX_ENVIRONMENTS} (each adds its "
                "secrets key to a deploy policy IAM caps at 6,144 characters)"
            )
        lowered = [e.lower() for e in environments]
        duplicates = sorted({e for e in lowered if lowered.count(e) > 1})
        if duplicates:
            raise ValueError(f"repeats {duplicates}; allowed: each name once (GitHub environment names ignore case)")
        return environments

    @field_validator("hosted_zone_ids")
    @classmethod
    def _zone_count(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        if len(zones) > MAX_HOSTED_ZONES:
            raise ValueError(
                f"lists {len(zones)} zones; allowed: at most {MAX_HOSTED_ZONES} (each one grows a deploy policy "
                "IAM caps at 6,144 characters)"
            )
        return zones

    @field_validator("pull_request_environment")
    @classmethod
    def _listed(cls, name: str, info: ValidationInfo) -> str:
        environments = info.data.get("environments")
        if environments and name not in environments:
            raise ValueError(
                f"is invalid; allowed: one of the environments {list(environments)} (its preview role is the "
                "one every pull request may assume)"
            )
        return name

    @field_validator("state_bucket_prefix")
    @classmethod
    def _bucket_name(cls, prefix: str, info: ValidationInfo) -> str:
        account, region = (info.context or {}).get("account_id", ""), (info.context or {}).get("region", "")
        bucket = f"{prefix}-{account}-{region}"
        if not _BUCKET_PREFIX.fullmatch(prefix) or prefix.endswith("-") or "--" in prefix or len(bucket) > _BUCKET_MAX:
            raise ValueError(
                "is invalid; allowed: 3-49 of a-z 0-9 - starting with a letter, no trailing or double hyphen, "
                f"and <prefix>-{account}-{region} at most {_BUCKET_MAX} characters (S3 bucket naming rules)"
            )
        return prefix

    @model_validator(mode="after")
    def _ids_for_the_id_subject(self) -> BootstrapSettings:
        if self.oidc_subject == "repository-id":
            ids = {"githubOwnerId": self.github_owner_id, "githubRepositoryId": self.github_repository_id}
            missing = [key for key, value in ids.items() if value is None]
            if missing:
                # One problem per key, a line each (pydantic takes one message per validator).
                raise ValueError(
                    "\n".join(
                        f"{NAMESPACE}:{key} is required with oidcSubject repository-id; allowed: GitHub's numeric "
                        "id (`gh api repos/OWNER/REPO --jq .owner.id,.id`)"
                        for key in missing
                    )
                )
        return self

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


KEYS: tuple[str, ...] = tuple(field.alias or name for name, field in BootstrapSettings.model_fields.items())
"""Every config key the bootstrap reads (without the namespace), in declaration order."""
_LISTS = {"environments", "hostedZoneIds"}
# Keys whose empty value means "unset" (the CLI's `pulumi config set KEY ""`), as before the model.
_EMPTY_IS_UNSET = {"pullRequestEnvironment", "oidcSubject", "stateBucketPrefix", "resourcePrefix"}


def _decoded(key: str, raw: str, errors: list[str]) -> Any:
    """A list key's JSON value (the CLI passes lists JSON-encoded), or None after recording why not."""
    try:
        value = json.loads(raw)
    except ValueError:
        errors.append(f"{NAMESPACE}:{key} must be a JSON list of strings, got {raw!r}")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{NAMESPACE}:{key} must be a list of strings, got {value!r}")
        return None
    return value


def _problem(error: Any) -> str:
    """One pydantic error as the bootstrap says it: the key, the value and what is allowed (a model-level
    error may hold several such lines)."""
    loc = error["loc"]
    message = re.sub(r"^Value error, ", "", error["msg"])
    if not loc:
        return message
    key = str(loc[0])
    if error["type"] == "missing":
        return f"{NAMESPACE}:{key}=None is invalid; allowed: {ALLOWED.get(key, 'a value')}"
    if error["type"] == "literal_error":
        return f"{NAMESPACE}:{key}={error['input']!r} is invalid; allowed: {', '.join(SUBJECT_FORMS)}"
    if len(loc) > 1:
        return f"{NAMESPACE}:{key} entry {error['input']!r} {message}"
    if message.startswith("is invalid"):
        return f"{NAMESPACE}:{key}={error['input']!r} {message}"
    return f"{NAMESPACE}:{key} {message}"


def parse(values: Mapping[str, str], *, account_id: str, region: str) -> BootstrapSettings:
    """Settings from the CLI's config values (`<namespace>:<key>` -> string, lists JSON-encoded).

    Reads exactly the keys in KEYS; an empty value counts as unset (the default applies)."""
    errors: list[str] = []
    data: dict[str, Any] = {}
    for key in KEYS:
        raw = values.get(f"{NAMESPACE}:{key}")
        if raw is None or (raw == "" and key in _EMPTY_IS_UNSET):
            continue
        value = _decoded(key, raw, errors) if key in _LISTS else raw
        if value is not None:
            data[key] = value
    if "pullRequestEnvironment" not in data and isinstance(data.get("environments", ()), list):
        environments = data.get("environments", list(BootstrapSettings.model_fields["environments"].default))
        if environments:
            data["pullRequestEnvironment"] = "dev" if "dev" in environments else environments[0]
    try:
        settings = BootstrapSettings.model_validate_json(
            json.dumps(data), context={"account_id": account_id, "region": region}, by_alias=True, by_name=False
        )
    except ValidationError as error:
        errors.extend(line for e in error.errors(include_url=False) for line in _problem(e).split("\n"))
    if errors:
        raise BootstrapConfigError(errors)
    return settings
