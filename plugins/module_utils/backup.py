# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of one tenant (and optionally the server's globals).

One code path for check mode and real runs: ``plan()`` validates everything
and decides what would be written; ``run()`` does it unless ``check_mode``.
An artifact is written under a temporary name, fsynced and published; the
manifest is written last. Any failure leaves neither under its final name.
"""

import os
import shutil
import tempfile
import threading
import time

from . import argspec, batch, crypto, large_objects, manifest, naming, pipeline, policy_roles, postgres, schema_pass
from . import erasure, sqlite as sqlite_engine
from .errors import LifeboatError
from .repository import describe_os_error, open_repository, s3_options, unique_stamp
from .tools import Tool

BACKUP_APP = "lifeboat-backup"  # application_name of the snapshot's connection; pg_dump's adds "-pg_dump"
# The options of one call that ``tenants`` replaces (each entry names its own; backup_batch.py)
LIST_REPLACES = ("tenant", "database", "schema", "path", "schemas", "globals")

# The options of pg_backup and of the agent's backup (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.TENANT,
        argspec.CONNECTION,
        argspec.REPOSITORY,
        argspec.S3,
        allow_unencrypted=dict(type="bool", default=False),
        compression=dict(type="str", default="zstd", choices=["zstd", "none"]),
        compression_level=dict(type="int", default=1),
        compression_threads=dict(type="int", default=0),
        globals=dict(type="bool", default=False),
        role_passwords=dict(type="bool", default=True),
        skip_if_newer_than=dict(type="str"),
        lock_timeout=dict(type="int", default=0),
        tmp_dir=dict(type="path"),
        # The schema tenants of one database in one pass (backup_pass.py), and its shared part
        schemas=dict(type="list", elements="raw"),
        shared=dict(type="bool"),
        shared_exclude=dict(type="list", elements="str"),
        # Many tenants in one call (backup_batch.py), each entry with its own tenant, database, schema or path
        **batch.SPEC
    ),
    required_if=[("engine", "sqlite", ("path",))],
    mutually_exclusive=[("path", "database"), ("path", "schema")] + [("tenants", name) for name in LIST_REPLACES],
)
OPTIONS = SPEC.defaults()


class Job(object):
    """One artifact to write: the tenant's data, a database's shared part, or the server's globals.

    ``store(writer)`` -> (sizes, row counts, source) writes the artifact's bytes when the
    job does not use the default for its format; ``extra`` goes into its manifest.
    """

    def __init__(self, tenant, engine, fmt, label, store=None, extra=None):
        self.tenant = tenant
        self.engine = engine
        self.format = fmt
        self.label = label
        self.store = store
        self.extra = extra


class BackupRequest(object):
    def __init__(self, params):
        p = SPEC.resolve(params)
        self.p = p
        self.engine = naming.check_engine(p["engine"])
        self.tenant = p["tenant"]
        self.globals = bool(p["globals"])
        self.members = None
        if p["schemas"] is not None:
            self._pass_options(p)
        elif p["shared"] or p["shared_exclude"]:
            raise LifeboatError(
                "shared and shared_exclude apply to a pass over the schema tenants of a database: give schemas "
                "(every tenant schema of the database), so that the shared part leaves all of them out.",
                option="shared" if p["shared"] else "shared_exclude")
        if self.tenant is None and not self.globals and self.members is None:
            raise LifeboatError("tenant is required (or globals: true alone to back up only the server's globals).",
                                option="tenant")
        if self.tenant is not None:
            naming.validate_tenant(self.tenant)
        self.path, self.database, self.schema = naming.tenant_target(p, self.tenant)
        if self.engine == "sqlite":
            if self.globals:
                raise LifeboatError("globals applies to engine postgresql only.", option="globals")
            self.database = self.tenant  # as before: a SQLite tenant's manifest names it there
        if p["compression"] not in ("zstd", "none"):
            raise LifeboatError("Unknown compression %r: use zstd or none." % (p["compression"],), option="compression")
        level = p["compression_level"]
        if p["compression"] == "zstd":
            if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 19:
                raise LifeboatError("Invalid compression_level %r: use 1 (fastest) to 19 (smallest)." % (level,),
                                    option="compression_level")
            self.level = level
        else:
            self.level = None
        threads = p["compression_threads"]
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise LifeboatError("Invalid compression_threads %r: 0 (one per CPU, at most 2) or more." % (threads,),
                                option="compression_threads")
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.skip_seconds = naming.parse_duration(p["skip_if_newer_than"], "skip_if_newer_than")
        self.lock_timeout = naming.parse_duration(p["lock_timeout"], "lock_timeout") or 0
        self.recipients, self.recipient_keys = crypto.load_recipients(p["recipients"], p["recipients_file"])
        if not self.recipients and not p["allow_unencrypted"]:
            raise LifeboatError(
                "No age recipients given: set recipients (age1... or SSH public keys) or recipients_file so "
                "that artifacts are encrypted, or set allow_unencrypted: true to store plaintext on purpose.",
                option="recipients",
            )
        self.repository = open_repository(p["repository"], **s3_options(p))
        self.conn = postgres.Connection.from_params(p)
        self.jobs = []
        if self.members is not None:
            if self.shared:
                self.jobs.append(Job(naming.shared_tenant(self.database), "postgresql", "pgdump",
                                     "shared part of database %s" % self.database))
            for tenant, schema in self.members:
                self.jobs.append(Job(tenant, "postgresql", "pgdump", "tenant %s (schema %s)" % (tenant, schema)))
        if self.tenant is not None:
            fmt = "sqlite" if self.engine == "sqlite" else "pgdump"
            self.jobs.append(Job(self.tenant, self.engine, fmt, "tenant %s" % self.tenant))
        if self.globals:
            host = self.conn.host
            if not host or host in ("localhost", "127.0.0.1", "::1"):
                host = os.uname()[1]  # a local server is named after this host
            self.jobs.append(Job(naming.globals_tenant(host, self.conn.port), "postgresql", "globals",
                                 "globals of %s" % self.conn.server))

    def _pass_options(self, p):
        """The options of a pass over the schema tenants of one database (see backup_pass)."""
        for opt in ("tenant", "schema", "path"):
            if p[opt]:
                raise LifeboatError("%s does not go with schemas: a pass names its tenants and their schemas in "
                                    "schemas. Remove %s, or remove schemas to back up one tenant." % (opt, opt), option=opt)
        if self.engine != "postgresql":
            raise LifeboatError("schemas applies to engine postgresql.", option="engine")
        if not p["database"]:
            raise LifeboatError("schemas needs database: the database that holds these schema tenants.", option="database")
        self.members = schema_pass.validate_members(p["schemas"])
        self.shared = True if p["shared"] is None else bool(p["shared"])
        exclude = p["shared_exclude"] or []
        if not isinstance(exclude, list) or not all(isinstance(x, str) and x for x in exclude):
            raise LifeboatError("shared_exclude must be a list of schema name patterns (shell globs such as t_*).",
                                option="shared_exclude")
        self.shared_exclude = exclude


def _fresh_enough(repo, job, skip_seconds, now):
    """The artifact that makes this run unnecessary under ``skip_if_newer_than``, or None.

    Only the newest complete artifact whose stamp is not in the future counts (a host whose clock
    ran ahead stamped it so: it would otherwise stop every backup until then; a clock running
    behind makes real artifacts look future, and the backup runs too), and only when
    verification has not FAILed it.
    """
    if skip_seconds is None:
        return None
    complete = [a for a in repo.artifacts(job.tenant) if a["complete"] and a["format"] == job.format]
    for art in reversed(complete):
        if naming.in_future(art["stamp"], now):
            continue
        age = (now - naming.parse_stamp(art["stamp"])).total_seconds()
        if age >= skip_seconds or _verification_failed(repo, job.tenant, art):
            return None
        return art
    return None


def _verification_failed(repo, tenant, art):
    if not art.get("verify_record"):
        return False
    try:
        record = repo.read_json(tenant, art["verify_record"]) or {}
    except LifeboatError:
        return False
    return record.get("status") == "FAIL" and record.get("artifact") in (None, art["name"])


def _probe_source(req, keep=False):
    """Check the source exists and is reachable (reads only). Return facts.

    With ``keep``, the connection to a tenant's database stays open in ``facts["conn"]`` for the dump's
    snapshot (one connection per tenant instead of two: it counts for many small tenants); the caller closes it.
    """
    if req.engine == "sqlite":
        sqlite_engine.check_source(req.path)
        return {"sqlite_version": sqlite_engine.version()}
    if req.tenant is None:  # globals only
        conn = req.conn.connect("postgres", option="login_host")
        keep = False
    else:
        conn = req.conn.connect(req.database, app=BACKUP_APP, option="database")
    try:
        version = postgres.server_version(conn)
        system_id = postgres.system_identifier(conn)
        if req.schema and not postgres.schema_exists(conn, req.schema):
            raise LifeboatError(
                "The schema %r does not exist in database %r on %s. Check the schema option."
                % (req.schema, req.database, req.conn.server),
                option="schema",
            )
    except BaseException:
        conn.close()
        raise
    if not keep:
        conn.close()
        return {"server_version": version, "system_identifier": system_id}
    return {"server_version": version, "system_identifier": system_id, "conn": conn}


def plan(req, now=None):
    """What a run would do: list of (job, action, reason)."""
    now = now or naming.utcnow()
    req.repository.check_writable()
    steps = []
    for job in req.jobs:
        erasure.refuse_backup(req.repository, job.tenant)  # a tenant tenant_erase erased stays erased
        fresh = _fresh_enough(req.repository, job, req.skip_seconds, now)
        if fresh:
            steps.append((job, "skip", "newest complete artifact %s is younger than skip_if_newer_than" % fresh["name"], fresh))
        else:
            steps.append((job, "write", None, None))
    return steps


def run(params, check_mode=False, progress=None, now=None):
    """Back up as ``params`` say. Returns a secret-free result dict."""
    req = BackupRequest(params)
    if req.members is not None:
        raise LifeboatError("A pass over the schema tenants of a database (schemas) runs through backup_pass.run.",
                            option="schemas")
    steps = plan(req, now)
    writes = [s for s in steps if s[1] == "write"]
    facts = _probe_source(req, keep=not check_mode) if writes else {}
    try:
        return _run_steps(req, steps, writes, facts, check_mode, progress)
    finally:
        if facts.get("conn") is not None:
            facts.pop("conn").close()


def _run_steps(req, steps, writes, facts, check_mode, progress):
    result = {
        "changed": bool(writes),
        "skipped": not writes,
        "tenant": req.tenant,
        "engine": req.engine,
        "repository": str(req.repository),
        "artifacts": [],
    }
    if check_mode:
        for job, action, reason, fresh in steps:
            holder = req.repository.lock_holder(job.tenant)
            result["artifacts"].append({
                "tenant": job.tenant, "format": job.format, "action": "would write" if action == "write" else "skip",
                "reason": reason, "locked_by": holder,
                "artifact": req.repository.location(job.tenant, fresh["name"]) if fresh else None,
            })
        result["msg"] = _summary_check(result)
        return result
    for job, action, reason, fresh in steps:
        if action == "skip":
            result["artifacts"].append({
                "tenant": job.tenant, "format": job.format, "action": "skip", "reason": reason,
                "artifact": req.repository.location(job.tenant, fresh["name"]),
                "manifest": req.repository.location(job.tenant, fresh["manifest"]),
            })
            continue
        with req.repository.lock(job.tenant, "backup of %s" % job.label, req.lock_timeout):
            removed = req.repository.remove_partials(job.tenant)
            entry = _write_job(req, job, facts, progress)
            entry["removed_partials"] = removed
            result["artifacts"].append(entry)
    main = [a for a in result["artifacts"] if a["format"] != "globals"]
    first = main[0] if main else result["artifacts"][0]
    for key in ("artifact", "manifest", "size_raw", "size_stored", "sha256", "seconds", "mb_per_s", "tables", "rows"):
        result[key] = first.get(key)
    glob = [a for a in result["artifacts"] if a["format"] == "globals"]
    result["globals_artifact"] = glob[0].get("artifact") if glob else None
    warnings = [w for a in result["artifacts"] for w in a.get("warnings", [])]
    if req.repository.warnings:  # S3 housekeeping that failed, guarantees the store lacks
        warnings += list(req.repository.warnings)
    if warnings:
        result["warnings"] = warnings
    result["msg"] = _summary(result)
    return result


def _summary_check(result):
    parts = []
    for a in result["artifacts"]:
        if a["action"] == "skip":
            parts.append("%s: skip (%s)" % (a["tenant"], a["reason"]))
        else:
            parts.append("%s: would write a %s artifact to %s%s" % (
                a["tenant"], a["format"], result["repository"],
                " (now locked by %s)" % a["locked_by"].get("operation") if a.get("locked_by") else ""))
    return "Check mode, nothing written. " + "; ".join(parts)


def _summary(result):
    parts = []
    for a in result["artifacts"]:
        if a["action"] == "skip":
            parts.append("%s: skipped, %s" % (a["tenant"], a["reason"]))
        else:
            parts.append("%s: %s -> %s in %.1f s (%.1f MB/s) to %s" % (
                a["tenant"], naming.human_size(a["size_raw"]), naming.human_size(a["size_stored"]), a["seconds"], a["mb_per_s"], a["artifact"]))
    return "; ".join(parts)


def _write_job(req, job, facts, progress):
    repo = req.repository
    started, stamp = unique_stamp(repo, job.tenant)
    t0 = time.monotonic()
    name = naming.artifact_name(job.tenant, stamp, job.format, req.level is not None, bool(req.recipients))
    writer = repo.new_writer(job.tenant, name)
    published = None
    try:
        if job.store is not None:
            sizes, counts, source = job.store(writer)
        elif job.format == "sqlite":
            sizes, counts, source = _store_sqlite(req, writer, progress)
        elif job.format == "pgdump":
            sizes, counts, source = _store_pgdump(req, writer, facts, progress)
        else:
            sizes, counts, source = _store_globals(req, writer, facts, progress)
        published = writer.commit()
        finished = naming.utcnow()
        seconds = time.monotonic() - t0
        doc = manifest.build(job.tenant, job.engine, job.format, name, stamp, started, finished, sizes,
                             sizes["sha256"], req.level, req.recipient_keys, counts, source)
        if job.extra:
            doc.update(job.extra)
        manifest_path = repo.write_json(job.tenant, naming.manifest_name(job.tenant, stamp), doc)
    except OSError as e:
        _undo(repo, job.tenant, name, writer, published)
        raise LifeboatError(describe_os_error(e, "Backup of %s into %s" % (job.label, repo)) +
                            "; nothing was published.", option="repository")
    except BaseException:
        _undo(repo, job.tenant, name, writer, published)
        raise
    return {
        "tenant": job.tenant,
        "format": job.format,
        "action": "written",
        "artifact": published,
        "manifest": manifest_path,
        "size_raw": sizes["raw"],
        "size_stored": sizes["stored"],
        "sha256": sizes["sha256"],
        "seconds": round(seconds, 3),
        "mb_per_s": round(sizes["raw"] / 1e6 / seconds, 2) if seconds > 0 else 0.0,
        "tables": len(counts),
        "rows": sum(counts.values()),
        "stamp": stamp,
        "warnings": list(source.get("warnings", [])),
    }


def _undo(repo, tenant, name, writer, published):
    """Nothing of a failed run stays under a final name (a local file or an S3 object)."""
    writer.abort()
    if published:
        try:
            repo.delete(tenant, name)
        except (OSError, LifeboatError):
            pass


def _store(req, source, writer, progress):
    return pipeline.store(source, writer, req.recipients, req.level, req.threads, progress)


def _store_sqlite(req, writer, progress):
    tmp = tempfile.mkdtemp(prefix="lifeboat-sqlite-", dir=req.p["tmp_dir"])
    try:
        snap = os.path.join(tmp, "snapshot.sqlite")
        sqlite_engine.snapshot(req.path, snap)
        problems = sqlite_engine.integrity_check(snap, quick=True)
        if problems != "ok":
            raise LifeboatError("The SQLite file %s fails its integrity check (%s); no backup was taken of a "
                                "damaged database. Repair it first." % (req.path, problems), option="path")
        counts = sqlite_engine.table_row_counts(snap)
        with open(snap, "rb", buffering=0) as src:
            sizes = _store(req, src, writer, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sizes, counts, {"path": req.path, "sqlite_version": sqlite_engine.version()}


def _stream_tool(req, argv, env, writer, progress, what, started=None):
    tool = Tool.reading(argv, env)
    try:
        if started is not None:
            started()
        try:
            sizes = _store(req, tool.proc.stdout, writer, progress)
        except LifeboatError:
            raise
        except Exception:
            # A broken stream usually means the tool died: its message is the useful one.
            if tool.proc.poll() is not None:
                tool.finish(what)
            raise
        warnings = tool.finish(what)
    finally:
        tool.close()
    return sizes, warnings


class _RowCounter(object):
    """``postgres.row_counts`` on the snapshot's connection, in a thread of its own (psycopg waits without the GIL)."""

    def __init__(self, conn, schema):
        self.conn = conn
        self.counts = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(schema,), name="lifeboat-row-counts")
        self.thread.daemon = True
        self.thread.start()

    def _run(self, schema):
        try:
            self.counts = postgres.row_counts(self.conn, schema)
        except BaseException as e:  # handed to the main thread by result()
            self.error = e

    def cancel(self):
        """The dump failed: stop counting and wait, so that the connection is free to roll back."""
        try:
            self.conn.cancel()
        except Exception:
            pass
        self.thread.join()

    def result(self):
        self.thread.join()
        if self.error is not None:
            if isinstance(self.error, postgres.psycopg.Error):
                raise LifeboatError("Counting the rows of database %r in the backup's snapshot failed: %s"
                                    % (self.conn.info.dbname, str(self.error).strip()), option="database")
            raise self.error
        return self.counts


