"""The contract gantry's two Pulumi projects share: the names one creates and the other must match.

The bootstrap (bootstrap/, once per account) grants the delivery roles rights scoped to these names, and
the program (`__main__.py`) creates its roles, keys and references under them, so each value is declared
here once and both import it: the program never imports the bootstrap's policy documents (bootstrap/documents.py), and a
changed name cannot leave one side granting what the other no longer creates. Plain constants and one
pure statement builder, no Pulumi. Security stance: these names are what the deploy roles' IAM conditions
test (role path, boundary, key tag, resource prefix), so a value changed on one side only fails closed
(AccessDenied at `pulumi up`), and every bucket of either project refuses requests not made over TLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The resource prefix the program names everything with (its logical names are `gantry-*`; the bootstrap's
# resourcePrefix default): components/settings/access.py requires referenced secrets and parameters to
# carry it, because the boundary (bootstrap.documents gantry_secret_arns, gantry_parameter_arns) lets tasks
# read no others.
PROGRAM_PREFIX = "gantry"
# The IAM path of every role the program creates: the deploy roles may create and change roles only here.
WORKLOAD_ROLE_PATH = "/gantry/"
# The IAM path of the bootstrap's delivery roles (the program's paging topic admits their publish).
DELIVERY_ROLE_PATH = "/gantry-delivery/"
# The permissions boundary every program role must carry (iam:PermissionsBoundary on role creation).
BOUNDARY_POLICY_NAME = "gantry-workload-boundary"
# The tag that marks a KMS key as one of the program's own (components/notifications.py sets it): the deploy
# roles may create keys only with it and administer only keys that carry it. AWS KMS authorises CreateKey,
# TagResource and UntagResource on aws:RequestTag/aws:TagKeys and key operations on aws:ResourceTag ("ABAC
# for AWS KMS" and "Use tags to control access to KMS keys",
# https://docs.aws.amazon.com/kms/latest/developerguide/abac.html,
# https://docs.aws.amazon.com/kms/latest/developerguide/tag-authorization.html).
PROGRAM_KEY_TAG = "gantry-key"
PROGRAM_KEY_TAG_VALUE = "program"


def deny_insecure_transport(*, resources: Sequence[str], action: str) -> dict[str, Any]:
    """One statement refusing every request over plain HTTP (aws:SecureTransport false) to `resources`.

    S3 evaluates aws:SecureTransport in bucket policies ("Security best practices for Amazon S3": enforce
    encryption of data in transit, https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html).
    """
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": list(resources),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def tls_only_bucket_statement(bucket_arn: str) -> dict[str, Any]:
    """The bucket transport policy both projects put on their buckets: TLS only, for the bucket and its objects."""
    return deny_insecure_transport(resources=[bucket_arn, f"{bucket_arn}/*"], action="s3:*")
