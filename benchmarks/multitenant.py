"""Many tenants (issue 15): the fixtures and the two benchmarks behind run.py's ``schemas`` and ``dbtenants``.

``schemas``: one database of N schema tenants (t0001 ... tNNNN) of 15 tables each, every
table with a primary key and 5 to 20 rows, and a ``public.plans`` table every tenant's
``accounts`` references (the database's shared part). Made server-side, one DO block per
100 schemas. Compared in the same rounds:

- ``pg_dump -Fc -Z0 > /dev/null`` of the whole database (the baseline; it locks every
  table in one transaction, so it runs with ``max_locks_per_transaction`` raised);
- ``pg_backup`` with ``schemas`` (``backup_pass.run``) over every tenant, with the default
  ``max_locks_per_transaction`` (64): the shared part plus one artifact per tenant;
- optionally, the old way: one ``pg_dump -Fc -Z0 -n tNNNN`` per tenant, for a sample of
  tenants (extrapolated to all of them).

The server is restarted before every timed run (untimed), with the setting that run needs,
so that every variant starts from the same state (cold shared buffers, warm OS cache).

``dbtenants``: N small databases (5 tables, a few hundred rows), each a copy of one
template database; the agent (``lifeboat backup``, parallel runner) against N sequential
``pg_dump -Fc -Z0`` runs.
"""

import json
import os
import shutil
import subprocess
import time

import lbbench as B
from lbbench import log

TABLES = ("accounts", "users", "roles", "projects", "tasks", "comments", "invoices", "invoice_lines", "payments",
          "products", "orders", "order_items", "addresses", "settings", "audit_log")
SCHEMAS_PER_BLOCK = 100
DEFAULT_LOCKS = 64
RAISED_LOCKS = 512
# PostgreSQL's (and Debian's) default; the test clusters of tests/lbtest.py run with 60, which
# would make the default lock table (max_locks_per_transaction x max_connections) smaller than a
# stock server's.
STOCK_CONNECTIONS = 100

_PLANS_SQL = """
CREATE TABLE public.plans (id integer PRIMARY KEY, name text NOT NULL, monthly numeric(8,2) NOT NULL);
INSERT INTO public.plans VALUES (1, 'free', 0), (2, 'team', 49), (3, 'business', 199), (4, 'enterprise', 999);
"""

# One transaction for 100 schemas: 1,500 tables, 1,500 indexes (run with the lock table raised).
_BLOCK_SQL = """
DO $gen$
DECLARE
  s text; t text; n int; k int;
  tabs text[] := %(tables)s;
BEGIN
  FOR i IN %(lo)s..%(hi)s LOOP
    s := 't' || lpad(i::text, 4, '0');
    EXECUTE format('CREATE SCHEMA %%I', s);
    k := 0;
    FOREACH t IN ARRAY tabs LOOP
      k := k + 1;
      n := 5 + abs(hashint4(i * 16 + k)) %% 16;
      EXECUTE format('CREATE TABLE %%I.%%I (id integer PRIMARY KEY, name text NOT NULL, status text NOT NULL, '
                     'amount numeric(12,2), created_at timestamptz NOT NULL, data jsonb)', s, t);
      EXECUTE format($ins$INSERT INTO %%I.%%I
        SELECT g, %%L || ' ' || g, (ARRAY['new','open','done','archived'])[1 + g %%%% 4],
               (abs(hashint8(g * 7919 + %%s)) %%%% 1000000) / 100.0,
               timestamptz '2024-01-01 00:00+00' + make_interval(secs => abs(hashint8(g + %%s)) %%%% 31536000),
               jsonb_build_object('n', g, 'tenant', %%L, 'flag', g %%%% 3 = 0)
          FROM generate_series(1, %%s) g$ins$, s, t, t, i * 16 + k, i * 16 + k, s, n);
    END LOOP;
    EXECUTE format('ALTER TABLE %%I.accounts ADD COLUMN plan_id integer NOT NULL DEFAULT %%s '
                   'REFERENCES public.plans (id)', s, 1 + i %% 4);
  END LOOP;
END
$gen$;
"""


def print_ratio(label, stats, target=None):
    if stats is None:
        log("RESULT %-44s (not measured)" % label)
        return
    log("RESULT %-44s %6.3f%s (rounds %s)" % (
        label, stats["median"], "" if target is None else "  (target <= %.2f, %s)" % (
            target, "PASS" if stats["median"] <= target else "MISS"), stats["rounds"]))


