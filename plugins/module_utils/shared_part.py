# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared part of a database that holds schema tenants: which artifact, and is it there.

A schema tenant's manifest (written by a pass, see ``backup_pass``) names the shared
artifact it was taken with (``shared``) and what of the shared part it uses
(``depends_on``: extensions and objects). Verification restores that shared artifact
into its scratch database first; a restore does so when the target database lacks
the shared part. Manifests written before the shared part existed name none: the
newest ``_shared_<database>`` artifact taken at or before the tenant's is used then,
if the repository has one.
"""

import json

from . import manifest as manifest_mod
from . import naming
from .errors import LifeboatError


class SharedArtifact(object):
    """A complete shared-part artifact in a repository: ``tenant``, ``art`` (listing entry), ``doc`` (manifest)."""

    def __init__(self, tenant, art, doc, how):
        self.tenant = tenant
        self.art = art
        self.doc = doc
        self.how = how  # why this one: named by the manifest, or the newest at or before the tenant's

    @property
    def name(self):
        return self.art["name"]

    @property
    def compressed(self):
        return self.doc["compression"] is not None

    @property
    def encrypted(self):
        return self.doc["encryption"] is not None


def is_schema_tenant(doc):
    return bool(doc and doc.get("engine") == "postgresql" and doc.get("format") == "pgdump"
                and (doc.get("source") or {}).get("schema"))


def find(repo, doc):
    """The shared artifact for the schema tenant whose manifest is ``doc``, or None if there is none.

    Raises when the manifest names one that is gone or was replaced: restoring against another
    shared part than the one the tenant was taken with must be a decision, not an accident.
    """
    ref = doc.get("shared")
    source = doc.get("source") or {}
    if ref:
        tenant = ref.get("tenant")
        naming.validate_repo_tenant(tenant, option="artifact")
        found = [a for a in repo.artifacts(tenant) if a["name"] == ref.get("artifact")]
        if not found or not found[0]["complete"]:
            raise LifeboatError(
                "The manifest of %s names the shared part %s (the extensions, shared tables and types of database "
                "%r it was taken with), which is %s in %s. Restore a newer artifact of the tenant, or restore into a "
                "database that already has the shared part." % (
                    doc.get("artifact"), ref.get("artifact"), source.get("database"),
                    "incomplete (no manifest)" if found else "not", repo), option="artifact")
        art = found[0]
        sdoc = manifest_mod.validate(repo.read_json(tenant, art["manifest"]), art["manifest"])
        if ref.get("sha256") and sdoc["sha256"] != ref["sha256"]:
            raise LifeboatError(
                "The shared part %s in %s is not the one the manifest of %s names (SHA-256 %s, expected %s): it was "
                "replaced. Restore another artifact of the tenant." % (
                    art["name"], repo, doc.get("artifact"), sdoc["sha256"][:16], ref["sha256"][:16]), option="artifact")
        return SharedArtifact(tenant, art, sdoc, "named by the tenant's manifest")
    database = source.get("database")
    if not database:
        return None
    tenant = naming.shared_tenant(database)
    complete = [a for a in repo.artifacts(tenant) if a["complete"] and a["format"] == "pgdump"]
    if not complete:
        return None
    before = [a for a in complete if a["stamp"] <= doc.get("stamp", "")]
    art = (before or complete)[-1]
    sdoc = manifest_mod.validate(repo.read_json(tenant, art["manifest"]), art["manifest"])
    return SharedArtifact(tenant, art, sdoc, "the newest shared part taken at or before the tenant's artifact"
                          if before else "the oldest shared part (none was taken before the tenant's artifact)")


_MISSING = """
SELECT x.kind, x.name
  FROM jsonb_to_recordset(%(wanted)s::jsonb) AS x(kind text, name text)
 WHERE CASE x.kind
         WHEN 'extension' THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = x.name)
         WHEN 'table' THEN to_regclass(x.name) IS NULL
         WHEN 'view' THEN to_regclass(x.name) IS NULL
         WHEN 'materialized view' THEN to_regclass(x.name) IS NULL
         WHEN 'foreign table' THEN to_regclass(x.name) IS NULL
         WHEN 'sequence' THEN to_regclass(x.name) IS NULL
         WHEN 'index' THEN to_regclass(x.name) IS NULL
         WHEN 'type' THEN to_regtype(x.name) IS NULL
         WHEN 'domain' THEN to_regtype(x.name) IS NULL
         WHEN 'function' THEN to_regprocedure(x.name) IS NULL
         ELSE false
       END
"""


def wanted_items(depends_on):
    """The ``depends_on`` record as [{"kind", "name"}] for ``missing``."""
    items = [{"kind": "extension", "name": e} for e in (depends_on or {}).get("extensions") or []]
    items += [{"kind": o.get("type"), "name": o.get("identity")} for o in (depends_on or {}).get("objects") or []
              if isinstance(o, dict)]
    return items


def missing(conn, depends_on):
    """What of ``depends_on`` the database of ``conn`` lacks: ["extension citext", "table public.plans", ...]."""
    items = wanted_items(depends_on)
    if not items:
        return []
    return ["%s %s" % (kind, name) for kind, name in conn.execute(_MISSING, {"wanted": json.dumps(items)}).fetchall()]
