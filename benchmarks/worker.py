"""One engine operation in a process of its own, for timing and peak memory.

    python benchmarks/worker.py OPERATION PARAMS_JSON

The engine is imported as ``lifeboat_engine`` from plugins/module_utils (as the
host agent does), with no Ansible. The last line printed is JSON: the
engine's own seconds (the call alone, without interpreter start-up and
imports), this process's peak RSS (VmHWM: the process doing the work; pg_dump
and pg_restore are separate processes of PostgreSQL's), CPU seconds of this
process and of its children, and a few figures of the result.
"""

import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

import lbtest  # noqa: E402  (tests/lbtest.py: the engine without Ansible)

E = lbtest.load_engine("lifeboat_engine")


def op_backup(p):
    from lifeboat_engine import backup

    r = backup.run(p)
    return {k: r.get(k) for k in ("artifact", "size_raw", "size_stored", "sha256", "rows", "tables")}


def op_restore(p):
    from lifeboat_engine import restore

    r = restore.run(p)
    return {"changed": r.get("changed"), "jobs": r.get("jobs")}


def op_verify(p):
    from lifeboat_engine import verify

    r = verify.run(p)
    if r["status"] != "PASS":
        raise SystemExit("verification did not pass: %s" % r.get("msg"))
    return {"status": r["status"]}


def op_anonymize(p):
    from lifeboat_engine import anonymize

    r = anonymize.run(p)
    return {"changed": r.get("changed"), "rows_scrubbed": r.get("rows_scrubbed")}


def op_agent(p):
    from lifeboat_engine import agent

    rc = agent.main(p["argv"])
    if rc:
        raise SystemExit("lifeboat agent exited with %s" % rc)
    return {"rc": rc}


def op_backup_pass(p):
    """pg_backup with ``schemas``: every schema tenant of one database in one pass (backup_pass.run)."""
    from lifeboat_engine import backup_pass

    phases = _patch_phases() if p.pop("_phases", False) else None
    r = backup_pass.run(p)
    written = [a for a in r["artifacts"] if a.get("action") == "written"]
    out = {"pass_seconds": r.get("seconds"), "pg_dump_runs": r.get("pg_dump_runs"), "lock_budget": r.get("lock_budget"),
           "written": len(written), "failed_tenants": len(r.get("failed_tenants") or []),
           "failed_examples": (r.get("failed_tenants") or [])[:5], "warnings": r.get("warnings"),
           "stored_bytes": sum(a.get("size_stored") or 0 for a in written),
           "raw_bytes": sum(a.get("size_raw") or 0 for a in written),
           "shared_artifact": r.get("shared_artifact"), "msg": (r.get("msg") or "")[:2000]}
    if phases is not None:
        out["phases"] = dict((k, {"calls": v[0], "seconds": round(v[1], 3)}) for k, v in sorted(phases.items()))
    return out


def _patch_phases():
    """Investigation (params ``_phases``): total time and calls of the steps of a pass, nested (a group's
    time includes its artifacts' writes; an artifact's write includes pipeline.store)."""
    from lifeboat_engine import backup, backup_pass, pgarchive, pipeline, repository, schema_pass

    totals = {}

    def timed(owner, attr, label):
        fn = getattr(owner, attr)

        def wrapper(*a, **k):
            t0 = time.monotonic()
            try:
                return fn(*a, **k)
            finally:
                entry = totals.setdefault(label, [0, 0.0])
                entry[0] += 1
                entry[1] += time.monotonic() - t0
        setattr(owner, attr, wrapper)

    for owner, attr, label in (
            (schema_pass, "schema_facts", "schema_facts (catalog query)"),
            (schema_pass, "dependencies", "dependencies (catalog query)"),
            (schema_pass, "lock_capacity", "lock_capacity"),
            (schema_pass.PassCounter, "wait_for", "waiting for row counts"),
            (backup_pass._Dumper, "_shared", "shared part's pg_dump, in the dump thread"),
            (backup_pass.Pass, "_shared_write", "shared part's artifact write"),
            (backup_pass.Pass, "_tenant_groups", "tenant groups, wall (dump thread and writers at once)"),
            (backup_pass._Dumper, "_group", "pg_dump -n ... runs + split, in the dump thread (one per group)"),
            (backup_pass.Pass, "_write", "artifact writes (lock, stream, commit, manifest; summed over the writers)"),
            (pgarchive, "read_head", "reading the archive head (pg_dump's catalog work, in the dump thread)"),
            (pipeline, "store", "pipeline.store (zstd + age)"),
            (repository.LocalWriter, "commit", "artifact commit (fsync, publish)"),
            (repository.LocalRepository, "write_json", "manifest write"),
            (backup, "unique_stamp", "unique_stamp")):
        if hasattr(owner, attr):  # steps of another version of the engine are left out
            timed(owner, attr, label)
    return totals