def schema_names(n):
    return ["t%04d" % i for i in range(1, n + 1)]


def create_schema_database(env, dbname, n, parallel=2):
    """Database ``dbname`` with ``n`` schema tenants (needs the lock table raised). Returns its facts."""
    import concurrent.futures

    t0 = time.monotonic()
    env.sql('CREATE DATABASE "%s"' % dbname)
    env.sql(_PLANS_SQL, db=dbname)
    tables = "ARRAY[%s]" % ", ".join("'%s'" % t for t in TABLES)
    blocks = [_BLOCK_SQL % {"tables": tables, "lo": lo, "hi": min(n, lo + SCHEMAS_PER_BLOCK - 1)}
              for lo in range(1, n + 1, SCHEMAS_PER_BLOCK)]

    def run(sql):
        with env.connect(dbname) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(sql)

    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        for f in [ex.submit(run, b) for b in blocks]:
            f.result()
    env.sql("VACUUM ANALYZE", db=dbname)
    seconds = time.monotonic() - t0
    with env.connect(dbname) as conn:
        facts = {
            "database": dbname,
            "schemas": n,
            "tables": conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                                   "WHERE c.relkind = 'r' AND s.nspname ~ '^t[0-9]{4}$'").fetchone()[0],
            "rows": conn.execute("SELECT sum(n_live_tup) FROM pg_stat_user_tables "
                                 "WHERE schemaname ~ '^t[0-9]{4}$'").fetchone()[0],
            "database_bytes": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0],
            "pg_class_rows": conn.execute("SELECT count(*) FROM pg_class").fetchone()[0],
            "generate_seconds": round(seconds, 1),
        }
    facts["rows"] = int(facts["rows"] or 0)
    log("  %s: %d schemas, %d tables, %d rows, %.0f MB, made in %.0f s" % (
        dbname, n, facts["tables"], facts["rows"], facts["database_bytes"] / 1e6, seconds))
    return facts


# -- the lock table ------------------------------------------------------------------------------

class LockSetting(object):
    """Restart the bench cluster with a given max_locks_per_transaction (ALTER SYSTEM, then a restart)."""

    def __init__(self, env):
        self.env = env
        self.current = DEFAULT_LOCKS
        self.stock = False  # max_connections set to STOCK_CONNECTIONS (at the first restart)

    def restart(self, locks):
        c = self.env.cluster
        if not self.stock:
            self.env.sql("ALTER SYSTEM SET max_connections = %d" % STOCK_CONNECTIONS)
            self.stock = True
        if locks != self.current:
            if locks == DEFAULT_LOCKS:
                self.env.sql("ALTER SYSTEM RESET max_locks_per_transaction")
            else:
                self.env.sql("ALTER SYSTEM SET max_locks_per_transaction = %d" % locks)
        subprocess.run(["pg_ctlcluster", str(c.version), c.name, "restart"], check=True, capture_output=True)
        self.current = locks
        for _attempt in range(100):
            try:
                got = int(self.env.connect().execute("SHOW max_locks_per_transaction").fetchone()[0])
                break
            except Exception:  # noqa: BLE001 (still starting)
                time.sleep(0.1)
        else:
            raise B.RunFailed("the bench cluster did not come back after a restart")
        if got != locks:
            raise B.RunFailed("max_locks_per_transaction is %s after the restart, not %s" % (got, locks))

    def capacity(self):
        with self.env.connect() as conn:
            return int(conn.execute(
                "SELECT current_setting('max_locks_per_transaction')::int * (current_setting('max_connections')::int"
                " + current_setting('max_prepared_transactions')::int)").fetchone()[0])


# -- schemas ---------------------------------------------------------------------------------------

