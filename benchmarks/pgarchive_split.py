"""Split throughput of plugins/module_utils/pgarchive.py against reading the same stream (on demand).

    .venv/bin/python benchmarks/pgarchive_split.py [--tenants 6] [--megabytes 40] [--narrow-rows 2000000] [--runs 5]

Makes its own PostgreSQL cluster (tests/lbtest.PgCluster) and one database of schema
tenants: ``--tenants`` schemas of realistic SaaS data (benchmarks/datagen.py: customers,
orders with JSON lines, notes of free text, incompressible attachments; about
``--megabytes`` of dump each) and one ``narrow`` schema of ``--narrow-rows`` rows of
three columns, the worst case (pg_dump -Z0 writes one chunk per row). One ``pg_dump -Fc
-Z0 -n ...`` of every schema is saved once; every round then reads it through a pipe
(``cat``, never seekable) in two ways, in alternating order:

- ``cat``: read(1 MiB) until the end, nothing else (the cost of reading the pipe);
- ``split``: read_head, owners, interleaved, then every schema's archive read(1 MiB) to
  its end, then drain (what backup_pass does, without zstd and age).

The published figure is the median over the rounds of (cat seconds / split seconds),
split's throughput as a fraction of reading alone, per data set (all schemas; the narrow
one alone). Also: the same with a live pg_dump instead of cat (what a backup sees).
Ratios only: absolute times on a shared machine swing by 2x.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import datagen  # noqa: E402
import lbtest  # noqa: E402

lbtest.load_engine()
from lifeboat_engine import pgarchive  # noqa: E402
CHUNK = 1 << 20


def log(*parts):
    sys.stderr.write(time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts) + "\n")
    sys.stderr.flush()


def build(cluster, db, tenants, megabytes, narrow_rows):
    import psycopg

    def connect(name):
        return psycopg.connect(host=cluster.socket_dir, port=cluster.port, user="postgres", dbname=name,
                               autocommit=True)

    datagen.create_template(connect, name="pga_template")
    with connect("postgres") as conn:
        conn.execute('CREATE DATABASE "%s" TEMPLATE pga_template' % db)
    units = datagen.units_for(megabytes)
    schemas = ["t%02d" % n for n in range(1, tenants + 1)]
    with connect(db) as conn:
        conn.execute("SET synchronous_commit = off")
        for n, schema in enumerate(schemas):
            s = '"%s".' % schema
            conn.execute('CREATE SCHEMA "%s"' % schema)
            conn.execute(datagen.SCHEMA_SQL.format(s=s))
            for sql in (datagen.customers_sql(s, 1, units, n), datagen.orders_sql(s, 1, units, n),
                        datagen.notes_sql(s, 1, units, n), datagen.attachments_sql(s, 1, units, n, units)):
                conn.execute(sql)
            conn.execute(datagen.INDEX_SQL.format(s=s))
            log("  tenant %s: %d customers" % (schema, units))
        conn.execute("CREATE SCHEMA narrow; CREATE TABLE narrow.events (id bigint PRIMARY KEY, kind int, "
                     "at timestamptz NOT NULL)")
        conn.execute("INSERT INTO narrow.events SELECT g, g %% 7, timestamptz '2026-01-01' + g * interval '1 second' "
                     "FROM generate_series(1, %d) g" % narrow_rows)
        conn.execute("DROP SCHEMA lbgen CASCADE")
        conn.execute("VACUUM (ANALYZE, FREEZE)")
    return schemas + ["narrow"]


def consume_cat(raw):
    total = 0
    while True:
        data = raw.read(CHUNK)
        if not data:
            return total
        total += len(data)


def consume_split(raw, schemas):
    head = pgarchive.read_head(raw)
    owner_of = pgarchive.owners(head.entries, schemas)
    wanted = [s for s in schemas if s not in pgarchive.interleaved(head.entries, owner_of)]
    splitter = pgarchive.Splitter(raw, head, owner_of, wanted)
    total = 0
    for _schema, reader in splitter.outputs():
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            total += len(data)
    splitter.drain()
    return total


def timed(argv, env, consume):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    t0, c0 = time.perf_counter(), time.process_time()
    total = consume(proc.stdout)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if proc.wait() != 0:
        raise RuntimeError("%s failed" % argv[0])
    return {"seconds": seconds, "cpu_seconds": cpu, "bytes": total}


def rounds(variants, runs):
    """Every variant once per round, the order alternating; {name: [result, ...]}."""
    out = dict((name, []) for name, _fn in variants)
    for r in range(runs):
        for name, fn in (variants if r % 2 == 0 else variants[::-1]):
            out[name].append(fn())
    return out


def ratio(results, num, den, key="seconds"):
    values = [a[key] / b[key] for a, b in zip(results[num], results[den])]
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def measure(label, argv, env, schemas, runs):
    res = rounds([("cat", lambda: timed(argv, env, consume_cat)),
                  ("split", lambda: timed(argv, env, lambda raw: consume_split(raw, schemas)))], runs)
    size = res["cat"][0]["bytes"]
    out = {"stream_bytes": size, "split_output_bytes": res["split"][0]["bytes"],
           "throughput_ratio": ratio(res, "cat", "split"),  # split throughput / cat throughput
           "cpu_ratio": ratio(res, "split", "cat", "cpu_seconds"),
           "split_mb_per_s_median": round(size / statistics.median(r["seconds"] for r in res["split"]) / 1e6, 1),
           "cat_mb_per_s_median": round(size / statistics.median(r["seconds"] for r in res["cat"]) / 1e6, 1)}
    log("%s: split runs at %.2fx the speed of reading the stream alone (%s)"
        % (label, out["throughput_ratio"]["median"], json.dumps(out)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=6)
    ap.add_argument("--megabytes", type=float, default=40, help="dump size of each realistic tenant")
    ap.add_argument("--narrow-rows", type=int, default=2000000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", help="also write the results as JSON to this file")
    args = ap.parse_args()

    lbtest.drop_stale_clusters()
    cluster = lbtest.PgCluster(tag="pgasplit").start()
    work = tempfile.mkdtemp(prefix="pgarchive-bench-")
    try:
        db = "pga_bench"
        log("building %d tenants of about %s MB and %d narrow rows" % (args.tenants, args.megabytes, args.narrow_rows))
        schemas = build(cluster, db, args.tenants, args.megabytes, args.narrow_rows)
        env = cluster.env()
        dump = [cluster.bin("pg_dump"), "--format=custom", "--compress=0", "--dbname=" + db] + \
            ["--schema=" + s for s in schemas]
        path = os.path.join(work, "all.dump")
        subprocess.run(dump + ["--file=" + path], env=env, check=True)
        narrow = os.path.join(work, "narrow.dump")
        subprocess.run(dump[:4] + ["--schema=narrow", "--file=" + narrow], env=env, check=True)
        results = {
            "pg_dump_version": subprocess.run([cluster.bin("pg_dump"), "--version"], capture_output=True,
                                              text=True, check=True).stdout.strip(),
            "python": sys.version.split()[0], "read_size": pgarchive.READ_SIZE, "runs": args.runs,
            "all_schemas_from_a_pipe": measure("all schemas (cat file |)", ["cat", path], env, schemas, args.runs),
            "narrow_rows_from_a_pipe": measure("narrow rows only (cat file |)", ["cat", narrow], env, ["narrow"],
                                               args.runs),
            "all_schemas_live_pg_dump": measure("all schemas (live pg_dump |)", dump, env, schemas, args.runs),
        }
        with open(path, "rb") as f:
            head = pgarchive.read_head(f)
            results["rows"] = {"toc_entries": len(head.entries), "data_blocks": len(head.data_entries())}
        print(json.dumps(results, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        cluster.drop()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
