"""Settings one `pulumi up` invocation adds to the stack config: a hotfix's alarm override, the digest a
deploy workflow promotes, and the AWS session gantry's dynamic providers must share with pulumi-aws.

Hotfix: while a rollback alarm is in ALARM, CodeDeploy stops every deployment of the group, including
the fix for that alarm. `GANTRY_HOTFIX_IGNORE_ALARMS="<incident and reason>"` in the environment of one
`pulumi up` creates that run's deployment with alarm polling turned off (CodeDeploy API,
CreateDeployment `overrideAlarmConfiguration`) and records the reason in the deployment's description.
It is an environment variable, not a config key, on purpose: `pulumi config set` and `pulumi up
--config` both write the stack file ("Config to use during the update and save to the stack config
file", `pulumi up --help`), where the override would quietly disable the alarms of every later
deployment; an environment variable ends with the shell or CI step that set it. It applies only to
`deployment.strategy: codedeploy` (a rolling stack's alarms are the service's own) and is refused
otherwise, with the variable named.

Promotion: the deploy workflow's prod job passes the digest its dev job deployed and evaluated, and the
run that marked it (`<run id>-<attempt>`), as GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN
(`components.settings.promotion` says what is checked). Environment variables for the same reason as the
hotfix: they belong to one run, and a stack file would carry a run's digest into every later deploy.
`in_workflow` tells an `up` in GitHub Actions (GITHUB_ACTIONS=true, "Always set to true when GitHub
Actions is running the workflow", GitHub's "Variables reference") from a preview or a person's `up`: only
the first must name its digest, so a pull request's `pulumi preview -s prod` still previews.

Session: the deploy resource and the pre-traffic task run in the dynamic provider process, where boto3
would use its default credential chain, not pulumi-aws's: a stack with `aws:profile` or
`aws:assumeRoles` would create resources as one principal and start deployments and tasks as another
(or fail). `ProviderSession` carries the profile and one assumed role (its ARN and session name, not
secrets) as plain resource inputs; components.provider_runtime.session_for rebuilds the principal.
Credentials cannot travel that way without landing in plain state, so `provider_session` refuses
`aws:accessKey`/`aws:secretKey`/`aws:token` (and what it cannot honour) with an error naming the key
whenever a dynamic provider runs. Security stance: no secret becomes a provider input, and an override
is never persisted where it could outlive its incident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.promotion import RUN, PromotionRequest

HOTFIX_VARIABLE = "GANTRY_HOTFIX_IGNORE_ALARMS"
HOTFIX_MAX_CHARS = 200  # leaves the description (1024, CodeDeploy's limit) room for stack, commit and revision


def alarm_override(environ: Mapping[str, str], *, blue_green: bool) -> tuple[str | None, list[str]]:
    """The hotfix reason from the environment (None when unset) and any problem with it."""
    raw = environ.get(HOTFIX_VARIABLE)
    if raw is None or raw == "":
        return None, []
    reason = raw.strip()
    if not blue_green:
        return None, [
            f"{HOTFIX_VARIABLE}: applies only to deployment.strategy codedeploy (a rolling stack's alarms are the "
            "service's own); unset it"
        ]
    if not 3 <= len(reason) <= HOTFIX_MAX_CHARS or not reason.isprintable():
        return None, [
            f"{HOTFIX_VARIABLE}: allowed: the incident and reason for ignoring the rollback alarms, 3 to "
            f'{HOTFIX_MAX_CHARS} printable characters on one line (e.g. "INC-123: fix for the 5xx alarm")'
        ]
    return reason, []


DIGEST_VARIABLE, RUN_VARIABLE = "GANTRY_PROMOTE_DIGEST", "GANTRY_PROMOTE_RUN"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def promotion_request(environ: Mapping[str, str]) -> tuple[PromotionRequest | None, list[str]]:
    """GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN: both (a request) or neither (None), and any problem
    with them, each naming its variable and what is allowed."""
    digest, run = (environ.get(name, "").strip() for name in (DIGEST_VARIABLE, RUN_VARIABLE))
    if not digest and not run:
        return None, []
    problems = []
    if not _DIGEST.fullmatch(digest):
        problems.append(
            f"{DIGEST_VARIABLE}: allowed: the sha256 digest the dev job deployed and evaluated (sha256:<64 lower-case "
            f"hex>, its `digest` output), set together with {RUN_VARIABLE}; got {digest[:80]!r}"
        )
    if not RUN.fullmatch(run):
        problems.append(
            f"{RUN_VARIABLE}: allowed: the run that marked it, <github.run_id>-<github.run_attempt> (the dev job's "
            f"`run` output), set together with {DIGEST_VARIABLE}; got {run[:40]!r}"
        )
    return (None, problems) if problems else (PromotionRequest(digest=digest, run=run), [])


def in_workflow(environ: Mapping[str, str], *, dry_run: bool) -> bool:
    """An `up` (not a preview) that GitHub Actions runs."""
    return environ.get("GITHUB_ACTIONS") == "true" and not dry_run


# Resource inputs that carry the session (plain strings or None).
SESSION_KEYS = ("aws_profile", "aws_role_arn", "aws_role_session_name")
# Keys that give pulumi-aws credentials or credential sources a provider input cannot carry safely.
REFUSED_KEYS = {
    "aws:accessKey": "a credential",
    "aws:secretKey": "a credential",
    "aws:token": "a credential",
    "aws:assumeRoleWithWebIdentity": "a web identity token source",
    "aws:sharedCredentialsFiles": "a credentials file location",
    "aws:sharedConfigFiles": "a config file location",
}
ROLE_FIELDS = ("roleArn", "sessionName")
DEFAULT_SESSION_NAME = "gantry-deploy"


@dataclass(frozen=True)
class ProviderSession:
    """The principal the dynamic providers act as: the stack's profile and assumed role, if any."""

    profile: str | None = None
    """aws:profile; default none (boto3's default chain, as pulumi-aws without a profile)."""
    role_arn: str | None = None
    """The one role of aws:assumeRoles; default none."""
    session_name: str | None = None
    """Its sessionName; default none (DEFAULT_SESSION_NAME when a role is assumed)."""

    def inputs(self) -> dict[str, str | None]:
        return dict(zip(SESSION_KEYS, (self.profile, self.role_arn, self.session_name), strict=True))

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ProviderSession:
        values = [props.get(key) or None for key in SESSION_KEYS]
        return cls(*(str(v) if v is not None else None for v in values))


