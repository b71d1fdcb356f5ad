# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore may replace: the tenant's own target, and nothing that is not the tenant's.

``force`` replaces the tenant's own target only: the database, schema or SQLite file the
tenant is configured with (``database``/``schema``/``path``, the database defaulting to the
tenant's name) or that the artifact's manifest names as its source. Any other existing,
non-empty target needs its name a second time in ``replace_target``, so that one typo at
3 a.m. cannot replace it. Never replaced, whatever the options: ``postgres``, templates,
and a target that holds another tenant's data (it is named as the source of another
tenant's newest artifact in the same repository). The restore of another tenant's
artifact into a tenant needs ``source_tenant`` (a tenant move).
"""

import os

from . import naming, selection
from .errors import LifeboatError

MAINTENANCE = ("postgres", "template0", "template1")


def check_tenant(req, art):
    """Refuse another tenant's artifact unless ``source_tenant`` names it (a tenant move)."""
    if art is None:
        return
    if req.source_tenant and req.source_tenant != art.tenant:
        raise LifeboatError(
            "source_tenant is %r, but the artifact %s is of tenant %s. Nothing was changed. Remove source_tenant (it "
            "is only for restoring one tenant's artifact as another) or fix it." % (
                req.source_tenant, art.name, art.tenant), option="source_tenant")
    if req.tenant is None or art.tenant == req.tenant or req.source_tenant == art.tenant:
        return
    raise LifeboatError(
        "The artifact %s is a backup of tenant %s, not of tenant %s. Nothing was changed. Restoring it would put %s's "
        "data where %s's application expects its own. Give an artifact of %s (or artifact: latest), or, to move %s's "
        "data into %s on purpose, add source_tenant: %s." % (
            art.name, art.tenant, req.tenant, art.tenant, req.tenant, req.tenant, art.tenant, req.tenant, art.tenant),
        option="artifact")


class Owners(object):
    """Which databases, schemas and files the tenants of a repository were backed up from.

    Read from the newest complete manifest of each tenant (pseudo-tenants aside), only when a
    restore is about to replace something that exists.
    """

    def __init__(self, repo):
        self.repo = repo
        self._sources = None

    def sources(self):
        if self._sources is None:
            self._sources = []
            if self.repo is not None:
                for tenant in self.repo.tenants():
                    if naming.is_pseudo_tenant(tenant):
                        continue
                    latest = self.repo.latest_complete(tenant)
                    if not latest:
                        continue
                    try:
                        doc = self.repo.read_json(tenant, latest["manifest"]) or {}
                    except (LifeboatError, OSError, ValueError):
                        continue
                    source = doc.get("source") or {}
                    self._sources.append((tenant, source.get("database"), source.get("schema"), source.get("path")))
        return self._sources

    def of_database(self, database, tenant):
        """Other tenants whose data lives in ``database``: ["acme (schema acme)", "globex (database)"]."""
        out = []
        for other, db, schema, _path in self.sources():
            if other != tenant and db == database:
                out.append("%s (%s)" % (other, "schema %s" % schema if schema else "the whole database"))
        return out

    def of_schema(self, database, schema, tenant):
        return [other for other, db, sch, _p in self.sources() if other != tenant and db == database and sch == schema]

    def of_path(self, path, tenant):
        real = os.path.realpath(path)
        return [other for other, _d, _s, p in self.sources()
                if other != tenant and p and os.path.realpath(p) == real]


def own_databases(req, art):
    """The databases that are the tenant's own: configured (database, else the tenant's name) and recorded."""
    own = set()
    if req.database:
        own.add(req.database)
    elif req.tenant:
        own.add(req.tenant)
    source = (art.manifest.get("source") or {}) if art is not None else {}
    if source.get("database") and (art.tenant == req.tenant or req.tenant is None):
        own.add(source["database"])
    return own


def check_database(req, art, target, existing, nonempty, owners, schema=None):
    """Raise unless ``target`` (a database, or ``schema`` in it) may be replaced or restored into."""
    if target in MAINTENANCE:
        own = sorted(own_databases(req, art)) or [req.tenant]
        raise LifeboatError(
            "The target database %r is PostgreSQL's own (the maintenance database or a template); lifeboat never "
            "restores a tenant into it, whatever the options. Nothing was changed. Give the tenant's database as "
            "target_database (or leave it unset: %r)." % (target, own[0]), option="target_database")
    if not existing:
        return
    others = owners.of_schema(target, schema, req.tenant) if schema else owners.of_database(target, req.tenant)
    if others and (schema or nonempty):
        what = ("schema %r in database %r" % (schema, target)) if schema else ("database %r" % target)
        raise LifeboatError(
            "The target %s holds data of other tenants: %s (their backups in %s name it as their source). lifeboat "
            "never replaces another tenant's data, whatever the options. Nothing was changed. Restore into a new "
            "target_database (for example %s_restored) and move what you need from there."
            % (what, ", ".join(others) if not schema else ", ".join(others), owners.repo, req.tenant),
            option="target_database")
    if not nonempty or target in own_databases(req, art):
        return
    if req.replace_target == target:
        return
    own = sorted(own_databases(req, art))
    raise LifeboatError(
        "The target %s is not tenant %s's own (%s), and it is not empty. Nothing was changed. force "
        "replaces only the tenant's own %s; to replace %r on purpose, name it a second time: %sreplace_target: %s. "
        "Or restore into a new target_database." % (
            "schema %r in database %r" % (schema, target) if schema else "database %r" % target,
            req.tenant, "its database is %s" % " or ".join(repr(d) for d in own) if own else "no database is "
            "configured for it", "schema" if schema else "database", target,
            "" if req.force else "force: true and ", target),
        option="replace_target")


def check_path(req, art, target, existing, nonempty, owners):
    """The same for a SQLite file."""
    if not existing:
        return
    others = owners.of_path(target, req.tenant)
    if others:
        raise LifeboatError(
            "The target file %s is the SQLite file of other tenants: %s (their backups in %s name it as their "
            "source). lifeboat never replaces another tenant's data, whatever the options. Nothing was changed. "
            "Restore into a new target_path." % (target, ", ".join(others), owners.repo), option="target_path")
    if not nonempty:
        return
    own = set()
    if req.p.get("path"):
        own.add(os.path.realpath(os.path.abspath(os.path.expanduser(req.p["path"]))))
    source = (art.manifest.get("source") or {}) if art is not None else {}
    if source.get("path") and art.tenant == req.tenant:
        own.add(os.path.realpath(source["path"]))
    if os.path.realpath(target) in own:
        return
    if req.replace_target and os.path.realpath(os.path.abspath(os.path.expanduser(req.replace_target))) == \
            os.path.realpath(target):
        return
    raise LifeboatError(
        "The target file %s is not tenant %s's own SQLite file (%s), and it is not empty. Nothing was changed. force "
        "replaces only the tenant's own file; to replace %s on purpose, name it a second time: %sreplace_target: %s. "
        "Or restore into a new target_path." % (
            target, req.tenant, "its file is %s" % " or ".join(sorted(own)) if own else "no path is configured for it",
            target, "" if req.force else "force: true and ", target), option="replace_target")


# -- globals of the tenant's own server -----------------------------------------------------------

def server_of(manifest):
    """The system identifier of the server an artifact was taken on (None: not recorded)."""
    return ((manifest or {}).get("source") or {}).get("system_identifier")


def globals_of_server(req, art, gart, open_artifact):
    """The globals artifact to restore beside ``art``: ``gart``, or the newest of the tenant's own server.

    Two servers that answer to the same host name and port (pods of one StatefulSet, a host
    rebuilt under its old name) write the same ``_globals_<host>``; its newest artifact may hold
    the other server's roles. With ``globals_artifact: latest`` (or ``latest_verified``) the
    newest artifact taken on the server of the tenant's artifact is chosen; there is none, it
    is refused. A globals artifact named explicitly is restored, with a warning. Returns
    ``(artifact, note or None)``; ``open_artifact(repo, tenant, name)`` opens one by name.
    """
    want, got = server_of(art.manifest), server_of(gart.manifest)
    if want is None or got is None or want == got:
        return gart, None
    if req.globals_artifact not in selection.SELECTORS:
        return gart, ("The globals artifact %s was taken on another server (system identifier %s) than the tenant's "
                      "artifact %s (%s): you named it, so it is restored; check that these are the roles you want."
                      % (gart.name, got, art.name, want))
    judged = selection.candidates(gart.repo, gart.tenant, "globals", stop_at_first=False)
    for j in judged:
        if req.globals_artifact == selection.LATEST_VERIFIED and not j["verified"]:
            continue
        doc = j["doc"]
        if doc is None:
            doc, _problem = selection.read_manifest(gart.repo, gart.tenant, j["art"])
        if server_of(doc) == want:
            chosen = open_artifact(gart.repo, gart.tenant, j["art"]["name"])
            chosen.selected_by = req.globals_artifact
            return chosen, ("The newest globals artifact %s was taken on another server (system identifier %s) "
                            "that writes to the same %s; %s, the newest of the tenant's own server (%s), is "
                            "restored instead." % (gart.name, got, gart.tenant, chosen.name, want))
    raise LifeboatError(
        "The globals under %s were taken on other servers (newest: %s, system identifier %s), none on the server of "
        "the tenant's artifact %s (system identifier %s): two servers with the same host name and port write to "
        "this repository. Nothing was changed. Restore without globals_artifact, or name the globals artifact you "
        "mean (globals_artifact: <file name>)." % (gart.tenant, gart.name, got, art.name, want),
        option="globals_artifact")
