# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State ``keypair``: an age identity file, created 0600 when missing, never replaced."""

import os
import stat

from .. import crypto
from ..errors import LifeboatError
from .records import AtomicFile, ensure_parent


def keypair(req, check_mode):
    req.need("identity_file")
    path = os.path.abspath(os.path.expanduser(req.p["identity_file"]))
    for opt in ("recipients", "recipients_file", "passphrase", "identity", "src", "dest"):
        if req.p[opt]:
            raise LifeboatError("%s does not apply to state keypair (it only takes identity_file)." % opt, option=opt)
    result = {"identity_file": path, "public_key": None, "warnings": []}
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
    result.update(public_key=public, public_keys=[public],
                  msg="Created identity_file %s (0600); its public key is %s" % (path, public))
    return result
