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


def parse_identities(text, where):
    """Parse identities (age X25519 lines or one SSH private key) from text."""
    require_pyrage()
    if "-----BEGIN" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text.encode("utf-8"))]
        except Exception as e:
            raise LifeboatError(
                "The SSH private key in %s could not be used as an age identity (%s). Encrypted "
                "SSH keys are not supported: give an unencrypted ed25519 or RSA key." % (where, e),
                option="identity",
            )
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
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
