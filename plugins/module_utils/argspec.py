# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the modules (plain dicts: no Ansible import)."""

CONNECTION = dict(
    login_host=dict(type="str"),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str"),
    login_password=dict(type="str", no_log=True),
    login_unix_socket=dict(type="str"),
    pg_bin_dir=dict(type="path"),
)

REPOSITORY = dict(
    repository=dict(type="str", required=True),
    recipients=dict(type="list", elements="str"),
    recipients_file=dict(type="path"),
)

S3 = dict(
    s3_endpoint_url=dict(type="str"),
    s3_region=dict(type="str"),
    s3_access_key=dict(type="str", no_log=True),
    s3_secret_key=dict(type="str", no_log=True),
    s3_session_token=dict(type="str", no_log=True),
    storage_class=dict(type="str", choices=["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]),
    sse=dict(type="str", choices=["AES256", "aws:kms"]),
    sse_kms_key_id=dict(type="str", no_log=False),
)

# The S3 options that only say how to reach the store (no upload settings).
S3_CONNECTION = dict((k, v) for k, v in S3.items()
                     if k in ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key", "s3_session_token"))

TENANT = dict(
    tenant=dict(type="str"),
    engine=dict(type="str", default="postgresql", choices=["postgresql", "sqlite"]),
    database=dict(type="str"),
    schema=dict(type="str"),
    path=dict(type="path"),
)


def merged(*specs, **extra):
    out = {}
    for spec in specs + (extra,):
        for key, value in spec.items():
            out[key] = dict(value)
    return out


def failure(error):
    """fail_json keyword arguments for a LifeboatError."""
    result = {"msg": str(error)}
    if getattr(error, "option", None):
        result["option"] = error.option
    details = getattr(error, "details", None)
    if details:
        result["details"] = details
    return result