class _Null(object):
    def write(self, data):
        return len(data)

    def flush(self):
        pass


def op_s3_put(p):
    """Upload a local file through the S3 repository writer (the path pg_backup streams into)."""
    from lifeboat_engine import pipeline
    from lifeboat_engine.repository import open_repository

    repo = open_repository(p["repository"], **p["s3"])
    writer = repo.new_writer(p["tenant"], p["name"])
    try:
        with open(p["file"], "rb", buffering=0) as src:
            sizes = pipeline.store(src, writer, None, None)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"bytes": sizes["stored"], "sha256": sizes["sha256"]}


def op_s3_get(p):
    """Read an artifact through the S3 repository reader, hashing it (as verify and restore read) into ``out``."""
    from lifeboat_engine import pipeline
    from lifeboat_engine.repository import open_repository

    repo = open_repository(p["repository"], create=False, **p["s3"])
    src = repo.open_read(p["tenant"], p["name"])
    try:
        if p.get("out"):
            with open(p["out"], "wb", buffering=0) as sink:
                sizes = pipeline.load(src, sink, None, False)
        else:
            sizes = pipeline.load(src, _Null(), None, False)
    finally:
        src.close()
    return {"bytes": sizes["stored"], "sha256": sizes["sha256"]}


def op_store_variant(p):
    """Investigation: pg_dump -Fc -Z0 through a variant of the store pipeline (see run.py, backup_variants)."""
    import variants

    return variants.run(E, p)


OPS = dict((k[3:], v) for k, v in globals().items() if k.startswith("op_"))


def vm_hwm_kb():
    """Peak RSS of this process (VmHWM). Not ru_maxrss: Linux carries a parent's RSS across
    fork+exec into the child's ru_maxrss, so a worker started by a 40 MB runner would never
    report less than 40 MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _patch_pipe_size(size):
    """Investigation only (params ``_pipe_size``): give the pipes to pg_dump and pg_restore ``size`` bytes."""
    import fcntl
    from lifeboat_engine import backup, restore_common

    def grow(f):
        try:
            fcntl.fcntl(f.fileno(), fcntl.F_SETPIPE_SZ, size)
        except OSError:
            pass

    tool_init, rtool_init = backup._Tool.__init__, restore_common.Tool.__init__

    def tool(self, *a, **k):
        tool_init(self, *a, **k)
        grow(self.proc.stdout)

    def rtool(self, *a, **k):
        rtool_init(self, *a, **k)
        if self.proc.stdin is not None:
            grow(self.proc.stdin)

    backup._Tool.__init__, restore_common.Tool.__init__ = tool, rtool


def main():
    op, params = sys.argv[1], json.loads(sys.argv[2])
    if params.get("_pipe_size"):
        _patch_pipe_size(params.pop("_pipe_size"))
    t0 = time.monotonic()
    out = OPS[op](params) or {}
    out["engine_seconds"] = time.monotonic() - t0
    out["rss_self_kb"] = vm_hwm_kb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu_self_seconds"] = usage.ru_utime + usage.ru_stime
    out["cpu_children_seconds"] = children.ru_utime + children.ru_stime
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
