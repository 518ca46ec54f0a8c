"""The building blocks every settings section shares: the model base, value types and pure checks.

Each config section is a frozen pydantic model whose fields are declared once: type, default and,
in the attribute docstring under the field, why that default. Validation is strict (no `"1024"` for
an integer, no `1` for a boolean, no `1024.0` for a whole number), unknown fields are refused, and
the camelCase names of `Pulumi.<stack>.yaml` are the aliases. Security stance: strings that carry
identity (ARNs, CIDRs, names) may not be blank or carry stray whitespace, placeholder values such as
AWS's documentation account ids are refused anywhere, and values that look like credentials are
refused outside `secrets`, because a deploy that "works" with either is how incidents start.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

NAMESPACE = "gantry"


class ConfigError(ValueError):
    """Raised with every config problem found, one per line, before any resource exists."""

    def __init__(self, problems: list[str] | tuple[str, ...]):
        self.problems = tuple(problems)
        super().__init__(
            "invalid gantry config (nothing was created):\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


@dataclass(frozen=True, kw_only=True)
class Where:
    """Where the stack deploys: the facts cross-field rules need."""

    region: str
    partition: str


class Section(BaseModel):
    """Base of every settings model: frozen, strict, camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        # Python code constructs by field name (keywords only); config is validated by alias alone
        # (the loader passes by_name=False), so a stack file must use the documented camelCase names.
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
        hide_input_in_errors=False,
    )


# --------------------------------------------------------------------------------------------------
# Value types: a string that is present and clean, an IPv4 CIDR, an ARN.
# --------------------------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def _no_whitespace(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces, tabs or newlines")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]
"""A non-blank string without surrounding whitespace."""
Token = Annotated[str, AfterValidator(_not_blank), AfterValidator(_no_whitespace)]
"""A non-blank string with no whitespace at all (names, ids, ARNs)."""


def _cidr(value: str) -> str:
    if "/" not in value:
        raise ValueError("is not an IPv4 CIDR with an explicit prefix length, such as 10.0.0.0/16 or 203.0.113.7/32")
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"is not an IPv4 CIDR ({exc})") from None
    return value


Cidr = Annotated[Token, AfterValidator(_cidr)]

ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):([a-z0-9-]+):([a-z0-9-]*|\*):(\d{12}|aws|\*)?:(.+)$")


def parse_arn(arn: str) -> dict[str, str] | None:
    """The parts of an ARN, or None when it is not one."""
    m = ARN.match(arn)
    if not m:
        return None
    return {
        "partition": m.group(1),
        "service": m.group(2),
        "region": m.group(3),
        "account": m.group(4) or "",
        "resource": m.group(5),
    }


def _arn(value: str) -> str:
    if parse_arn(value) is None:
        raise ValueError("is not an ARN (arn:<partition>:<service>:<region>:<account>:<resource>)")
    return value


Arn = Annotated[Token, AfterValidator(_arn)]


@dataclass(frozen=True)
class OneOf:
    """The check `one_of` installs; it keeps its values so the config reference can list them."""

    values: tuple[Any, ...]
    why: str = ""

    def __call__(self, value: Any) -> Any:
        if value not in self.values:
            suffix = f" ({self.why})" if self.why else ""
            raise ValueError(f"must be one of {', '.join(map(str, self.values))}{suffix}")
        return value


def one_of(values: tuple[Any, ...], why: str = "") -> AfterValidator:
    """Only these values. (Unlike Literal, a strict int field still refuses 1024.0 from YAML.)"""
    return AfterValidator(OneOf(values, why))


def between(default: int, lo: int, hi: int, why: str = "") -> Any:
    """An integer field with bounds; `why` is said with the error when a value falls outside them."""
    return Field(default, ge=lo, le=hi, json_schema_extra={"why": why} if why else None)


def because(default: Any, why: str) -> Any:
    """A field whose refusal message says why the allowed values are what they are."""
    return Field(default, json_schema_extra={"why": why})