def _store_pgdump(req, writer, facts, progress):
    server_version = facts["server_version"]
    pg_dump, dump_version = postgres.find_binary("pg_dump", req.p["pg_bin_dir"], postgres.major(server_version))
    app = BACKUP_APP
    conn = facts.pop("conn", None) or req.conn.connect(req.database, app=app, option="database")
    try:
        # Large objects are not in a schema's dump: a schema tenant that points to some is refused here.
        lo_refs = (large_objects.refuse_schema_backup(conn, req.database, req.schema) if req.schema
                   else large_objects.referenced(conn))
        settings = None if req.schema else postgres.database_settings(conn)
        properties = None if req.schema else postgres.database_properties(conn)
        fragile = [w for ws in postgres.restore_time_calls(conn, req.schema).values() for w in ws]
        exts = None if req.schema else postgres.extensions(conn)
        roles = policy_roles.named(conn, req.schema)
        with postgres.Snapshot(conn) as snap:
            argv = [pg_dump, "--format=custom", "--compress=0", "--no-password", "--snapshot=" + snap.id,
                    "--dbname=" + req.conn.conninfo(req.database, app + "-pg_dump")]
            if req.schema:
                argv.append("--schema=" + postgres.schema_pattern(req.schema))
            # The exact row counts come from the snapshot's own transaction while pg_dump streams the same
            # snapshot: counting first made every backup wait for a full scan of every table.
            counters = []
            try:
                sizes, warnings = _stream_tool(req, argv, req.conn.env(app + "-pg_dump"), writer, progress,
                                               "pg_dump of database %r on %s" % (req.database, req.conn.server),
                                               started=lambda: counters.append(_RowCounter(conn, req.schema)))
            except BaseException as e:
                for counter in counters:
                    counter.cancel()
                    if isinstance(counter.error, LifeboatError):
                        # The counter's own error (a table this role cannot read) ended the snapshot's
                        # transaction, so pg_dump reports a lost snapshot: the counter's is the real cause.
                        raise counter.error
                if isinstance(e, LifeboatError):
                    raise postgres.dump_failure(e, req.database, conn.info.user)
                raise
            counts = counters[0].result()
    finally:
        conn.close()
    source = {
        "server": req.conn.server,
        "user": req.conn.user,
        "database": req.database,
        "schema": req.schema,
        "server_version": server_version,
        "system_identifier": facts.get("system_identifier"),
        "pg_dump_version": dump_version,
        "snapshot": "exported (pg_export_snapshot), row counts taken in the same snapshot",
    }
    if warnings:
        source["pg_dump_messages"] = warnings[-2000:]
    if lo_refs:
        source["large_objects"] = lo_refs
    if settings:
        source["database_settings"] = settings
    if properties:
        source["database_properties"] = properties
    if fragile:
        source["warnings"] = fragile  # what a restore of this artifact may trip over
    if exts is not None:
        source["extensions"] = exts  # a restore checks the target server has them first
    if roles:
        source["policy_roles"] = roles  # a verifier creates them on its scratch server for the check
    return sizes, counts, source


def _store_globals(req, writer, facts, progress):
    server_version, system_id = facts.get("server_version"), facts.get("system_identifier")
    if server_version is None:
        conn = req.conn.connect("postgres", option="login_host")
        try:
            server_version, system_id = postgres.server_version(conn), postgres.system_identifier(conn)
        finally:
            conn.close()
    pg_dumpall, version = postgres.find_binary("pg_dumpall", req.p["pg_bin_dir"], postgres.major(server_version))
    app = "lifeboat-backup-pg_dumpall"
    argv = [pg_dumpall, "--globals-only", "--no-password", "--dbname=" + req.conn.conninfo("postgres", app)]
    if not req.p["role_passwords"]:
        argv.append("--no-role-passwords")
    what = "pg_dumpall --globals-only on %s" % req.conn.server
    sizes, warnings = _stream_tool(req, argv, req.conn.env(app), writer, progress, what)
    source = {"server": req.conn.server, "user": req.conn.user, "server_version": server_version,
              "system_identifier": system_id, "pg_dumpall_version": version,
              "role_passwords": bool(req.p["role_passwords"])}
    return sizes, {}, source