def _parse(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def provider_session(aws_config: Mapping[str, Any], *, needed: bool) -> tuple[ProviderSession, list[str]]:
    """The session the dynamic providers get from the stack's `aws:*` config (raw values as the CLI passes
    them: strings, objects JSON-encoded). `needed`: a dynamic provider runs in this stack (CodeDeploy, a
    pre-traffic task or a promoted image's run tag); otherwise nothing is refused, since nothing would act
    on it. Returns the session and the problems found (each naming its key)."""
    problems: list[str] = []
    if needed:
        for key, what in REFUSED_KEYS.items():
            if aws_config.get(key) not in (None, "", [], {}):
                problems.append(
                    f"{key}: is {what} gantry's dynamic providers (deploy, pre-traffic task, run tag) cannot receive "
                    "without writing it to plain state; allowed: leave it unset and give credentials as AWS_* "
                    "environment variables or a profile (aws:profile)"
                )
    if aws_config.get("aws:assumeRole") not in (None, ""):
        problems.append("aws:assumeRole: pulumi-aws 7 does not read it; allowed: aws:assumeRoles, a list of one role")
    profile = aws_config.get("aws:profile") or None
    if profile is not None and not isinstance(profile, str):
        problems.append("aws:profile: must be a profile name (a string)")
    roles = _parse(aws_config.get("aws:assumeRoles")) or []
    role_arn = session_name = None
    if not isinstance(roles, list) or len(roles) > 1 or any(not isinstance(r, dict) for r in roles):
        problems.append("aws:assumeRoles: allowed: a list of at most one role ({roleArn, sessionName})")
    elif roles:
        role = roles[0]
        for field in sorted(set(role) - set(ROLE_FIELDS)):
            if needed:
                problems.append(
                    f"aws:assumeRoles[0].{field}: is not passed to the dynamic providers; allowed: roleArn and "
                    "sessionName only (or assume the role before `pulumi up` and drop aws:assumeRoles)"
                )
        role_arn, session_name = role.get("roleArn"), role.get("sessionName")
        if not isinstance(role_arn, str) or not role_arn.startswith("arn:"):
            problems.append("aws:assumeRoles[0].roleArn: must be a role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    if problems:
        return ProviderSession(), problems
    return ProviderSession(profile=profile, role_arn=role_arn, session_name=session_name), []