# --------------------------------------------------------------------------------------------------
# Pure checks used across sections (each has its own tests).
# --------------------------------------------------------------------------------------------------

# Values left in from a template or the AWS documentation. AWS's documentation uses 123456789012,
# 111122223333, 444455556666 and 012345678901 as account ids; Route 53's examples use Z's and X's.
PLACEHOLDER = re.compile(
    r"replace[_\- ]?me|change[_\- ]?me|\btodo\b|\btbd\b|\bfixme\b|\bx{3,}\b|\bplaceholder\b|\bdummy\b"
    r"|123456789012|111122223333|444455556666|012345678901|\b0{12}\b|\bZX{5,}\b|\bZ0{6,}\b"
    r"|\bexample\.(?:com|org|net)\b|\b(?:your|my)[_\-]?(?:domain|zone|account|bucket|company)\b"
    r"|<[^<>]+>|\byour[_\- ]",
    re.IGNORECASE,
)


# RFC 5737's address ranges for examples: copied from documentation, never a real client.
_DOCUMENTATION_NETS = tuple(ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))


def _documentation_address(value: str) -> bool:
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return any(net.subnet_of(d) for d in _DOCUMENTATION_NETS)


def find_placeholders(value: Any, path: str) -> list[tuple[str, str]]:
    """(config path, string) pairs whose value or map key looks like a placeholder left in by mistake."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        if PLACEHOLDER.search(value) or _documentation_address(value):
            found.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and PLACEHOLDER.search(k):
                found.append((f"{path}.{k}", k))
            found.extend(find_placeholders(v, f"{path}.{k}"))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found.extend(find_placeholders(v, f"{path}[{i}]"))
    return found


# A variable is taken for a secret when its last word names one (`DB_PASS`, `OPENAI_KEY`, `HF_TOKEN`)
# or any word is unmistakable (`SECRET`, `PASSWORD`); `TOKEN_BUDGET_PER_MINUTE` is not a secret.
_SECRET_LAST_WORDS = frozenset(
    {
        "PASS",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "KEYS",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "DSN",
        "PASSPHRASE",
        "COOKIE",
    }
)
_SECRET_ANY_WORDS = frozenset({"SECRET", "SECRETS", "PASSWORD", "PASSWD", "CREDENTIALS", "PRIVATE"})


# ...unless the last word says the variable names or points at a secret rather than holding one.
_REFERENCE_LAST_WORDS = frozenset({"ARN", "ID", "NAME", "PATH", "FILE", "REGION", "PREFIX", "LENGTH", "HEADER"})


def secret_looking_name(name: str) -> bool:
    words = [w for w in name.upper().split("_") if w]
    if not words or words[-1] in _REFERENCE_LAST_WORDS:
        return False
    return words[-1] in _SECRET_LAST_WORDS or bool(_SECRET_ANY_WORDS & set(words))


# Shapes of real credentials: a URL with a password, a bearer header, OpenAI/Stripe/GitHub/Slack/
# Google keys, AWS access key ids, JWTs and PEM private keys.
_SECRET_VALUES = (
    ("a URL with a password", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)),
    ("a bearer credential", re.compile(r"^\s*(bearer|basic)\s+\S{8,}", re.IGNORECASE)),
    ("an OpenAI-style secret key", re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")),
    ("a Stripe key", re.compile(r"\b[sr]k_(live|test)_[A-Za-z0-9]{10,}")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    (
        "a webhook URL (whoever holds it can post)",
        re.compile(
            r"hooks\.slack\.com/services/|discord(?:app)?\.com/api/webhooks/|outlook\.office\.com/webhook/",
            re.IGNORECASE,
        ),
    ),
    (
        "a credential in a query string",
        re.compile(
            r"[?&](?:api[_-]?key|key|token|access_token|secret|sig|signature|password)=[^&\s]{8,}", re.IGNORECASE
        ),
    ),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)


def secret_looking_value(value: str) -> str | None:
    """What kind of credential `value` looks like, or None."""
    for kind, pattern in _SECRET_VALUES:
        if pattern.search(value):
            return kind
    return None
