# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The age recipients to encrypt to: lifeboat.backup.repository.recipients
    RECIPIENTS = r"""
options:
  recipients:
    description:
      - age recipients (public keys) to encrypt to, X25519 (C(age1...)) or SSH (C(ssh-ed25519 ...), C(ssh-rsa ...)).
      - Any one of the matching identities can decrypt. Hosts that back up need public keys only.
    type: list
    elements: str
  recipients_file:
    description:
      - A file of recipients, one per line, C(#) comments allowed, as C(age -R) reads it.
    type: path
"""

    # The repository of the modules that write artifacts (argspec.REPOSITORY, with the recipients above):
    # lifeboat.backup.repository
    DOCUMENTATION = r"""
options:
  repository:
    description:
      - Where artifacts live, as C(<repository>/<tenant>/<tenant>-<YYYYMMDDTHHMMSSZ>.<format>[.zst][.age])
        beside a C(.manifest.json) written last.
      - A local folder (created 0700 when missing), or C(s3://bucket/prefix) with the S3 options.
    type: str
    required: true
"""
