# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""age_encrypt's request: its options, their checks, and the key material they name.

Also what every state shares: how a failure of the age child process reads.
"""

import os

from .. import argspec, crypto, naming
from ..age_stream import describe_stanzas
from ..errors import LifeboatError, MissingDependency

CHUNK = 1 << 20
STATES = ("encrypted", "decrypted", "keypair", "rekeyed")

# The options of age_encrypt (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.S3,  # s3://bucket/prefix repositories: where bundles are stored
        argspec.RECIPIENTS,
        argspec.IDENTITY,
        state=dict(type="str", default="encrypted", choices=list(STATES)),
        src=dict(type="path"),
        dest=dict(type="path"),
        repository=dict(type="str"),
        tenant=dict(type="str"),
        # state keypair with identity_dir: one key pair per tenant
        tenants=dict(type="list", elements="str"),
        # state decrypted with a repository: which artifact of the tenant
        artifact=dict(type="str"),
        passphrase=dict(type="str", no_log=True),
        armor=dict(type="bool", default=False),
        format=dict(type="str", default="auto", choices=["auto", "file", "tar"]),
        compression=dict(type="str", default="auto", choices=["auto", "zstd", "none"]),
        compression_level=dict(type="int", default=3),
        mode=dict(type="raw", default="0600"),
        remove_src=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        purge_old_versions=dict(type="bool", default=False),
        lock_timeout=dict(type="int", default=0),
    ),
    required_if=[
        ("state", "keypair", ("identity_file", "identity_dir"), True),
        ("state", "decrypted", ("dest",)),
        ("state", "decrypted", ("src", "repository"), True),
    ],
    # dest with repository: refused by the engine for state encrypted, the destination for state decrypted
    mutually_exclusive=[("passphrase", "recipients"), ("passphrase", "recipients_file")],
)
OPTIONS = SPEC.defaults()


def parse_mode(value, default=0o600):
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise LifeboatError("Invalid mode %r: give an octal mode such as '0600'." % (value,), option="mode")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise LifeboatError("Invalid mode %r: give an octal mode such as '0600' (symbolic modes are not "
                                "supported)." % (value,), option="mode")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise LifeboatError("Invalid mode %r: out of range." % (value,), option="mode")
    return mode


def identity_text(identity=None, identity_file=None, environ=None):
    """Identity text and where it came from (crypto.identity_source), checked before any work."""
    text, where = crypto.identity_source(identity, identity_file, environ)
    crypto.parse_identities(text, where)  # clear errors before any work
    return text, where


class Request(object):
    def __init__(self, params, environ=None):
        p = SPEC.resolve(params)
        self.p = p
        self.environ = os.environ if environ is None else environ
        self.state = p["state"]
        if self.state not in STATES:
            raise LifeboatError("Unknown state %r: use %s." % (self.state, ", ".join(STATES)), option="state")
        for opt in ("src", "dest"):
            if p[opt] is not None:
                if not isinstance(p[opt], str) or not p[opt] or "\0" in p[opt]:
                    raise LifeboatError("Invalid %s %r: give a path." % (opt, p[opt]), option=opt)
                p[opt] = os.path.abspath(os.path.expanduser(p[opt]))
        if p["format"] not in ("auto", "file", "tar"):
            raise LifeboatError("Unknown format %r: use auto, file or tar." % (p["format"],), option="format")
        if p["compression"] not in ("auto", "zstd", "none"):
            raise LifeboatError("Unknown compression %r: use auto, zstd or none." % (p["compression"],),
                                option="compression")
        level = p["compression_level"]
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 19:
            raise LifeboatError("Invalid compression_level %r: use 1 (fastest) to 19 (smallest)." % (level,),
                                option="compression_level")
        self.mode = parse_mode(p["mode"])
        self.lock_timeout = naming.parse_duration(p["lock_timeout"], "lock_timeout") or 0
        if p["repository"] is not None and self.state == "keypair":
            raise LifeboatError("repository does not apply to state keypair; give identity_file.", option="repository")
        if p["artifact"] is not None and (self.state != "decrypted" or p["repository"] is None):
            raise LifeboatError("artifact applies to state decrypted with repository and tenant (a bundle or file "
                                "stored in a repository); for a local file give src.", option="artifact")
        if p["tenant"] is not None:
            naming.validate_tenant(p["tenant"])
        if p["tenants"] is not None and self.state != "keypair":
            raise LifeboatError("tenants applies to state keypair (one key pair per tenant in identity_dir); for the "
                                "artifacts of one tenant give tenant.", option="tenants")
        if p["passphrase"] is not None and (not isinstance(p["passphrase"], str) or not p["passphrase"]):
            raise LifeboatError("passphrase must be a non-empty string.", option="passphrase")

    def need(self, *names):
        for name in names:
            if self.p[name] in (None, ""):
                raise LifeboatError("state %s needs %s." % (self.state, name), option=name)

    def recipients(self, required=True):
        objs, texts = crypto.load_recipients(self.p["recipients"], self.p["recipients_file"])
        if required and not objs:
            raise LifeboatError(
                "No age recipients given for state %s: set recipients (age1... or SSH public keys) or "
                "recipients_file%s." % (self.state, ", or passphrase for a small file" if self.state == "encrypted"
                                        else ""), option="recipients")
        return objs, texts

    def identity(self, tenant=None):
        """(text, where) of the identities for ``tenant``'s files: with identity_dir its own file there and the
        repository-wide identity (crypto.tenant_identity_sources), else the repository-wide one."""
        if not (self.p["identity_dir"] and tenant):
            return identity_text(self.p["identity"], self.p["identity_file"], self.environ)
        sources, missing = crypto.tenant_identity_sources([tenant], self.p["identity"], self.p["identity_file"],
                                                          self.p["identity_dir"], self.environ)
        text = "\n".join(t for t, _where in sources)
        where = " and ".join(w for _text, w in sources)
        if missing:
            where += " (tenant %s has no identity file of its own: expected %s)" % missing[0]
        crypto.parse_identities(text, where)  # clear errors before any work
        return text, where


def worker_failure(e, src, header, where, encrypting=False, nothing="Nothing was written to dest"):
    """Turn the age child's failure into an error an operator can act on."""
    if e.kind == "import":
        return MissingDependency("pyrage", "pyrage", e.reason)
    if encrypting:
        return LifeboatError("age encryption of %s failed: %s." % (src, e.reason))
    if e.kind == "decrypt" and "no matching keys" in e.reason.lower():
        return LifeboatError(
            "None of the identities from %s matches a recipient of %s (it is encrypted to %s), or its header was "
            "modified. Give the identity it was encrypted to (identity_file, identity or %s). %s."
            % (where, src, describe_stanzas((header or {}).get("stanzas", [])), crypto.IDENTITY_ENV,
               nothing[0].upper() + nothing[1:]), option="identity_file")
    if e.kind in ("decrypt", "truncated"):
        return LifeboatError(
            "%s is truncated or was modified after it was written (age authenticates every chunk: %s). %s; use "
            "an intact copy." % (src, e.reason, nothing[0].upper() + nothing[1:]), option="src")
    return LifeboatError("age decryption of %s failed: %s." % (src, e.reason), option="src")
