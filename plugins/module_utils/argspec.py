# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where options are defined (plain dicts: no Ansible import).

Each engine defines its options once, as an ``ArgumentSpec`` named ``SPEC`` beside its ``run()``
(as community.crypto's backends own their argument specs). Everything else derives from it:

- the module: ``AnsibleModule(supports_check_mode=True, **engine.SPEC.ansible_kwargs())``;
- the engine: ``OPTIONS = SPEC.defaults()`` (the option names and their defaults) and
  ``SPEC.resolve(params)`` (unknown names refused, unset ones defaulted);
- the agent: ``engine.OPTIONS`` (``agent.filter_params``).

The groups below (connection, repository, S3, tenant) are shared by several engines; their
documentation is the doc fragment of the same name (``plugins/doc_fragments/``), which must say
the same types, defaults and choices (ansible-test validate-modules compares them).
"""

import copy

from .errors import LifeboatError

# How to reach a PostgreSQL server: lifeboat.backup.connection
LOGIN = dict(
    login_host=dict(type="str"),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str"),
    login_password=dict(type="str", no_log=True),
    login_unix_socket=dict(type="str"),
)

# ... and where its client tools are: lifeboat.backup.connection and lifeboat.backup.connection.pg_tools
CONNECTION = dict(LOGIN, pg_bin_dir=dict(type="path"))

# Who decrypts: an age identity or SSH private key, or a file of them (each module documents its own), and a key
# folder of one identity file per tenant (lifeboat.backup.identity: crypto.tenant_identity_sources)
IDENTITY = dict(
    identity=dict(type="str", no_log=True),
    identity_file=dict(type="path"),
    identity_dir=dict(type="path"),
)

# Whom artifacts are encrypted to: lifeboat.backup.repository.recipients
RECIPIENTS = dict(
    recipients=dict(type="list", elements="str"),
    recipients_file=dict(type="path"),
)

# Where artifacts are written, and to whom: lifeboat.backup.repository and lifeboat.backup.repository.recipients
REPOSITORY = dict(RECIPIENTS, repository=dict(type="str", required=True))

# The S3 options that only say how to reach the store: lifeboat.backup.s3
S3_CONNECTION = dict(
    s3_endpoint_url=dict(type="str"),
    s3_region=dict(type="str"),
    s3_access_key=dict(type="str", no_log=True),
    s3_secret_key=dict(type="str", no_log=True),
    s3_session_token=dict(type="str", no_log=True),
)

# How artifacts are stored in an s3:// repository: lifeboat.backup.s3.storage
S3_STORAGE = dict(
    storage_class=dict(type="str", choices=["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]),
    sse=dict(type="str", choices=["AES256", "aws:kms"]),
    sse_kms_key_id=dict(type="str", no_log=False),
)

S3 = dict(S3_CONNECTION, **S3_STORAGE)

# lifeboat.backup.tenant
TENANT = dict(
    tenant=dict(type="str"),
    engine=dict(type="str", default="postgresql", choices=["postgresql", "sqlite"]),
    database=dict(type="str"),
    schema=dict(type="str"),
    path=dict(type="path"),
)


def merged(*specs, **extra):
    """One argument spec from groups and single options; a later definition of a name wins."""
    out = {}
    for spec in specs + (extra,):
        for key, value in spec.items():
            out[key] = dict(value)
    return out


class ArgumentSpec(object):
    """The options of one engine: AnsibleModule's argument spec and constraints, and the engine's defaults.

    ``engine_only`` names options the engine accepts although its module does not offer them (default
    None), for callers such as the agent that pass every setting of a group.
    """

    CONSTRAINTS = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")

    def __init__(self, argument_spec, engine_only=(), **constraints):
        unknown = sorted(set(constraints) - set(self.CONSTRAINTS))
        if unknown:
            raise TypeError("ArgumentSpec() got unknown constraint(s): %s" % ", ".join(unknown))
        self.argument_spec = argument_spec
        self.constraints = constraints
        self.engine_only = tuple(engine_only)

    def defaults(self):
        """Every option the engine accepts, with its default (None when it has none)."""
        out = dict((name, option.get("default")) for name, option in self.argument_spec.items())
        out.update((name, None) for name in self.engine_only if name not in out)
        return out

    def resolve(self, params):
        """The engine's options: ``params`` (None meaning unset) over the defaults; an unknown name is refused."""
        options = self.defaults()
        unknown = sorted(set(params) - set(options))
        if unknown:
            raise LifeboatError("Unknown option(s): %s." % ", ".join(unknown), option=unknown[0])
        options.update((k, v) for k, v in params.items() if v is not None)
        return options

    def ansible_kwargs(self):
        """AnsibleModule's keyword arguments (copies: AnsibleModule may change what it is given)."""
        kwargs = copy.deepcopy(self.constraints)
        kwargs["argument_spec"] = copy.deepcopy(self.argument_spec)
        return kwargs
