# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restores of one tenant (and optionally a server's globals) from artifacts.

A restore happens on the worst day. It either fully succeeds or leaves the
target as it was, and says which:

- a PostgreSQL database tenant is restored into a fresh database with a
  derived name, checked (stored bytes against the manifest's SHA-256 and
  size, pg_restore's messages, row counts), and only then swapped in under
  the target's name in one transaction; the old database stays as the
  safety copy until the swap succeeded;
- a schema tenant is restored in one transaction that is committed only
  after the same checks passed (the commit is held back by a pipe that
  Python closes last);
- a SQLite tenant is restored into a temporary file beside the target,
  checked, and renamed over it.

One code path for check mode: ``plan`` inspects read-only and decides what
would happen; ``run`` acts on the plan unless ``check_mode``.
"""

import json
import os
import time

from . import (argspec, batch, crypto, manifest, naming, postgres, restore_batch, restore_guard, restore_pg, restore_sqlite,
               selection, shared_part)
from .errors import LifeboatError
from .repository import LocalRepository, open_repository, s3_options

# The options of backup_restore and of the agent's restore (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.TENANT,
        argspec.CONNECTION,
        argspec.S3_CONNECTION,  # read-side options only
        argspec.IDENTITY,
        repository=dict(type="str"),
        artifact=dict(type="str", default="latest"),
        target_database=dict(type="str"),
        target_path=dict(type="path"),
        force=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        terminate_connections=dict(type="bool", default=False),
        allow_create_in_dump=dict(type="bool", default=False),
        privileges=dict(type="bool", default=False),
        owners=dict(type="bool", default=False),
        keep_safety_copy=dict(type="bool", default=True),
        replace_target=dict(type="str"),
        source_tenant=dict(type="str"),
        globals_artifact=dict(type="str"),
        globals_host=dict(type="str"),
        tmp_dir=dict(type="path"),
        # many tenants in one call (restore_batch.py): each entry is a single restore's tenant and options
        **batch.SPEC
    ),
    required_one_of=[("tenant", "globals_artifact", "tenants")],
    mutually_exclusive=[("identity", "identity_file"), ("path", "database"), ("path", "schema"),
                        ("target_path", "target_database")]
    + [("tenants", option) for option in restore_batch.OWN + restore_batch.GLOBALS],
)
OPTIONS = SPEC.defaults()


MAX_JOBS = 64
MANIFEST_LIMIT = 4 << 20
_DERIVED = naming.DERIVED_RE  # the form of the names lifeboat derives (naming.refuse_derived_name refuses them)


def _pg_name(value, option):
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\0" in value or len(value.encode("utf-8")) > 63:
        raise LifeboatError(
            "Invalid %s %r: a PostgreSQL name of 1 to 63 bytes without NUL (PostgreSQL would cut a longer "
            "name and could then name another database)." % (option, value),
            option=option,
        )
    return value


class RestoreRequest(object):
    """Validated options; no I/O."""

    def __init__(self, params):
        p = SPEC.resolve(params)
        self.p = p
        self.engine = naming.check_engine(p["engine"])
        self.tenant = p["tenant"]
        if self.tenant is not None:
            naming.validate_tenant(self.tenant)
        self.source_tenant = p["source_tenant"]
        if self.source_tenant is not None:
            naming.validate_tenant(self.source_tenant, "source_tenant")
        self.replace_target = p["replace_target"]
        if self.replace_target is not None and (not isinstance(self.replace_target, str) or not self.replace_target):
            raise LifeboatError("Invalid replace_target %r: the name of the target to replace, given a second time."
                                % (self.replace_target,), option="replace_target")
        self.globals_artifact = p["globals_artifact"] or None
        if self.tenant is None and not self.globals_artifact:
            raise LifeboatError(
                "tenant is required: the tenant to restore (or globals_artifact alone to restore only a "
                "server's roles).",
                option="tenant",
            )
        for flag in ("force", "terminate_connections", "allow_create_in_dump", "privileges", "owners",
                     "keep_safety_copy"):
            if not isinstance(p[flag], bool):
                raise LifeboatError("Invalid %s %r: true or false." % (flag, p[flag]), option=flag)
            setattr(self, flag, p[flag])
        jobs = p["jobs"]
        if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= MAX_JOBS:
            raise LifeboatError(
                "Invalid jobs %r: 1 (stream, no plaintext on disk) to %d (parallel pg_restore from a private "
                "temporary file)." % (jobs, MAX_JOBS),
                option="jobs",
            )
        self.jobs = jobs
        if p["identity"] and p["identity_file"]:
            raise LifeboatError("identity and identity_file are mutually exclusive: give only one.", option="identity")
        self.database = _pg_name(p["database"], "database")
        self.schema = _pg_name(p["schema"], "schema")
        self.target_database = _pg_name(p["target_database"], "target_database")
        naming.refuse_derived_name(self.target_database, "target_database", "Restore into another name.")
        if self.engine == "sqlite":
            for opt in ("database", "schema", "target_database", "globals_artifact", "globals_host"):
                if p[opt]:
                    raise LifeboatError(
                        "%s applies to engine postgresql; a SQLite tenant restores into target_path (or path). "
                        "Remove %s." % (opt, opt),
                        option=opt,
                    )
            for opt in ("allow_create_in_dump", "privileges", "owners", "terminate_connections"):
                if p[opt]:
                    raise LifeboatError("%s applies to engine postgresql, not sqlite; remove it." % opt, option=opt)
            target = p["target_path"] or p["path"]
            if not target:
                raise LifeboatError(
                    "engine sqlite needs target_path (where to restore the SQLite file) or path (the tenant's "
                    "own file, replaced when force: true).",
                    option="target_path",
                )
            self.target_path = os.path.abspath(os.path.expanduser(target))
        else:
            for opt in ("path", "target_path"):
                if p[opt]:
                    raise LifeboatError(
                        "%s applies to engine sqlite; for PostgreSQL use target_database (and schema)." % opt,
                        option=opt,
                    )
            self.target_path = None
        if self.allow_create_in_dump and self.target_database:
            raise LifeboatError(
                "allow_create_in_dump restores into the database name recorded in the archive; remove "
                "target_database, or set allow_create_in_dump: false to restore into target_database.",
                option="allow_create_in_dump",
            )
        self.conn = postgres.Connection.from_params(p)
        self.s3 = s3_options(p, connection_only=True)


# -- artifacts --------------------------------------------------------------------


class Artifact(object):
    """A complete artifact: its manifest exists, is valid and describes it.

    ``path`` is where it is (a local path or an s3:// URL); ``opener`` returns a
    reader of its stored bytes and ``sizer`` their size now.
    """

    def __init__(self, path, info, doc, manifest_path, option, opener, sizer):
        self.path = path
        self.name = os.path.basename(path)
        self._opener = opener
        self._sizer = sizer
        self.info = info
        self.tenant = info["tenant"]
        self.stamp = info["stamp"]
        self.format = info["format"]
        self.compressed = info["compressed"]
        self.encrypted = info["encrypted"]
        self.manifest = doc
        self.manifest_path = manifest_path
        self.option = option
        self.repo = None  # the repository it is in, when known (for the shared part of a schema tenant)
        self.selected_by = None  # latest, latest_verified, or None (named explicitly)
        self.choice = None  # with latest_verified: the verify record that chose it

    @property
    def source(self):
        return self.manifest.get("source") or {}

    def open(self):
        try:
            return self._opener()
        except OSError as e:
            raise LifeboatError("Cannot open the artifact %s: %s." % (self.path, e.strerror), option=self.option)

    def check_stored_size(self):
        """Cheap first check: a truncated or extended file is refused before anything is touched."""
        try:
            size = self._sizer()
        except OSError as e:
            raise LifeboatError("Cannot read the artifact %s: %s." % (self.path, e.strerror), option=self.option)
        expected = self.manifest["size"]["stored"]
        if size != expected:
            raise LifeboatError(
                "The artifact %s is damaged: it holds %d bytes, its manifest says %d (%s). Nothing was changed. "
                "Restore another artifact (set %s to an older one) or copy this one again from its source."
                % (self.path, size, expected, "truncated" if size < expected else "extended", self.option),
                option=self.option,
                details={"size": size, "manifest_size": expected},
            )

    def verify(self, sizes):
        """Compare what pipeline.load read and wrote with the manifest."""
        m = self.manifest
        problems = []
        if sizes["stored"] != m["size"]["stored"]:
            problems.append("%d bytes read, manifest says %d" % (sizes["stored"], m["size"]["stored"]))
        if sizes["sha256"] != m["sha256"]:
            problems.append("SHA-256 %s, manifest says %s" % (sizes["sha256"], m["sha256"]))
        if sizes["raw"] != m["size"]["raw"]:
            problems.append("%d bytes of plaintext, manifest says %d" % (sizes["raw"], m["size"]["raw"]))
        if problems:
            raise LifeboatError(
                "The artifact %s does not match its manifest (%s): it was changed or damaged after the backup. "
                "Restore another artifact (set %s)." % (self.path, "; ".join(problems), self.option),
                option=self.option,
            )

    def describe(self):
        return {
            "artifact": self.path,
            "manifest": self.manifest_path,
            "tenant": self.tenant,
            "stamp": self.stamp,
            "format": self.format,
            "size_stored": self.manifest["size"]["stored"],
            "size_raw": self.manifest["size"]["raw"],
            "sha256": self.manifest["sha256"],
            "source_server_version": self.source.get("server_version"),
            "source_server": self.source.get("server"),
            "source_database": self.source.get("database"),
            "source_schema": self.source.get("schema"),
            "snapshot_at": self.manifest.get("started_at"),
            "finished_at": self.manifest.get("finished_at"),
            "pg_major_needed": selection.needed_pg_major(self.manifest),
        }

    def how_chosen(self):
        """How it was chosen, and when it was verified (latest_verified only)."""
        out = selection.verification_summary(self.choice, self.selected_by)
        out["artifact_name"] = self.name
        return out


def _read_manifest(path, option):
    try:
        with open(path, "rb") as f:
            data = f.read(MANIFEST_LIMIT + 1)
    except OSError as e:
        raise LifeboatError("Cannot read the manifest %s: %s." % (path, e.strerror), option=option)
    if len(data) > MANIFEST_LIMIT:
        raise LifeboatError("The manifest %s is larger than %d bytes: not a lifeboat manifest." % (path, MANIFEST_LIMIT),
                            option=option)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise LifeboatError("The manifest %s is not valid JSON (%s): it is damaged. Restore another artifact."
                            % (path, e), option=option)


def _no_manifest(location, mname, option):
    return LifeboatError(
        "The artifact %s has no manifest (%s): it is incomplete (the backup that wrote it was interrupted, "
        "or the manifest was removed), and lifeboat never restores an incomplete artifact. Nothing was "
        "changed. Restore another artifact (%s: latest picks the newest complete one)." % (location, mname, option),
        option=option,
    )


def _parse_name(name, location, fmt, option):
    info = naming.parse_artifact_name(name)
    if not info:
        raise LifeboatError(
            "%s %s is not the name of a lifeboat artifact (<tenant>-<YYYYMMDDTHHMMSSZ>.<format>[.zst][.age]). "
            "Give the artifact itself, not its manifest." % (option, location),
            option=option,
        )
    if info["format"] != fmt:
        raise LifeboatError(
            "%s %s is a %s artifact; this needs a %s artifact%s." % (
                option, location, info["format"], fmt,
                " (set engine: sqlite for a SQLite backup)" if info["format"] == "sqlite" else ""),
            option="engine" if info["format"] in ("sqlite", "pgdump") and fmt in ("sqlite", "pgdump") else option,
        )
    return info


def _checked(doc, name, info, where, option):
    doc = manifest.validate(doc, where)
    if doc["artifact"] != name or doc["tenant"] != info["tenant"] or doc["format"] != info["format"]:
        raise LifeboatError(
            "%s describes %s (tenant %s), not %s: the files were renamed or mixed up. Restore another artifact."
            % (where, doc["artifact"], doc["tenant"], name),
            option=option,
        )
    if bool(doc["encryption"]) != info["encrypted"] or bool(doc["compression"]) != info["compressed"]:
        raise LifeboatError(
            "%s disagrees with the artifact's name %s about compression or encryption; restore another artifact."
            % (where, name),
            option=option,
        )
    return doc


def _in_repository(repo, tenant, name, fmt, option):
    """An artifact of ``repo`` (a local folder or s3://), read through the repository."""
    location = repo.location(tenant, name)
    info = _parse_name(name, location, fmt, option)
    names = repo.names(tenant)
    if name not in names:
        raise LifeboatError("The artifact %s does not exist (%s). Check the name, or use latest." % (location, option),
                            option=option)
    mname = naming.manifest_name(info["tenant"], info["stamp"])
    if mname not in names:
        raise _no_manifest(location, mname, option)
    mlocation = repo.location(tenant, mname)
    doc = _checked(repo.read_json(tenant, mname), name, info, "The manifest %s" % mlocation, option)

    def sizer():
        return repo.names(tenant).get(name, -1)

    art = Artifact(location, info, doc, mlocation, option, lambda: repo.open_read(tenant, name), sizer)
    art.repo = repo
    return art


def _local_file(path, fmt, option):
    """An artifact given by its path, wherever it was copied to; its manifest must be beside it."""
    name = os.path.basename(path)
    info = _parse_name(name, path, fmt, option)
    if not os.path.isfile(path):
        raise LifeboatError("The artifact %s does not exist (%s). Check the path, or use latest." % (path, option),
                            option=option)
    mpath = os.path.join(os.path.dirname(path), naming.manifest_name(info["tenant"], info["stamp"]))
    if not os.path.exists(mpath):
        raise _no_manifest(path, os.path.basename(mpath), option)
    doc = _checked(_read_manifest(mpath, option), name, info, "The manifest %s" % mpath, option)

    def opener():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return os.fdopen(fd, "rb", buffering=0)

    art = Artifact(path, info, doc, mpath, option, opener, lambda: os.stat(path).st_size)
    folder = os.path.dirname(path)
    if os.path.basename(folder) == info["tenant"]:  # laid out as <repository>/<tenant>/<artifact>
        art.repo = LocalRepository(os.path.dirname(folder), create=False)
    return art


def find_shared_artifact(art):
    """(shared-part Artifact or None, error or None) for a schema tenant's artifact; raised only if needed."""
    if art is None or art.repo is None or not shared_part.is_schema_tenant(art.manifest):
        return None, None
    try:
        found = shared_part.find(art.repo, art.manifest)
        if found is None:
            return None, None
        shared = _in_repository(art.repo, found.tenant, found.name, "pgdump", "artifact")
    except LifeboatError as e:
        return None, e
    shared.check_stored_size()
    shared.selected_by = found.how
    return shared, None


def find_artifact(repository, spec, tenant, fmt, option, s3=None):
    """Resolve ``spec`` to a complete Artifact: ``latest`` (of ``tenant`` in ``repository``), a file
    name in ``repository``, an s3:// URL, or a local path."""
    s3 = s3 or {}
    if spec == selection.LATEST_VERIFIED:
        if not repository:
            raise LifeboatError(
                "%s: latest_verified needs repository (where the backups and their verify records are)." % option,
                option="repository",
            )
        repo = open_repository(repository, create=False, **s3)
        choice = selection.latest_verified(repo, tenant, fmt, option)
        art = _in_repository(repo, tenant, choice["art"]["name"], fmt, option)
        if art.manifest["sha256"] != choice["manifest"]["sha256"]:
            raise LifeboatError(
                "The manifest of %s changed while it was being chosen (a rekey or a copy running now?): its SHA-256 "
                "is no longer the verified one. Nothing was changed. Run again once that is done." % art.path,
                option=option,
            )
        art.selected_by, art.choice = selection.LATEST_VERIFIED, choice
        return art
    if spec in (None, "", "latest"):
        if not repository:
            raise LifeboatError(
                "%s: latest needs repository (where the backups are); or give %s as the path of an artifact."
                % (option, option),
                option="repository",
            )
        repo = open_repository(repository, create=False, **s3)
        latest = repo.latest_complete(tenant, fmt)
        if not latest:
            partial = [a["name"] for a in repo.artifacts(tenant) if a["format"] == fmt]
            if partial:
                raise LifeboatError(
                    "Tenant %s has no complete %s artifact in %s: %s has no manifest (the backup that wrote it "
                    "was interrupted, or its manifest was removed), and lifeboat never restores an incomplete "
                    "artifact. Take a new backup, or find a complete artifact elsewhere and give its path as %s."
                    % (tenant, fmt, repo, partial[-1], option),
                    option=option,
                )
            raise LifeboatError(
                "No %s artifact of tenant %s in the repository %s. Check tenant and repository, or give the "
                "artifact's path as %s." % (fmt, tenant, repo, option),
                option=option,
            )
        art = _in_repository(repo, tenant, latest["name"], fmt, option)
        art.selected_by = selection.LATEST
        return art
    if not isinstance(spec, str) or "\0" in spec:
        raise LifeboatError("Invalid %s %r: give latest, latest_verified or the path of an artifact." % (option, spec),
                            option=option)
    if spec.startswith("s3://"):
        head, _sep, name = spec.rpartition("/")
        root, _sep, tenant_dir = head.rpartition("/")
        info = _parse_name(name, spec, fmt, option)
        if tenant_dir != info["tenant"] or not root.startswith("s3://"):
            raise LifeboatError("%s %s is not laid out as s3://bucket/prefix/<tenant>/<artifact>." % (option, spec),
                                option=option)
        return _in_repository(open_repository(root, create=False, **s3), info["tenant"], name, fmt, option)
    if "/" not in spec and repository:
        info = _parse_name(spec, spec, fmt, option)
        return _in_repository(open_repository(repository, create=False, **s3), info["tenant"], spec, fmt, option)
    if "://" in spec:
        raise LifeboatError("Invalid %s %r: give latest, latest_verified, a path, or an s3:// URL." % (option, spec),
                            option=option)
    return _local_file(os.path.abspath(os.path.expanduser(spec)), fmt, option)


def find_globals_artifact(req):
    spec = req.globals_artifact
    if spec in selection.SELECTORS:
        if not req.p["repository"]:
            raise LifeboatError("globals_artifact: %s needs repository." % spec, option="repository")
        repo = open_repository(req.p["repository"], create=False, **req.s3)
        if req.p["globals_host"]:
            tenant = naming.globals_tenant(req.p["globals_host"])
        else:
            found = [t for t in repo.tenants() if naming.is_globals_tenant(t)]
            if not found:
                raise LifeboatError(
                    "The repository %s holds no globals artifact (pg_backup with globals: true writes one). "
                    "Remove globals_artifact, or give the path of one." % repo,
                    option="globals_artifact",
                )
            if len(found) > 1:
                raise LifeboatError(
                    "The repository %s holds globals of several servers (%s): set globals_host to the server "
                    "whose roles to restore, or give globals_artifact as a path." % (repo, ", ".join(found)),
                    option="globals_host",
                )
            tenant = found[0]
        return find_artifact(req.p["repository"], spec, tenant, "globals", "globals_artifact", req.s3)
    return find_artifact(req.p["repository"], spec, None, "globals", "globals_artifact", req.s3)


def _identity_option(req):
    if req.p["identity"]:
        return "identity"
    if req.p["identity_file"]:
        return "identity_file"
    return "identity_file"


def load_identities(req, artifacts):
    """Identities, when an artifact is encrypted; checked against the manifests' recipients.

    With identity_dir, each artifact's tenant's own file there (crypto.tenant_identity_sources) joins the
    repository-wide identity: a schema tenant's own key and the shared part's, for example.
    """
    encrypted = [a for a in artifacts if a is not None and a.encrypted]
    if not encrypted:
        return None
    tenants = list(dict.fromkeys(a.tenant for a in encrypted))
    identities, where, missing = crypto.load_tenant_identities(tenants, req.p["identity"], req.p["identity_file"],
                                                               req.p["identity_dir"])
    publics = crypto.publics_of(identities)
    if publics is None:  # an SSH identity: only decryption can tell
        return identities
    for art in encrypted:
        recipients = (art.manifest.get("encryption") or {}).get("recipients") or []
        if recipients and not set(publics) & set(recipients):
            raise LifeboatError(
                "Wrong key: the identity from %s (public key %s) is not one of the recipients the artifact %s "
                "was encrypted to (%s).%s Nothing was changed. Give the private key of one of those recipients."
                % (where, ", ".join(publics), art.path, ", ".join(recipients), crypto.missing_hint(
                    [m for m in missing if m[0] == art.tenant])),
                option="identity_dir" if req.p["identity_dir"] else _identity_option(req),
            )
    return identities


# -- running ------------------------------------------------------------------------


def _entry_artifact(single):
    """The artifact an entry of ``tenants`` names (restore_batch reads its manifest for the entry's database)."""
    req = RestoreRequest(single)
    return find_artifact(req.p["repository"], req.p["artifact"], req.tenant, "pgdump", "artifact", req.s3)


def run(params, check_mode=False, progress=None):
    """Restore as ``params`` say. Returns a secret-free result dict."""
    if params.get("tenants") is not None:  # a list of tenants: one single restore per entry (restore_batch.py)
        return restore_batch.run(run, RestoreRequest, _entry_artifact, params, check_mode)
    t0 = time.monotonic()
    req = RestoreRequest(params)
    art = None
    if req.tenant is not None:
        fmt = "sqlite" if req.engine == "sqlite" else "pgdump"
        art = find_artifact(req.p["repository"], req.p["artifact"], req.tenant, fmt, "artifact", req.s3)
        art.check_stored_size()
    gart = find_globals_artifact(req) if req.globals_artifact else None
    globals_note = None
    if gart is not None and art is not None:
        gart, globals_note = restore_guard.globals_of_server(
            req, art, gart, lambda repo, tenant, name: _in_repository(repo, tenant, name, "globals", "globals_artifact"))
    if gart is not None:
        gart.check_stored_size()
    restore_guard.check_tenant(req, art)
    owners = restore_guard.Owners(art.repo if art is not None else None)
    shared = find_shared_artifact(art) if req.engine != "sqlite" else (None, None)
    identities = load_identities(req, [art, gart, shared[0]])
    result = {
        "changed": False,
        "check_mode": bool(check_mode),
        "tenant": req.tenant,
        "engine": req.engine,
        "artifact": art.path if art else None,
        "manifest": art.manifest_path if art else None,
        "artifact_info": art.describe() if art else None,
        "selection": art.how_chosen() if art else None,
        "verified_at": (art.choice or {}).get("verified_at") if art else None,
        "source_server_version": art.source.get("server_version") if art else None,
        "snapshot_at": art.manifest.get("started_at") if art else None,
        "jobs": req.jobs,
        "globals": None,
        "warnings": [],
    }
    older = _older_than_newest(art)
    if older:
        result["warnings"].append(older)
    if globals_note:
        result["warnings"].append(globals_note)
    if art is not None and naming.in_future(art.stamp):
        result["warnings"].append(
            "%s is stamped in the future (%s, now %s): the clock of the host that wrote it, or of this one, is "
            "wrong, and it may not be the newest backup. Check the clocks (timedatectl), and name the artifact you "
            "mean (artifact: ...) if this is not it." % (art.name, art.stamp, naming.format_stamp(naming.utcnow())))
    if req.engine == "sqlite":
        plan = restore_sqlite.plan(req, art, owners)
        result.update(plan.describe())
        if check_mode:
            result["changed"] = True
            result["msg"] = plan.summary_check()
            return _finish(result, t0)
        outcome = restore_sqlite.apply(req, art, identities, plan, progress)
        result.update(outcome)
        if req.jobs > 1:
            result["warnings"].append("jobs: %d was not used: a SQLite file is restored as one file." % req.jobs)
        result["changed"] = True
        result["msg"] = plan.summary_done(outcome, result["seconds_restore"])
        return _finish(result, t0)

    server = restore_pg.Server(req)
    try:
        gplan = restore_pg.plan_globals(server, gart, identities) if gart else None
        tplan = restore_pg.plan_tenant(server, req, art, shared, owners) if art else None
        if gplan:
            result["globals"] = gplan.describe()
        if tplan:
            result.update(tplan.describe())
        if check_mode:
            result["changed"] = bool(tplan) or bool(gplan and gplan.created)
            parts = []
            if gplan:
                parts.append(gplan.summary_check())
            if tplan:
                parts.append(tplan.summary_check())
            result["msg"] = "Check mode, nothing changed: " + " ".join(parts)
            return _finish(result, t0)
        if gplan:
            result["globals"] = restore_pg.apply_globals(server, gplan)
            result["changed"] = result["changed"] or bool(gplan.created)
        if tplan:
            try:
                outcome = tplan.apply(server, req, art, identities, progress)
            except LifeboatError as e:
                if gplan and gplan.created:
                    e.msg = "%s (The globals were restored before: roles created: %s; they stay.)" % (
                        e.msg, ", ".join(gplan.created))
                raise
            result.update(outcome)
            result["changed"] = True
        result["warnings"].extend(server.warnings)
        parts = []
        if gplan:
            parts.append(gplan.summary_done())
        if tplan:
            parts.append(tplan.summary_done(result))
        result["msg"] = " ".join(parts)
    finally:
        server.close()
    return _finish(result, t0)


def _older_than_newest(art):
    """A warning when a named artifact is older than the tenant's newest complete one (an older one over newer data)."""
    if art is None or art.repo is None or art.selected_by is not None:
        return None
    try:
        newest = art.repo.latest_complete(art.tenant, art.format)
    except (LifeboatError, OSError):
        return None
    if not newest or newest["stamp"] <= art.stamp:
        return None
    return ("%s is older than the newest complete artifact of tenant %s, %s: the data written between the two is "
            "not in it. If that is not what you meant, restore artifact: latest (what this restore replaces is kept "
            "unless keep_safety_copy is false)." % (art.name, art.tenant, newest["name"]))


def _finish(result, t0):
    result["seconds"] = round(time.monotonic() - t0, 3)
    target = result.get("target") or {}
    result["target_database"] = target.get("database")
    result["target_path"] = target.get("path")
    counts = result.get("row_counts")
    if counts is not None:
        result["tables"] = len(counts)
        result["rows"] = sum(counts.values())
    info = result.get("artifact_info")
    if info and not result["check_mode"] and result.get("seconds_restore"):
        result["mb_per_s"] = round(info["size_raw"] / 1e6 / result["seconds_restore"], 2)
    return result