def bench_schemas(bench, sizes=(300, 1200), sample=20):
    """Whole-database pg_dump against pg_backup's pass over every schema tenant, at each size."""
    env = bench.env
    locks = LockSetting(env)
    pg_dump = bench.pg_dump
    pe = bench.pe
    facts = {}
    try:
        locks.restart(RAISED_LOCKS)  # making 100 schemas per transaction locks 3,000 relations
        for n in sizes:
            db = "mt%d" % n
            if db not in env.tenants:
                log("schemas: making %s (%d schema tenants of %d tables)" % (db, n, len(TABLES)))
                env.tenants[db] = create_schema_database(env, db, n)
            facts[n] = env.tenants[db]
        largest = max(sizes)
        # sizes of the baseline's output (measured once, untimed)
        for n in sizes:
            res = subprocess.run("%s -Fc -Z0 -d mt%d | wc -c" % (pg_dump, n), shell=True, env=pe, check=True,
                                 capture_output=True, text=True)
            facts[n]["dump_bytes"] = int(res.stdout.strip())
        locks.restart(DEFAULT_LOCKS)
        capacity_default = locks.capacity()

        def whole(n):
            return lambda: B.run_timed("%s -Fc -Z0 -d mt%d > /dev/null" % (pg_dump, n), env=pe, shell=True)

        def lifeboat(n):
            def go():
                repo = env.path("mt-repo-%d" % n)
                params = dict(env.login, database="mt%d" % n, repository=repo, recipients=[env.public],
                              schemas=[{"tenant": s} for s in schema_names(n)])
                res = B.worker("backup_pass", dict(params, _phases=True))
                shutil.rmtree(repo, ignore_errors=True)
                return res
            return go

        sample_names = []
        if sample:
            step = max(1, largest // sample)
            sample_names = schema_names(largest)[::step][:sample]
        script = env.path("mt-sample.sh")
        with open(script, "w") as f:
            f.write("set -e\nfor s in %s; do\n  %s -Fc -Z0 -n \"$s\" -d mt%d > /dev/null\ndone\n" % (
                " ".join(sample_names), pg_dump, largest))

        variants = []
        setting = {}
        for n in sorted(sizes, reverse=True):
            variants.append(("pg_dump_whole_%d" % n, whole(n)))
            setting["pg_dump_whole_%d" % n] = RAISED_LOCKS
            variants.append(("lifeboat_pass_%d" % n, lifeboat(n)))
            setting["lifeboat_pass_%d" % n] = DEFAULT_LOCKS
        if sample_names:
            variants.append(("pg_dump_per_schema_sample", lambda: B.run_timed(["/bin/bash", script], env=pe)))
            setting["pg_dump_per_schema_sample"] = DEFAULT_LOCKS

        def setup(name):
            locks.restart(setting[name])

        log("schemas: %s; lock table %d (default setting) and %d (raised, for the whole-database pg_dump)" % (
            ", ".join("%d tenants" % n for n in sizes), capacity_default, RAISED_LOCKS * capacity_default // DEFAULT_LOCKS))
        rounds = B.compare(variants, bench.runs, setup=setup, log_label="schemas")
    finally:
        try:
            if locks.current != DEFAULT_LOCKS:
                locks.restart(DEFAULT_LOCKS)
        except Exception as e:  # noqa: BLE001
            log("schemas: could not put max_locks_per_transaction back: %s" % e)
    for res in rounds.get("pg_dump_per_schema_sample", []):
        res["extrapolated_seconds"] = res["seconds"] * largest / len(sample_names)
    ratios, per_size = {}, {}
    for n in sizes:
        lb = rounds["lifeboat_pass_%d" % n]
        ratios["pass_vs_whole_%d" % n] = B.ratio_stats(rounds, "lifeboat_pass_%d" % n, "pg_dump_whole_%d" % n)
        failed = max(r["failed_tenants"] for r in lb)
        per_size[str(n)] = {
            "tenants": n,
            "tables": facts[n]["tables"],
            "rows": facts[n]["rows"],
            "database_bytes": facts[n]["database_bytes"],
            "dump_bytes": facts[n]["dump_bytes"],
            "generate_seconds": facts[n]["generate_seconds"],
            "pg_dump_runs": lb[0]["pg_dump_runs"],
            "lock_budget": lb[0]["lock_budget"],
            "artifacts_written": lb[0]["written"],
            "failed_tenants": failed,
            "failed_examples": lb[0].get("failed_examples"),
            "warnings": lb[0].get("warnings"),
            "stored_bytes": lb[0]["stored_bytes"],
            "seconds_per_tenant": round(B.median([r["seconds"] for r in lb]) / n, 4),
            "seconds_per_tenant_rounds": [round(r["seconds"] / n, 4) for r in lb],
            "whole_seconds_per_tenant": round(B.median([r["seconds"] for r in rounds["pg_dump_whole_%d" % n]]) / n, 4),
            "rss_mb": round(B.median([r["rss_self_kb"] for r in lb]) / 1024, 1),
            "rss_mb_max": round(max(r["rss_self_kb"] for r in lb) / 1024, 1),
            "pass_seconds_reported": [r.get("pass_seconds") for r in lb],
            "phases": lb[-1].get("phases"),
            "pg_dump_whole_rss_mb": round(B.median([r["rss_kb"] for r in rounds["pg_dump_whole_%d" % n]]) / 1024, 1),
        }
        print_ratio("schemas: pass / whole pg_dump at %d" % n, ratios["pass_vs_whole_%d" % n])
    small, large = min(sizes), max(sizes)
    # seconds per tenant at the largest size / at the smallest, per round (both measured in the same round)
    per = [(a["seconds"] / large) / (b["seconds"] / small)
           for a, b in zip(rounds["lifeboat_pass_%d" % large], rounds["lifeboat_pass_%d" % small])]
    ratios["per_tenant_growth"] = {"median": round(B.median(per), 3), "min": round(min(per), 3),
                                   "max": round(max(per), 3), "rounds": [round(x, 3) for x in per]}
    per = [(a["seconds"] / large) / (b["seconds"] / small)
           for a, b in zip(rounds["pg_dump_whole_%d" % large], rounds["pg_dump_whole_%d" % small])]
    ratios["whole_per_tenant_growth"] = {"median": round(B.median(per), 3), "min": round(min(per), 3),
                                         "max": round(max(per), 3), "rounds": [round(x, 3) for x in per]}
    if sample_names:
        ratios["per_schema_extrapolated_vs_whole"] = B.ratio_stats(
            dict(rounds, extrapolated=[{"seconds": r["extrapolated_seconds"]}
                                       for r in rounds["pg_dump_per_schema_sample"]]),
            "extrapolated", "pg_dump_whole_%d" % large)
        ratios["pass_vs_per_schema_extrapolated"] = B.ratio_stats(
            dict(rounds, extrapolated=[{"seconds": r["extrapolated_seconds"]}
                                       for r in rounds["pg_dump_per_schema_sample"]]),
            "lifeboat_pass_%d" % large, "extrapolated")
    record = {"tenants": large, "sizes": sorted(sizes), "tables_per_tenant": len(TABLES), "runs": bench.runs,
              "lock_capacity_default": capacity_default, "max_locks_default": DEFAULT_LOCKS,
              "max_connections": capacity_default // DEFAULT_LOCKS,
              "max_locks_raised": RAISED_LOCKS, "sample": len(sample_names), "sample_tenants": sample_names,
              "per_size": per_size, "ratios": ratios, "times": B.summary(rounds)}
    B.save("schemas", large, record)
    return record


# -- database tenants ------------------------------------------------------------------------------

_DBT_TEMPLATE_SQL = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers, total numeric(12,2),
                     status text NOT NULL, placed_at timestamptz NOT NULL);
CREATE TABLE products (id integer PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL, price numeric(10,2));
CREATE TABLE order_items (order_id integer NOT NULL REFERENCES orders, line integer NOT NULL,
                          product_id integer NOT NULL REFERENCES products, qty integer NOT NULL,
                          PRIMARY KEY (order_id, line));
CREATE TABLE settings (key text PRIMARY KEY, value jsonb);
INSERT INTO customers SELECT g, 'Customer ' || g, 'c' || g || '@example.org',
       timestamptz '2024-01-01 00:00+00' + make_interval(hours => g) FROM generate_series(1, 200) g;
INSERT INTO products SELECT g, 'SKU-' || g, 'Product ' || g, (g * 37 %% 1000) / 10.0 FROM generate_series(1, 50) g;
INSERT INTO orders SELECT g, 1 + g %% 200, (g * 91 %% 100000) / 100.0, (ARRAY['new','paid','shipped'])[1 + g %% 3],
       timestamptz '2024-02-01 00:00+00' + make_interval(mins => g) FROM generate_series(1, 400) g;
INSERT INTO order_items SELECT 1 + (g - 1) / 2, 1 + (g - 1) %% 2, 1 + g %% 50, 1 + g %% 5 FROM generate_series(1, 800) g;
INSERT INTO settings SELECT 'key' || g, jsonb_build_object('v', g) FROM generate_series(1, 20) g;
"""


def create_db_tenants(env, names, template="dbt_template"):
    """One small template database, then a copy of it per name (CREATE DATABASE ... TEMPLATE)."""
    t0 = time.monotonic()
    if template not in env.tenants:
        env.sql('CREATE DATABASE "%s"' % template)
        env.sql(_DBT_TEMPLATE_SQL.replace("%%", "%"), db=template)
        env.sql("VACUUM ANALYZE", db=template)
        env.tenants[template] = {}
    with env.connect() as conn:
        have = set(r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall())
        for name in names:
            if name not in have:
                conn.execute('CREATE DATABASE "%s" TEMPLATE "%s" STRATEGY FILE_COPY' % (name, template))
    seconds = time.monotonic() - t0
    with env.connect(template) as conn:
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        rows = conn.execute("SELECT sum(n_live_tup) FROM pg_stat_user_tables").fetchone()[0]
    log("dbtenants: %d databases (%d rows, %.1f MB on disk each) made in %.0f s" % (
        len(names), rows, db_bytes / 1e6, seconds))
    return {"database_bytes": db_bytes, "rows": int(rows), "generate_seconds": round(seconds, 1)}


def bench_dbtenants(bench, n=500, parallel=2):
    env = bench.env
    names = ["d%03d" % i for i in range(1, n + 1)]
    facts = create_db_tenants(env, names)
    one = subprocess.run([bench.pg_dump, "-Fc", "-Z0", "-d", names[0]], env=bench.pe, check=True,
                         capture_output=True).stdout
    facts["dump_bytes"] = len(one)
    repo = env.path("dbt-repo")
    conf_dir = os.path.dirname(env.path("dbt-conf", "x"))
    dumps = os.path.dirname(env.path("dbt-dumps", "x"))
    state = os.path.join(conf_dir, "state")
    os.makedirs(state, exist_ok=True)
    config = {
        "repository": repo, "recipients": [env.public], "parallel": parallel, "globals": False,
        "connection": {"login_unix_socket": env.cluster.socket_dir, "login_port": env.cluster.port,
                       "login_user": "postgres"},
        "lock_file": os.path.join(state, "agent.lock"), "state_dir": state, "metrics_dir": state,
    }
    cfg = os.path.join(conf_dir, "lifeboat.yml")
    with open(cfg, "w") as f:
        json.dump(config, f)  # JSON is YAML
    tenv = os.path.join(conf_dir, "tenants.env")
    with open(tenv, "w") as f:
        f.write('TENANTS="%s"\n' % " ".join(names))
    script = os.path.join(conf_dir, "sequential.sh")
    with open(script, "w") as f:
        f.write("set -e\nfor t in %s; do\n  %s -Fc -Z0 -d \"$t\" -f %s/\"$t\".dump\ndone\n" % (
            " ".join(names), bench.pg_dump, dumps))
    variants = [
        ("sequential_pg_dump", lambda: B.run_timed(["/bin/bash", script], env=bench.pe)),
        ("agent", lambda: B.worker("agent", {"argv": ["--config", cfg, "--tenants-env", tenv, "--no-progress",
                                                      "backup"]})),
    ]
    counted = {}

    def teardown(name, res):
        if name == "agent":
            counted.setdefault("artifacts", []).append(sum(
                1 for t in names if os.path.isdir(os.path.join(repo, t))
                and any(x.endswith(".pgdump.zst.age") for x in os.listdir(os.path.join(repo, t)))))
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(dumps, ignore_errors=True)
        os.makedirs(dumps, exist_ok=True)

    log("dbtenants: %d database tenants, agent parallel %d against %d sequential pg_dump -Fc -Z0" % (n, parallel, n))
    rounds = B.compare(variants, bench.runs, teardown=teardown, log_label="dbtenants")
    ratios = {"agent_vs_sequential": B.ratio_stats(rounds, "agent", "sequential_pg_dump")}
    print_ratio("dbtenants: agent / %d sequential pg_dump -Z0" % n, ratios["agent_vs_sequential"])
    agent = rounds["agent"]
    record = {"tenants": n, "parallel": parallel, "runs": bench.runs, "tenant": facts, "ratios": ratios,
              "times": B.summary(rounds), "artifacts_written": counted.get("artifacts"),
              "seconds_per_tenant_agent": round(B.median([r["seconds"] for r in agent]) / n, 4),
              "seconds_per_tenant_sequential": round(
                  B.median([r["seconds"] for r in rounds["sequential_pg_dump"]]) / n, 4),
              "rss_mb": round(B.median([r["rss_self_kb"] for r in agent]) / 1024, 1)}
    B.save("dbtenants", n, record)
    return record
