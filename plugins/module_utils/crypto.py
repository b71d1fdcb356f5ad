# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""age encryption through pyrage: recipients, identities, streams.

Hosts that back up hold recipients (public keys) only. Identities are read
from a file, an option, or BACKUP_PRIVATE_KEY, and never appear in a message,
a result or a manifest. Data always goes through pyrage's streaming
``encrypt_io``/``decrypt_io`` (``pyrage.encrypt`` holds everything in memory).
"""

import datetime
import os
import re

from .errors import LifeboatError, optional_import, required

pyrage, PYRAGE_IMPORT_ERROR = optional_import("pyrage")
IDENTITY_ENV = "BACKUP_PRIVATE_KEY"


def require_pyrage():
    """pyrage, or MissingDependency: the engine's one check for it."""
    return required(pyrage, "pyrage", "pyrage", PYRAGE_IMPORT_ERROR)


def _short(text):
    text = text.strip().replace("\n", " ")
    return text if len(text) <= 24 else text[:20] + "..."


def parse_recipient(text, where="recipients"):
    """Parse one recipient; return (pyrage object, normalized text)."""
    require_pyrage()
    if not isinstance(text, str):
        raise LifeboatError("Invalid recipient in %s: expected a string, got %s." % (where, type(text).__name__), option=where)
    value = text.strip()
    try:
        if value.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(value), value
        if value.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(value), value
    except Exception as e:  # pyrage.RecipientError and parse errors
        raise LifeboatError(
            "Malformed age recipient %r in %s: %s. Give an X25519 public key (age1...) or an SSH "
            "public key (ssh-ed25519 ... or ssh-rsa ...)." % (_short(value), where, e),
            option=where,
        )
    raise LifeboatError(
        "Malformed age recipient %r in %s: expected an X25519 public key (age1...) or an SSH public "
        "key (ssh-ed25519 ... or ssh-rsa ...). A private key (AGE-SECRET-KEY-...) never belongs here."
        % ("AGE-SECRET-KEY-..." if value.upper().startswith("AGE-SECRET-KEY") else _short(value), where),
        option=where,
    )


def read_recipients_file(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError as e:
        raise LifeboatError("Cannot read recipients_file %s: %s." % (path, e.strerror), option="recipients_file")
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def load_recipients(recipients=None, recipients_file=None):
    """Return (pyrage recipients, normalized public keys), duplicates removed."""
    items = [(r, "recipients") for r in (recipients or [])]
    if recipients_file:
        items += [(r, "recipients_file %s" % recipients_file) for r in read_recipients_file(recipients_file)]
    objs, texts = [], []
    for text, where in items:
        obj, norm = parse_recipient(text, where)
        if norm not in texts:
            objs.append(obj)
            texts.append(norm)
    return objs, texts


_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.S)


