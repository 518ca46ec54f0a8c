"""The bootstrap's config mistakes, in the program's style (tests/config_cases, tests/test_config_corpus.py):
each realistic mistake is refused with a problem line naming its key, every problem at once, and unusual
valid configs are accepted. bootstrap/settings.py is a `Section` model like the program's settings."""

from __future__ import annotations

from typing import Any

import pytest

from bootstrap.settings import KEYS, NAMESPACE, BootstrapConfigError, BootstrapSettings, parse
from components.settings.base import Section
from tests.bootstrap.test_bootstrap import _values
from tests.harness import ACCOUNT

REGION = "eu-west-1"
# (id, why it happens, the keys changed, the key the refusal must name)
MISTAKES: list[tuple[str, str, dict[str, Any], str]] = [
    ("owner-missing", "the README's example pasted without the owner line", {"githubOwner": None}, "githubOwner"),
    ("owner-url", "the repository URL pasted as the owner", {"githubOwner": "github.com/acme"}, "githubOwner"),
    ("owner-wildcard", "trying to trust every repository of an org", {"githubOwner": "acme-*"}, "githubOwner"),
    ("owner-trailing-hyphen", "a typo GitHub would not accept", {"githubOwner": "acme-"}, "githubOwner"),
    ("repo-full-name", "owner/repo given as the repository", {"githubRepo": "acme/gantry"}, "githubRepo"),
    ("repo-dot", "`.` for this repository", {"githubRepo": "."}, "githubRepo"),
    ("repo-wildcard", "trusting every repository", {"githubRepo": "*"}, "githubRepo"),
    ("environments-empty", "all environments deleted", {"environments": []}, "environments"),
    ("environments-csv", "a comma-separated string instead of a list", {"environments": "dev,prod"}, "environments"),
    ("environment-wildcard", "one role for every environment", {"environments": ["dev", "*"]}, "environments"),
    ("environment-slash", "a branch name as an environment", {"environments": ["feature/x"]}, "environments"),
    ("environments-case-twins", "Prod and prod", {"environments": ["prod", "Prod"]}, "environments"),
    ("environments-too-many", "one per developer", {"environments": [f"dev{i}" for i in range(11)]}, "environments"),
    (
        "pr-env-unlisted",
        "pull requests pointed at staging",
        {"pullRequestEnvironment": "staging"},
        "pullRequestEnvironment",
    ),
    ("subject-typo", "repository_id with an underscore", {"oidcSubject": "repository_id"}, "oidcSubject"),
    ("subject-id-without-ids", "switched to ids, ids not set", {"oidcSubject": "repository-id"}, "githubOwnerId"),
    ("repository-id-name", "the name given as the id", {"githubRepositoryId": "gantry"}, "githubRepositoryId"),
    ("owner-id-zero", "a leading zero", {"githubOwnerId": "0123"}, "githubOwnerId"),
    ("bucket-prefix-upper", "S3 names are lower case", {"stateBucketPrefix": "Gantry-State"}, "stateBucketPrefix"),
    ("bucket-prefix-long", "the bucket name passes 63", {"stateBucketPrefix": "g" * 41}, "stateBucketPrefix"),
    ("bucket-prefix-double-hyphen", "a typo", {"stateBucketPrefix": "gantry--state"}, "stateBucketPrefix"),
    ("resource-prefix-short", "one letter scopes nothing", {"resourcePrefix": "g"}, "resourcePrefix"),
    ("resource-prefix-upper", "the project name as written", {"resourcePrefix": "Gantry"}, "resourcePrefix"),
    ("zone-domain", "the domain instead of the zone id", {"hostedZoneIds": ["acme.ai"]}, "hostedZoneIds"),
    ("zones-string", "one zone id, not a list", {"hostedZoneIds": "Z0447125MJ9ZQ8R2K7VX5"}, "hostedZoneIds"),
    (
        "zones-too-many",
        "every zone of the account",
        {"hostedZoneIds": [f"Z{i:05d}" for i in range(21)]},
        "hostedZoneIds",
    ),
]
VALID: list[tuple[str, dict[str, Any]]] = [
    ("one-environment", {"environments": ["production"]}),
    ("no-dev", {"environments": ["staging", "prod"]}),
    ("dotted-repo", {"githubRepo": "gantry.infra"}),
    ("id-subject", {"oidcSubject": "repository-id", "githubOwnerId": "12345", "githubRepositoryId": "67890"}),
    ("zones", {"hostedZoneIds": ["Z0447125MJ9ZQ8R2K7VX5", "Z2FDTNDATAQYW2"]}),
    ("prefixes", {"stateBucketPrefix": "acme-pulumi", "resourcePrefix": "acme-ai"}),
    ("empty-optional", {"pullRequestEnvironment": "", "oidcSubject": "", "resourcePrefix": ""}),
]


