# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State ``keypair``: age identity files, created 0600 when missing, never replaced.

One file (``identity_file``), or one per tenant in a key folder (``identity_dir`` with ``tenants``):
``<identity_dir>/<tenant>.key`` (0600) and its public key beside it, ``<tenant>.pub``, in a folder
made 0700 (crypto.tenant_key_paths). Key folders belong on the controller or a verifier, never on
database hosts, which hold public keys only.
"""

import os
import stat

from .. import crypto, naming
from ..errors import LifeboatError
from .records import AtomicFile, ensure_parent

OTHER_OPTIONS = ("recipients", "recipients_file", "passphrase", "identity", "src", "dest")


def keypair(req, check_mode):
    for opt in OTHER_OPTIONS:
        if req.p[opt]:
            raise LifeboatError("%s does not apply to state keypair (it takes identity_file, or identity_dir with "
                                "tenants)." % opt, option=opt)
    if req.p["identity_dir"] or req.p["tenants"]:
        return _tenant_keypairs(req, check_mode)
    req.need("identity_file")
    path = os.path.abspath(os.path.expanduser(req.p["identity_file"]))
    result = _one(path, None, check_mode)
    result.update(identity_file=path, warnings=result.pop("warnings"))
    return result


def _one(path, public_path, check_mode):
    """One identity file (and its public key file): created when missing, else read."""
    result = {"public_key": None, "warnings": []}
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise LifeboatError("identity_file %s exists and is not a regular file; refusing to touch it." % path,
                                option="identity_file")
        try:
            keys = crypto.public_key_of_identity_file(path)
        except OSError as e:
            raise LifeboatError("Cannot read identity_file %s: %s." % (path, e.strerror), option="identity_file")
        if not keys:
            raise LifeboatError("identity_file %s holds no age X25519 identity (an SSH key?); state keypair manages "
                                "age identity files only. Choose another path." % path, option="identity_file")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            result["warnings"].append("identity_file %s has mode %04o: other users may read the private key; "
                                      "chmod 0600 it." % (path, mode))
        result.update(changed=False, public_key=keys[0], public_keys=keys,
                      msg="identity_file %s exists; its public key is %s" % (path, keys[0]),
                      diff={"before": {"identity_file": "present"}, "after": {"identity_file": "present"}})
        if public_path is not None and _public_text(public_path) != keys[0]:
            result["changed"] = True  # the public key file beside it is missing or stale: (re)written
            if not check_mode:
                _write_public(public_path, keys[0])
        return result
    result.update(changed=True, diff={"before": {"identity_file": "absent"}, "after": {"identity_file": "present"}})
    if check_mode:
        result["msg"] = "Check mode: would create identity_file %s (0600)." % path
        return result
    ensure_parent(path, False)
    ident, public = crypto.generate_identity()
    try:
        with AtomicFile(path, 0o600) as f:
            f.write(crypto.identity_file_text(ident, public).encode("utf-8"))
            f.commit(replace=False)
    finally:
        ident = None
    if public_path is not None:
        _write_public(public_path, public)
    result.update(public_key=public, public_keys=[public],
                  msg="Created identity_file %s (0600); its public key is %s" % (path, public))
    return result


def _public_text(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read(4096).strip()
    except OSError:
        return None


def _write_public(path, public):
    with AtomicFile(path, 0o644) as f:
        f.write((public + "\n").encode("utf-8"))
        f.commit(replace=True)


def _tenant_keypairs(req, check_mode):
    """One key pair per tenant of ``tenants`` in the key folder ``identity_dir`` (made 0700); existing ones kept."""
    req.need("identity_dir", "tenants")
    if req.p["identity_file"]:
        raise LifeboatError("identity_file and identity_dir do not go together for state keypair: identity_file makes "
                            "one key, identity_dir one per tenant of tenants.", option="identity_file")
    tenants = req.p["tenants"]
    if not isinstance(tenants, list) or not tenants:
        raise LifeboatError("tenants must be a non-empty list of tenant names for state keypair with identity_dir.",
                            option="tenants")
    for i, tenant in enumerate(tenants):
        naming.validate_repo_tenant(tenant, option="tenants[%d]" % i)
    folder = os.path.abspath(os.path.expanduser(req.p["identity_dir"]))
    created_dir = False
    if os.path.lexists(folder):
        if os.path.islink(folder) or not os.path.isdir(folder):
            raise LifeboatError("identity_dir %s is not a folder (or is a symbolic link); refusing to write keys "
                                "there." % folder, option="identity_dir")
    else:
        created_dir = True
        if not check_mode:
            os.makedirs(folder, 0o700)
    warnings = []
    if not created_dir and stat.S_IMODE(os.stat(folder).st_mode) & 0o077:
        warnings.append("identity_dir %s has mode %04o: other users may list or read the private keys; chmod 0700 "
                        "it." % (folder, stat.S_IMODE(os.stat(folder).st_mode)))
    keys = {}
    for tenant in dict.fromkeys(tenants):
        path, public_path = crypto.tenant_key_paths(folder, tenant)
        one = _one(path, public_path, check_mode)
        warnings.extend(one["warnings"])
        keys[tenant] = {"identity_file": path, "public_key_file": public_path, "public_key": one["public_key"],
                        "changed": one["changed"]}
    made = [t for t, k in keys.items() if k["changed"]]
    verb = "would create or complete" if check_mode else "created or completed"
    msg = "%d tenant key pair(s) in %s: %s %d (%s), %d already there (kept)." % (
        len(keys), folder, verb, len(made), ", ".join(made) or "none", len(keys) - len(made))
    return {"changed": bool(made) or created_dir, "identity_dir": folder, "keys": keys, "warnings": warnings,
            "public_keys": dict((t, k["public_key"]) for t, k in keys.items()),
            "msg": msg + " Keep this folder on the controller or a verifier, never on database hosts: they need the "
                         "public keys (the .pub files) only.",
            "diff": {"before": {"keys": sorted(t for t in keys if t not in made)}, "after": {"keys": sorted(keys)}}}