def parse_identities(text, where):
    """Parse identities from text: age X25519 lines (AGE-SECRET-KEY-1...) and SSH private keys, several at once.

    Several identities in one text (a file with several keys, or the identities of several tenants joined by
    ``tenant_identities``) are all tried by decryption, as ``age -i`` does.
    """
    require_pyrage()
    found = []
    for block in _PEM.findall(text):
        try:
            found.append(pyrage.ssh.Identity.from_buffer(block.encode("utf-8")))
        except Exception as e:
            raise LifeboatError(
                "The SSH private key in %s could not be used as an age identity (%s). Encrypted "
                "SSH keys are not supported: give an unencrypted ed25519 or RSA key." % (where, e),
                option="identity",
            )
    rest = _PEM.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for number, line in enumerate(rest.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "-----BEGIN" in line:
            raise LifeboatError("Line %d of %s starts a private key block that never ends (no -----END line): the "
                                "file is cut. Give the whole key file." % (number, where), option="identity")
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise LifeboatError(
                "Line %d of %s is not an age identity (AGE-SECRET-KEY-1...). Check that you gave "
                "the private key file, not the public key." % (number, where),
                option="identity",
            )
    if not found:
        raise LifeboatError("No age identity found in %s." % where, option="identity")
    return found


def identity_source(identity=None, identity_file=None, environ=None):
    """(text, where) of the identities: ``identity``, else ``identity_file``, else BACKUP_PRIVATE_KEY."""
    environ = os.environ if environ is None else environ
    if identity:
        return identity, "the identity option"
    if identity_file:
        try:
            with open(identity_file, "r", encoding="utf-8") as f:
                text = f.read(1 << 20)
        except OSError as e:
            raise LifeboatError("Cannot read identity_file %s: %s." % (identity_file, e.strerror), option="identity_file")
        return text, "identity_file %s" % identity_file
    if environ.get(IDENTITY_ENV):
        return environ[IDENTITY_ENV], "the environment variable %s" % IDENTITY_ENV
    raise LifeboatError(
        "No age identity given: set identity_file (a file made by age-keygen, or an SSH private key), the identity "
        "option, or the environment variable %s." % IDENTITY_ENV,
        option="identity_file",
    )


# A key folder (identity_dir): one identity file per tenant, <tenant>.key (0600), its public key beside it, <tenant>.pub.
IDENTITY_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def tenant_key_paths(identity_dir, tenant):
    """(identity file, public key file) of ``tenant`` in the key folder ``identity_dir``."""
    base = os.path.join(identity_dir, tenant)
    return base + IDENTITY_SUFFIX, base + PUBLIC_SUFFIX


def rotation_identity_files(identity_dir, tenant):
    """The other identity files of ``tenant`` a key folder holds while or after rotate_tenant_key.yml ran: the next
    key of a rotation under way (``.next/<tenant>.key``) and the retired ones (``retired/<tenant>-<stamp>.key``)."""
    found = [os.path.join(identity_dir, ".next", tenant + IDENTITY_SUFFIX)]
    retired = os.path.join(identity_dir, "retired")
    try:
        names = sorted(os.listdir(retired))
    except OSError:
        names = []
    found += [os.path.join(retired, n) for n in names
              if n.startswith(tenant + "-") and n.endswith(IDENTITY_SUFFIX) and n[len(tenant) + 1:-4].isalnum()]
    return [f for f in found if os.path.lexists(f)]


class MissingIdentity(LifeboatError):
    """No identity at all for a tenant: the message names the tenant and the file expected."""


def tenant_identity_sources(tenants, identity=None, identity_file=None, identity_dir=None, environ=None):
    """([(text, where)], [(tenant, expected file)]): the identities that may open the artifacts of ``tenants``.

    Without ``identity_dir``: the one repository-wide identity (``identity_source``). With it: each tenant's own
    file ``<identity_dir>/<tenant>.key`` that exists, plus the repository-wide identity when one is given (for
    the shared parts and globals, and for tenants without a key of their own). The second list names the own
    files that do not exist. Nothing at all for the first tenant: MissingIdentity, naming it and the file.
    """
    if not identity_dir:
        return [identity_source(identity, identity_file, environ)], []
    sources, missing = [], []
    for tenant in tenants:
        path = tenant_key_paths(identity_dir, tenant)[0]
        try:
            with open(path, "r", encoding="utf-8") as f:
                sources.append((f.read(1 << 20), "tenant %s's identity file %s" % (tenant, path)))
        except FileNotFoundError:
            missing.append((tenant, path))
        except OSError as e:
            raise LifeboatError("Cannot read tenant %s's identity file %s: %s. Only this tenant is affected; fix the "
                                "file's owner or mode (0600, readable by the user that runs lifeboat)."
                                % (tenant, path, e.strerror), option="identity_dir")
    try:
        sources.append(identity_source(identity, identity_file, environ))
    except LifeboatError:
        if identity or identity_file or not missing:
            raise  # an unreadable identity_file, or no tenant to look up
        if sources:
            return sources, missing  # the tenants' own files, and no repository-wide identity
        tenant, path = missing[0]
        raise MissingIdentity(
            "No identity for tenant %s: its identity file %s does not exist, and no repository-wide identity "
            "(identity_file, identity or %s) was given. Only this tenant is affected. Put the tenant's identity "
            "there (0600), or give the identity its artifacts are encrypted to." % (tenant, path, IDENTITY_ENV),
            option="identity_dir", details={"tenant": tenant, "expected_file": path})
    return sources, missing


def load_tenant_identities(tenants, identity=None, identity_file=None, identity_dir=None, environ=None):
    """(identities, where, missing) for the artifacts of ``tenants`` (see ``tenant_identity_sources``)."""
    sources, missing = tenant_identity_sources(tenants, identity, identity_file, identity_dir, environ)
    identities = []
    for text, where in sources:
        identities.extend(parse_identities(text, where))
    return identities, " and ".join(where for _text, where in sources), missing


def missing_hint(missing):
    """What an error about a key that does not match adds when a tenant's own identity file is missing."""
    if not missing:
        return ""
    return " No identity file of its own for %s." % "; ".join(
        "tenant %s (expected %s)" % (tenant, path) for tenant, path in missing)


def publics_of(identities):
    """The X25519 public keys of ``identities``, or None when one is an SSH key (only decryption can tell)."""
    out = []
    for ident in identities:
        to_public = getattr(ident, "to_public", None)
        if to_public is None:
            return None
        out.append(str(to_public()))
    return out


# Per-tenant recipients. A tenant's own recipients REPLACE the repository-wide ones for its artifacts by default
# (recipients_mode: replace): they are encrypted to the tenant's keys alone, so destroying those keys erases the
# tenant from every backup (crypto-shredding). recipients_mode: add encrypts to both: a repository-wide identity
# also opens them, which is convenient for a central verifier but makes them impossible to erase that way.
RECIPIENTS_MODES = ("replace", "add")
TENANT_RECIPIENT_KEYS = ("recipients", "recipients_file", "recipients_mode")


def tenant_recipient_params(common, own, where="tenant"):
    """``common``'s recipients and recipients_file for one tenant whose own settings are ``own``.

    Returns the two options to pass to the engine for this tenant (recipients as a list of public keys,
    recipients_file or None): ``common``'s when ``own`` has none, else by ``own``'s recipients_mode.
    """
    mode = own.get("recipients_mode") or "replace"
    if mode not in RECIPIENTS_MODES:
        raise LifeboatError("Invalid %s.recipients_mode %r: replace (the tenant's own recipients only, the default: its "
                            "artifacts can then be erased by destroying its keys) or add (its own and the repository-"
                            "wide ones)." % (where, mode), option="%s.recipients_mode" % where)
    if not own.get("recipients") and not own.get("recipients_file"):
        if own.get("recipients_mode"):
            raise LifeboatError("%s.recipients_mode applies to the tenant's own recipients: give %s.recipients or "
                                "%s.recipients_file too, or remove it." % (where, where, where),
                                option="%s.recipients_mode" % where)
        return {"recipients": common.get("recipients"), "recipients_file": common.get("recipients_file")}
    if mode == "replace":
        return {"recipients": list(own.get("recipients") or []) or None, "recipients_file": own.get("recipients_file")}
    texts = load_recipients(common.get("recipients"), common.get("recipients_file"))[1]
    texts += [t for t in load_recipients(own.get("recipients"), own.get("recipients_file"))[1] if t not in texts]
    return {"recipients": texts, "recipients_file": None}


def load_identities(identity=None, identity_file=None, environ=None):
    """Identities from ``identity``, else ``identity_file``, else BACKUP_PRIVATE_KEY."""
    return parse_identities(*identity_source(identity, identity_file, environ))


def generate_identity():
    """Return (identity text, public key text) for a new X25519 key pair."""
    require_pyrage()
    ident = pyrage.x25519.Identity.generate()
    return str(ident), str(ident.to_public())


def identity_file_text(identity, public):
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "# created: %s\n# public key: %s\n%s\n" % (created, public, identity)


def public_key_of_identity_file(path):
    """The public key(s) of an identity file, from its X25519 identities."""
    require_pyrage()
    with open(path, "r", encoding="utf-8") as f:
        text = f.read(1 << 20)
    return [str(i.to_public()) for i in parse_identities(text, "identity_file %s" % path) if hasattr(i, "to_public")]


def encrypt_stream(reader, writer, recipients, armored=False):
    require_pyrage()
    try:
        pyrage.encrypt_io(reader, writer, recipients, armored=armored)
    except pyrage.EncryptError as e:
        raise LifeboatError("age encryption failed: %s." % e)


def decrypt_stream(reader, writer, identities):
    """Decrypt ``reader`` into ``writer``.

    pyrage writes authenticated chunks as it goes: on a tampered or truncated
    input it raises after having written the chunks before the damage, so the
    caller must treat ``writer``'s content as garbage on error.
    """
    require_pyrage()
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except pyrage.DecryptError as e:
        raise LifeboatError(
            "age decryption failed: %s. The identity does not match any recipient of the artifact "
            "(check identity_file), or the artifact is damaged." % e,
            option="identity_file",
        )
    except OSError as e:
        if getattr(e, "errno", None) is None:
            raise LifeboatError(
                "age decryption failed: %s. The artifact is truncated or was modified after it was "
                "written (age authenticates every chunk); use another artifact." % e
            )
        raise
