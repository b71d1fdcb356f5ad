# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``pg_backup`` with ``schemas``: every schema tenant of one database in one pass.

The work is planned by ``schema_pass`` (lock budget, groups, dependencies, row
counts) and split by ``pgarchive``; this file runs it and writes the artifacts
through the same ``backup._write_job`` as a single tenant's backup, so each
tenant's artifact, manifest, lock and failure handling are those of a normal
backup. One tenant's failure does not stop the others: it is reported in
``failed_tenants`` (and the module fails after the others are written).
"""

import concurrent.futures
import copy
import fnmatch
import queue
import threading
import time

from . import backup, crypto, large_objects, naming, pgarchive, pipeline, policy_roles, postgres, schema_pass
from .errors import LifeboatError
from .spool import Budget, Spool, Stopped
from .tools import Tool

LOCK_SHARE = 2  # one pg_dump may lock at most capacity / LOCK_SHARE relations
SPOOL_BYTES = 32 << 20  # split archives read ahead of their artifacts' writes, at the most
WRITERS = 3  # artifacts of a pass written at once (their fsyncs overlap the others' encryption)


def run(params, check_mode=False, progress=None, now=None):
    """Back up as ``params`` say; without ``schemas`` this is ``backup.run``."""
    if params.get("schemas") is None:
        return backup.run(params, check_mode=check_mode, progress=progress, now=now)
    params, own_keys = member_recipients(params)
    req = backup.BackupRequest(params)
    steps = backup.plan(req, now)
    result = {
        "changed": False,
        "skipped": False,
        "tenant": None,
        "engine": "postgresql",
        "database": req.database,
        "repository": str(req.repository),
        "artifacts": [],
        "failed_tenants": [],
        "shared_artifact": None,
    }
    writes = [s for s in steps if s[1] == "write"]
    if not writes:
        result["skipped"] = True
        result["artifacts"] = [_skipped(req, job, reason, fresh) for job, _a, reason, fresh in steps]
        result["msg"] = "Nothing to do: %s" % "; ".join("%s skipped" % a["tenant"] for a in result["artifacts"])
        return result
    conn = req.conn.connect(req.database, app=backup.BACKUP_APP, option="database")
    try:
        return Pass(req, conn, steps, result, progress, own_keys).run(check_mode)
    finally:
        conn.close()


def member_recipients(params):
    """(params without the members' own recipients, {tenant: (pyrage recipients, public keys)}).

    A member of ``schemas`` may name its own ``recipients``, ``recipients_file`` and ``recipients_mode``
    (crypto.tenant_recipient_params: by default they replace the pass's for its artifact); the shared
    part is always encrypted to the pass's own recipients.
    """
    members = params.get("schemas")
    if not isinstance(members, list) or not any(isinstance(m, dict) and any(k in m for k in crypto.TENANT_RECIPIENT_KEYS)
                                                for m in members):
        return params, {}
    common = {"recipients": params.get("recipients"), "recipients_file": params.get("recipients_file")}
    stripped, keys = [], {}
    for i, member in enumerate(members):
        if isinstance(member, dict) and any(k in member for k in crypto.TENANT_RECIPIENT_KEYS):
            own = dict((k, member.get(k)) for k in crypto.TENANT_RECIPIENT_KEYS)
            chosen = crypto.tenant_recipient_params(common, own, "schemas[%d]" % i)
            member = dict((k, v) for k, v in member.items() if k not in crypto.TENANT_RECIPIENT_KEYS)
            keys[member.get("tenant")] = crypto.load_recipients(chosen["recipients"], chosen["recipients_file"])
        stripped.append(member)
    return dict(params, schemas=stripped), keys


def _skipped(req, job, reason, fresh):
    return {"tenant": job.tenant, "format": job.format, "action": "skip", "reason": reason,
            "artifact": req.repository.location(job.tenant, fresh["name"]),
            "manifest": req.repository.location(job.tenant, fresh["manifest"])}


class Pass(object):
    def __init__(self, req, conn, steps, result, progress, own_keys=None):
        self.req = req
        self.own_keys = own_keys or {}  # {tenant: (recipients, public keys)}: members with recipients of their own
        self._reqs = {}
        self.conn = conn
        self.user = conn.info.user  # named in the grant that fixes a table this role cannot read
        self.steps = steps
        self.result = result
        self.progress = progress
        self.schema_of = dict(req.members)
        self.server_version = postgres.server_version(conn)
        self.system_identifier = postgres.system_identifier(conn)
        self.extensions = postgres.extensions(conn)  # in the shared part's manifest (a restore checks them first)
        self.policy_roles = policy_roles.by_schema(conn)  # the roles each schema's RLS policies name
        self.shared_ref = None
        self.shared_excluded = 0
        self.fragile = {}  # {schema: [warning]}: functions a restore runs without a search_path of their own
        self.counter = None
        self.runs = 0

    # -- planning ------------------------------------------------------------------------------------

    def _split_schemas(self, all_schemas):
        """(schemas of the shared part, user schemas left out of it).

        Left out: the tenant schemas, shared_exclude's matches, and the safety copies a restore keeps
        (``lb_s_<hash>``: a tenant's old data, never the shared part's).
        """
        tenant_schemas = set(self.schema_of.values())
        shared, excluded = [], []
        for nsp in all_schemas:
            if nsp in ("pg_catalog", "information_schema") or nsp.startswith("pg_toast") or nsp.startswith("pg_temp_"):
                continue
            if (nsp in tenant_schemas or naming.is_derived_name(nsp)
                    or any(fnmatch.fnmatchcase(nsp, pat) for pat in self.req.shared_exclude)):
                excluded.append(nsp)
            else:
                shared.append(nsp)
        return shared, excluded

    def run(self, check_mode):
        req = self.req
        facts = schema_pass.schema_facts(self.conn)  # every schema's: the shared part's are needed too
        missing = [(t, s) for t, s in req.members if s not in facts]
        if check_mode:
            return self._check(missing)
        jobs = dict((job.tenant, (job, action, reason, fresh)) for job, action, reason, fresh in self.steps)
        for tenant, schema in missing:
            self._failed(tenant, "The schema %r does not exist in database %r on %s. Check the schemas option (or "
                                 "the tenant's schema), or remove the tenant." % (schema, req.database, req.conn.server))
        t0 = time.monotonic()
        pg_dump, self.dump_version = postgres.find_binary("pg_dump", req.p["pg_bin_dir"],
                                                          postgres.major(self.server_version))
        self.pg_dump = pg_dump
        capacity = schema_pass.lock_capacity(self.conn)
        self.budget = max(64, capacity // LOCK_SHARE)
        with postgres.Snapshot(self.conn) as snap:
            self.snapshot = snap.id
            all_schemas = [r[0] for r in self.conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace ORDER BY nspname").fetchall()]
            self.shared_schemas, self.excluded_schemas = self._split_schemas(all_schemas)
            tenant_order = schema_pass.dump_order([s for t, s in req.members if s in facts
                                                   and jobs[t][1] == "write"])
            shared_job = jobs.get(naming.shared_tenant(req.database)) if req.shared else None
            shared_dump = self._shared_plan(shared_job, facts) if shared_job is not None else None
            # The pg_dump runs start now: their catalog work overlaps the queries below.
            dumper = _Dumper(self, schema_pass.groups_within(tenant_order, facts, self.budget), shared_dump)
            dumper.start()
            self.counter = None
            try:
                depends = schema_pass.dependencies(self.conn, tenant_order) if tenant_order else {}
                self.fragile = postgres.restore_time_calls(self.conn)
                self.lo_refs = {}
                for entry in large_objects.referenced(self.conn):  # in the shared part, which holds them
                    self.lo_refs.setdefault(entry["schema"], []).append(entry)
                tables = self.conn.execute(postgres._TABLES, {"schema": None}).fetchall()
                by_schema = {}
                for nsp, rel in tables:
                    by_schema.setdefault(nsp, []).append((nsp, rel))
                order = (self.shared_schemas if shared_job and shared_job[1] == "write" else []) + tenant_order
                self.counter = schema_pass.PassCounter(req.conn, req.database, self.snapshot,
                                                       [t for nsp in order for t in by_schema.get(nsp, [])],
                                                       backup.BACKUP_APP + "-count").start()
                self._tenant_groups(dumper, jobs, depends)
            finally:
                dumper.stop()
                if self.counter is not None:
                    self.counter.cancel()
        for job, action, reason, fresh in self.steps:
            if action == "skip":
                self.result["artifacts"].append(_skipped(req, job, reason, fresh))
        written = [a for a in self.result["artifacts"] if a["action"] == "written"]
        self.result["changed"] = bool(written)
        self.result["seconds"] = round(time.monotonic() - t0, 3)
        self.result["pg_dump_runs"] = self.runs
        self.result["lock_budget"] = self.budget
        for a in written:  # what a restore of a tenant's artifact may trip over
            self.result.setdefault("warnings", []).extend(a.get("warnings", []))
        if req.repository.warnings:  # S3 housekeeping that failed, guarantees the store lacks
            self.result.setdefault("warnings", []).extend(req.repository.warnings)
            for a in self.result["artifacts"]:  # each tenant's own, and the store's (the agent's tenant lines)
                a["warnings"] = a.get("warnings", []) + req.repository.warnings_for(a["tenant"])
        self.result["msg"] = self._summary(written)
        return self.result

    def _check(self, missing):
        req = self.req
        for job, action, reason, fresh in self.steps:
            entry = {"tenant": job.tenant, "format": job.format,
                     "action": "would write" if action == "write" else "skip", "reason": reason,
                     "locked_by": req.repository.lock_holder(job.tenant),
                     "artifact": req.repository.location(job.tenant, fresh["name"]) if fresh else None}
            self.result["artifacts"].append(entry)
        self.result["changed"] = any(a["action"] == "would write" for a in self.result["artifacts"])
        problems = ["schema %r of tenant %s does not exist" % (s, t) for t, s in missing]
        self.result["failed_tenants"] = [{"tenant": t, "error": "schema %r does not exist" % s} for t, s in missing]
        self.result["msg"] = "Check mode, nothing written. Would write %d artifacts of database %r to %s%s." % (
            sum(1 for a in self.result["artifacts"] if a["action"] == "would write"), req.database,
            self.result["repository"], ("; " + "; ".join(problems)) if problems else "")
        return self.result

    # -- the shared part -----------------------------------------------------------------------------

    def _shared_plan(self, entry, facts):
        """``(job, argv, what)`` of the shared part's pg_dump, or None: a fresh one is kept (skip), or it is
        too large for one run (recorded as a failed tenant, with the setting to raise)."""
        job, action, reason, fresh = entry
        req = self.req
        if action == "skip":
            doc = req.repository.read_json(job.tenant, fresh["manifest"]) or {}
            self.shared_ref = _ref(job.tenant, fresh["name"], fresh["stamp"], doc.get("sha256"))
            return None
        job.extra = {"shared_part": {"database": req.database, "schemas": self.shared_schemas,
                                     "excluded_tenant_schemas": len(self.schema_of)}}
        shared_locked = sum(facts.get(s, (0, 0))[0] for s in self.shared_schemas)
        if shared_locked > self.budget:
            def refuse(writer):
                raise LifeboatError(_lock_message(req, "the shared part", shared_locked, self.budget), option="database")
            job.store = refuse
            self._write(job)
            return None
        excluded = sorted(set(self.schema_of.values()) | set(self.excluded_schemas))
        argv = self._dump_argv() + ["--exclude-schema=" + postgres.schema_pattern(s) for s in excluded]
        self.shared_excluded = len(excluded)  # told in the shared artifact's manifest
        return job, argv, "pg_dump of the shared part of database %r" % req.database

    def _shared_write(self, job, spool):
        """The shared part's artifact, from the dump thread's spool (written before any tenant's: their
        manifests name it)."""
        req = self.req

        def store(writer):
            sizes = pipeline.store(spool, writer, req.recipients, req.level, req.threads, None)
            counts = {}
            for nsp in self.shared_schemas:
                counts.update(self.counter.wait_for(nsp))
            source = self._source(None, spool.warnings)
            source["shared_part_of"] = req.database
            source["excluded_schemas"] = self.shared_excluded
            source["extensions"] = self.extensions
            return sizes, counts, source

        job.store = store
        entry_out = self._write(job)
        if entry_out is None:
            spool.abandon()
            return
        self.shared_ref = _ref(job.tenant, entry_out["artifact_name"], entry_out["stamp"], entry_out["sha256"])
        self.result["shared_artifact"] = entry_out["artifact"]

    # -- tenant groups -------------------------------------------------------------------------------

    def _tenant_groups(self, dumper, jobs, depends):
        """Every group's pg_dump -n, split into one artifact a schema; what fails is retried alone, last.

        The groups' pg_dump runs go one after another in a thread of their own (``_Dumper``), which
        splits each stream into in-memory spools ahead of the artifacts' writes, within
        ``SPOOL_BYTES``: while ``WRITERS`` threads encrypt and publish one group's artifacts (each
        under its tenant's lock, as a single backup), the next group's pg_dump reads the catalog
        (server-side work). Only one pg_dump runs at a time, so the lock budget holds; the schemas
        done alone (interleaved data, a failed stream or write) wait until the dumper is done.
        """
        tenant_of = dict((s, t) for t, s in self.req.members)
        alone = []

        def write(spool, group_size):
            job = jobs[tenant_of[spool.name]][0]
            job.store = self._reader_store(spool.name, spool, group_size)
            job.extra = self._extra(spool.name, depends)
            if self._write(job) is not None:
                return None
            spool.abandon()
            self._unfail(job.tenant)  # it gets its own pg_dump, below
            return spool.name

        pool = concurrent.futures.ThreadPoolExecutor(WRITERS, thread_name_prefix="lifeboat-pass-write")
        futures = []
        try:
            for event in dumper.events():
                if event[0] == "shared":
                    self._shared_write(event[1], event[2])
                elif event[0] == "alone":
                    alone.extend(event[1])
                    if event[2]:
                        self.result.setdefault("warnings", []).append(event[2])
                else:
                    futures.append(pool.submit(write, event[1], event[2]))
            for future in futures:
                schema = future.result()
                if schema is not None:
                    alone.append(schema)
        finally:
            dumper.stop()
            pool.shutdown(wait=True)
        self.result["spool_peak_bytes"] = dumper.budget.peak
        for schema in alone:
            job = jobs[tenant_of[schema]][0]
            job.store = self._single_store(schema)
            job.extra = self._extra(schema, depends)
            self._write(job)

    def _reader_store(self, schema, reader, group_size):
        req = self._req_of(dict((s, t) for t, s in self.req.members)[schema])

        def store(writer):
            sizes = pipeline.store(reader, writer, req.recipients, req.level, req.threads, None)
            source = self._source(schema, None)
            source["pass"] = "split from one pg_dump of %d schemas (pgarchive), in the pass's snapshot" % group_size
            return sizes, self.counter.wait_for(schema), source
        return store

    def _single_store(self, schema):
        req = self._req_of(dict((s, t) for t, s in self.req.members)[schema])

        def store(writer):
            argv = self._dump_argv() + ["--schema=" + postgres.schema_pattern(schema)]
            self.runs += 1
            sizes, warnings = self._stream(argv, writer, "pg_dump of schema %r of database %r"
                                           % (schema, self.req.database), req)
            source = self._source(schema, warnings)
            source["pass"] = "pg_dump of this schema alone, in the pass's snapshot"
            return sizes, self.counter.wait_for(schema), source
        return store

    # -- shared mechanics ----------------------------------------------------------------------------

    def _dump_argv(self):
        req = self.req
        return [self.pg_dump, "--format=custom", "--compress=0", "--no-password", "--snapshot=" + self.snapshot,
                "--dbname=" + req.conn.conninfo(req.database, backup.BACKUP_APP + "-pg_dump")]

    def _req_of(self, tenant):
        """The request as ``tenant``'s artifact sees it: the pass's, or a copy with the tenant's own recipients."""
        keys = self.own_keys.get(tenant)
        if keys is None:
            return self.req
        if tenant not in self._reqs:
            req = copy.copy(self.req)
            req.recipients, req.recipient_keys = keys
            self._reqs[tenant] = req
        return self._reqs[tenant]

    def _stream(self, argv, writer, what, req=None):
        try:
            return backup._stream_tool(req or self.req, argv, self.req.conn.env(backup.BACKUP_APP + "-pg_dump"), writer,
                                       self.progress, what)
        except LifeboatError as e:
            raise self._lock_hint(e)

    def _lock_hint(self, e):
        """``e``, or with the setting to raise when it is the lock table's error, or with the grant that fixes it
        when the backup role may not read something."""
        if "max_locks_per_transaction" in str(e) or "out of shared memory" in str(e):
            return LifeboatError("%s Raise max_locks_per_transaction in postgresql.conf (lifeboat sizes each pg_dump "
                                 "to at most %d locked tables, half the lock table) and restart the server."
                                 % (e, self.budget), option="database")
        return postgres.dump_failure(e, self.req.database, self.user)

    def _source(self, schema, warnings):
        req = self.req
        source = {
            "server": req.conn.server,
            "user": req.conn.user,
            "database": req.database,
            "schema": schema,
            "server_version": self.server_version,
            "system_identifier": self.system_identifier,
            "pg_dump_version": self.dump_version,
            "snapshot": "exported (pg_export_snapshot), shared by every tenant of the pass; row counts taken in it",
        }
        if warnings:
            source["pg_dump_messages"] = warnings[-2000:]
        fragile = self.fragile.get(schema, []) if schema else [w for s in self.shared_schemas
                                                               for w in self.fragile.get(s, [])]
        if fragile:
            source["warnings"] = fragile
        roles = sorted(set(self.policy_roles.get(schema, []) if schema else
                           [r for s in self.shared_schemas for r in self.policy_roles.get(s, [])]))
        if roles:
            source["policy_roles"] = roles
        refs = self.lo_refs.get(schema) if schema else [e for s in self.shared_schemas for e in self.lo_refs.get(s, [])]
        if refs:
            source["large_objects"] = refs
            if schema:
                source["large_objects_in"] = "the shared part (large objects belong to the database)"
        return source

    def _extra(self, schema, depends):
        return {"shared": self.shared_ref, "depends_on": depends.get(schema, {"extensions": [], "objects": []})}

    def _write(self, job):
        """``backup._write_job`` under the tenant's lock; a failure is recorded, not raised."""
        repo = self.req.repository
        try:
            with repo.lock(job.tenant, "backup of %s" % job.label, self.req.lock_timeout):
                removed = repo.remove_partials(job.tenant)
                entry = backup._write_job(self._req_of(job.tenant), job, {}, None)
        except LifeboatError as e:
            self._failed(job.tenant, str(e))
            return None
        finally:
            # The store holds the group's reader, splitter and table of contents: let them go now,
            # or a pass keeps every group's in memory until it ends.
            job.store = None
        entry["removed_partials"] = removed
        entry["artifact_name"] = naming.artifact_name(job.tenant, entry["stamp"], "pgdump", self.req.level is not None,
                                                      bool(self._req_of(job.tenant).recipients))
        self.result["artifacts"].append(entry)
        return entry

    def _failed(self, tenant, error):
        self.result["failed_tenants"].append({"tenant": tenant, "error": error})
        self.result["artifacts"].append({"tenant": tenant, "format": "pgdump", "action": "failed", "error": error})

    def _unfail(self, tenant):
        self.result["failed_tenants"] = [f for f in self.result["failed_tenants"] if f["tenant"] != tenant]
        self.result["artifacts"] = [a for a in self.result["artifacts"]
                                    if not (a["tenant"] == tenant and a["action"] == "failed")]

    def _summary(self, written):
        failed = self.result["failed_tenants"]
        text = "Backed up %d artifacts of database %r (%s) in %.1f s with %d pg_dump runs to %s" % (
            len(written), self.req.database,
            "the shared part and %d tenants" % (len(written) - 1) if self.result["shared_artifact"] else
            "%d tenants" % len(written), self.result["seconds"], self.runs, self.result["repository"])
        if failed:
            text += "; FAILED: %s" % "; ".join("%s: %s" % (f["tenant"], f["error"]) for f in failed[:10])
            if len(failed) > 10:
                text += " (and %d more)" % (len(failed) - 10)
        return text + "."


def _ref(tenant, name, stamp, sha256):
    return {"tenant": tenant, "artifact": name, "stamp": stamp, "sha256": sha256}


def _lock_message(req, what, need, budget):
    return ("Backing up %s of database %r would lock %d tables in one pg_dump, more than lifeboat allows one run "
            "(%d, half of the server's lock table: max_locks_per_transaction x (max_connections + "
            "max_prepared_transactions)). Raise max_locks_per_transaction on %s and restart it."
            % (what, req.database, need, budget, req.conn.server))


class _Dumper(threading.Thread):
    """The groups' pg_dump runs, one at a time, each split into one ``Spool`` a schema as it streams.

    ``events()`` yields, in order, ``("shared", job, spool)`` for the shared part's dump when there
    is one, ``("spool", spool, group_size)`` for each schema's archive
    (to be read to its end, or abandoned) and ``("alone", schemas, warning)`` for the schemas
    a group could not give (a group of one, interleaved data, or what a failed run left).
    """

    def __init__(self, owner, groups, shared=None):
        super(_Dumper, self).__init__(name="lifeboat-pass-dump")
        self.daemon = True
        self.owner = owner
        self.groups = [list(g) for g in groups]
        self.shared = shared
        self.budget = Budget(SPOOL_BYTES)
        self._queue = queue.Queue()
        self._tool = None
        self._stopping = False

    def events(self):
        while True:
            event = self._queue.get()
            if event[0] == "end":
                return
            if event[0] == "crash":
                raise event[1]
            yield event

    def stop(self):
        self._stopping = True
        self.budget.stop()
        tool = self._tool
        if tool is not None:
            tool.kill()
        self.join(30)

    def run(self):
        try:
            if self.shared is not None:
                self._shared(*self.shared)
            for schemas in self.groups:
                if self._stopping:
                    break
                if len(schemas) == 1:
                    self._queue.put(("alone", schemas, None))
                else:
                    self._group(schemas)
        except Stopped:
            pass
        except BaseException as e:  # handed to the consumer by events()
            self._queue.put(("crash", e))
        finally:
            self._queue.put(("end",))

    def _shared(self, job, argv, what):
        """The shared part's pg_dump, whole, into one spool; it ends (or fails) once pg_dump has exited."""
        tool = self._tool = Tool.reading(argv, self.owner.req.conn.env(backup.BACKUP_APP + "-pg_dump"))
        self.owner.runs += 1
        spool = Spool(job.tenant, self.budget)
        self._queue.put(("shared", job, spool))
        try:
            for chunk in iter(lambda: tool.proc.stdout.read(pipeline.CHUNK), b""):
                spool.put(chunk)
            spool.warnings = tool.finish(what)
            spool.finish()
        except LifeboatError as e:
            spool.fail(self.owner._lock_hint(e))
        except BaseException as e:
            spool.fail(e)
            raise
        finally:
            self._tool = None
            tool.close()

    def _group(self, schemas):
        owner = self.owner
        argv = owner._dump_argv() + ["--schema=" + postgres.schema_pattern(s) for s in schemas]
        what = "pg_dump of %d schemas of database %r" % (len(schemas), owner.req.database)
        tool = self._tool = Tool.reading(argv, owner.req.conn.env(backup.BACKUP_APP + "-pg_dump"))
        owner.runs += 1
        given = set()
        spool = None
        try:
            head = pgarchive.read_head(tool.proc.stdout)
            owners = pgarchive.owners(head.entries, set(schemas))
            mixed = pgarchive.interleaved(head.entries, owners)
            wanted = [s for s in schemas if s not in mixed]
            splitter = pgarchive.Splitter(tool.proc.stdout, head, owners, wanted)
            for schema, reader in splitter.outputs():
                spool = Spool(schema, self.budget)
                given.add(schema)
                self._queue.put(("spool", spool, len(schemas)))
                for chunk in iter(lambda r=reader: r.read(pipeline.CHUNK), b""):
                    spool.put(chunk)
                spool.finish()
                spool = None
            splitter.drain()
            tool.finish(what)
            warning = None
        except LifeboatError as e:
            if tool.proc.poll() is not None and tool.proc.returncode:
                try:
                    tool.finish(what)
                except LifeboatError as tool_error:
                    e = tool_error
            e = owner._lock_hint(e)
            if spool is not None:
                spool.fail(e)  # its write fails, and the consumer gives it a pg_dump of its own
            warning = "%s stopped (%s); the schemas it had not written were backed up one by one." % (what, e)
        except BaseException as e:
            if spool is not None:
                spool.fail(e)  # the consumer must not wait for a spool that will never end
            raise
        finally:
            self._tool = None
            tool.close()
        self._queue.put(("alone", [s for s in schemas if s not in given], warning))