def refusal(changes: dict[str, Any]) -> BootstrapConfigError:
    with pytest.raises(BootstrapConfigError) as error:
        parse(_values(**changes), account_id=ACCOUNT, region=REGION)
    return error.value


@pytest.mark.parametrize(("case", "why", "changes", "key"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_refused_naming_its_key(case: str, why: str, changes: dict[str, Any], key: str) -> None:
    error = refusal(changes)
    named = [p for p in error.problems if p.startswith(f"{NAMESPACE}:{key}")]
    assert named, f"{case} ({why}): no problem names {key}; got {list(error.problems)}"
    assert all("allowed" in p or "must be" in p for p in named), named
    assert str(error).startswith("invalid bootstrap config:\n  - ")


@pytest.mark.parametrize(("case", "changes"), VALID, ids=[v[0] for v in VALID])
def test_unusual_valid_configs_are_accepted(case: str, changes: dict[str, Any]) -> None:
    settings = parse(_values(**changes), account_id=ACCOUNT, region=REGION)
    for key, value in changes.items():
        field = next(name for name, f in BootstrapSettings.model_fields.items() if f.alias == key)
        if value != "":
            assert getattr(settings, field) == (tuple(value) if isinstance(value, list) else value), case


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    error = refusal(
        {
            "githubOwner": "acme/*",
            "githubRepo": "*",
            "environments": ["dev", "a:b"],
            "resourcePrefix": "g",
            "hostedZoneIds": ["acme.ai"],
        }
    )
    keys = [p.split("=")[0].split(" ")[0] for p in error.problems]
    assert keys == [
        f"{NAMESPACE}:{k}" for k in ("githubOwner", "githubRepo", "environments", "resourcePrefix", "hostedZoneIds")
    ]
    both_ids = refusal({"oidcSubject": "repository-id"})
    assert [p.split(" ")[0] for p in both_ids.problems] == [
        f"{NAMESPACE}:githubOwnerId",
        f"{NAMESPACE}:githubRepositoryId",
    ]


def test_the_settings_are_a_program_section_with_one_field_per_key() -> None:
    assert issubclass(BootstrapSettings, Section)
    assert BootstrapSettings.model_config["frozen"] and BootstrapSettings.model_config["extra"] == "forbid"
    assert KEYS == (
        "githubOwner",
        "githubRepo",
        "environments",
        "pullRequestEnvironment",
        "oidcSubject",
        "githubOwnerId",
        "githubRepositoryId",
        "stateBucketPrefix",
        "resourcePrefix",
        "hostedZoneIds",
    )
    # Each field says why (the attribute docstring), as the program's settings do.
    assert all(f.description for f in BootstrapSettings.model_fields.values())


def test_the_pull_request_environment_defaults_to_dev_else_the_first() -> None:
    assert parse(_values(), account_id=ACCOUNT, region=REGION).pull_request_environment == "dev"
    staging = parse(_values(environments=["staging", "prod"]), account_id=ACCOUNT, region=REGION)
    assert staging.pull_request_environment == "staging"
