"""lifeboat.backup benchmarks (`make bench`): every figure a ratio against a
baseline measured in the same run on the same data, median of several runs.

    .venv/bin/python benchmarks/run.py [--sizes 100,500,2000] [--runs 3] [--only backup,restore,...]

Creates its own PostgreSQL cluster (tests/lbtest.PgCluster) and, for the S3
benchmark, a moto server (tests/s3server.MotoServer); removes both at the
end. Results merge into benchmarks/results/<benchmark>.json (keyed by size),
so runs of different sizes add up; then docs/PERFORMANCE.md and the plots
are written from everything in results/ (benchmarks/report.py).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import lbbench as B  # noqa: E402
from lbbench import log  # noqa: E402

TARGETS = {
    "backup_vs_limit": 1.20,        # pg_backup <= 1.20 x pg_dump -Fc -Z0 > /dev/null
    "backup_vs_hand": 0.40,         # pg_backup <= 0.40 x pg_dump -Fc | age > file
    "size_vs_hand": 0.85,           # artifact <= 0.85 x that pipeline's file
    "memory_mb": 100,               # peak RSS < 100 MB
    "memory_growth": 1.10,          # 2 GB vs 100 MB within 10 %
    "restore_vs_pg_restore": 1.10,  # backup_restore <= 1.10 x pg_restore of a local -Fc dump
    "restore_jobs2_vs_jobs1": 1.00,  # jobs: 2 faster than jobs: 1 (ratio < 1)
    "fleet_vs_sequential": 0.75,    # agent, 200 tenants <= 0.75 x 200 sequential pg_dump
    "verify_vs_hand": 1.30,         # backup_verify <= 1.3 x (age -d | zstd -d | pg_restore)
    "s3_vs_awscli": 1.00,           # engine upload/download no slower than aws s3 cp
    "anonymize_vs_update": 0.50,    # rows/s >= 0.5 x one hand-written UPDATE (higher is better)
    "schemas_vs_whole_dump": 3.00,  # pg_backup schemas, 1,200 schema tenants <= 3 x one whole-database pg_dump -Fc -Z0
    "playbooks_backup_vs_sequential": 1.00,   # backup.yml, 200 tenants on one host <= 200 sequential pg_dump -Fc
    "playbooks_restore_vs_sequential": 1.00,  # dr_restore.yml's restore phase <= 200 x (createdb + pg_restore)
}


def mb(n):
    return round(n / 1e6, 1)


def print_ratio(label, stats, target, higher_is_better=False, size=None):
    if stats is None:
        log("RESULT %-34s (not measured)" % label)
        return None
    ok = B.verdict(stats["median"], target, higher_is_better)
    log("RESULT %-34s %6.3f  (target %s %.2f, %s; rounds %s)%s" % (
        label, stats["median"], ">=" if higher_is_better else "<=", target, "PASS" if ok else "MISS",
        stats["rounds"], (" at %s MB" % size) if size else ""))
    return ok


class Bench(object):
    def __init__(self, env, args):
        self.env = env
        self.args = args
        self.runs = args.runs
        self.pg_dump = env.bin("pg_dump")
        self.pg_restore = env.bin("pg_restore")
        self.pe = env.pg_env()
        self.ansible_ping = None

    # -- helpers -------------------------------------------------------------------------
    def tenant(self, size):
        name = "t%d" % size
        self.env.tenant(name, size)
        return name, self.env.dump_facts(name)

    def engine_backup(self, db, repo, **extra):
        params = dict(self.env.login, tenant=db, repository=repo, recipients=[self.env.public])
        params.update(extra)
        return B.worker("backup", params)

    def artifact(self, db, repo):
        """Back up ``db`` once into ``repo`` (kept) and return the artifact's path."""
        found = sorted(glob.glob(os.path.join(repo, db, "%s-*.pgdump.zst.age" % db)))
        if not found:
            self.engine_backup(db, repo)
            found = sorted(glob.glob(os.path.join(repo, db, "%s-*.pgdump.zst.age" % db)))
        return found[-1]

    def playbook_seconds(self, task):
        """Wall seconds of one ansible-playbook run of ``task`` on localhost (raises on failure)."""
        import lbtest

        t0 = time.monotonic()
        run = lbtest.run_playbook([task])
        seconds = time.monotonic() - t0
        if run.rc != 0 or not run.results or run.results[0].get("failed"):
            raise B.RunFailed("playbook failed: %r" % (run,))
        return {"seconds": seconds}

    def ping(self):
        return self.playbook_seconds({"name": "no-op", "ansible.builtin.ping": {}})

    # -- 1. backup ----------------------------------------------------------------------
    def backup(self, size):
        db, facts = self.tenant(size)
        env = self.env
        repo = env.path("bk-repo-%d" % size)
        hand_file = env.path("hand-%d.age" % size)
        variants = [
            ("limit", lambda: B.run_timed("%s -Fc -Z0 -d %s > /dev/null" % (self.pg_dump, db), env=self.pe, shell=True)),
            ("pg_backup", lambda: self.engine_backup(db, repo)),
        ]
        with_hand = size <= self.args.hand_max
        if with_hand:
            def hand():
                r = B.run_timed("%s -Fc -d %s | age -r %s > %s" % (self.pg_dump, db, env.public, hand_file),
                                env=self.pe, shell=True)
                r["size_stored"] = os.path.getsize(hand_file)
                return r
            variants.append(("hand_pipeline", hand))
        with_module = size <= self.args.module_max
        if with_module:
            args = dict(env.login, tenant=db, repository=repo, recipients=[env.public])
            task = {"name": "backup", "lifeboat.backup.pg_backup": args}
            variants += [("module_pg_backup", lambda: self.playbook_seconds(task)), ("ansible_ping", self.ping)]

        def teardown(name, res):
            shutil.rmtree(repo, ignore_errors=True)
            if os.path.exists(hand_file):
                os.unlink(hand_file)

        log("backup at %d MB (dump %s MB)" % (size, mb(facts["dump_bytes"])))
        B.run_timed("%s -Fc -Z0 -d %s > /dev/null" % (self.pg_dump, db), env=self.pe, shell=True)  # warm the cache
        rounds = B.compare(variants, self.runs, teardown=teardown, log_label="backup %d" % size)
        if with_module:
            for mod, ping in zip(rounds["module_pg_backup"], rounds["ansible_ping"]):
                mod["net_seconds"] = mod["seconds"] - ping["seconds"]
            rounds["module_net"] = [{"seconds": m["net_seconds"]} for m in rounds["module_pg_backup"]]
        ratios = {"pg_backup_vs_limit": B.ratio_stats(rounds, "pg_backup", "limit")}
        if with_hand:
            ratios["pg_backup_vs_hand"] = B.ratio_stats(rounds, "pg_backup", "hand_pipeline")
            ratios["hand_vs_limit"] = B.ratio_stats(rounds, "hand_pipeline", "limit")
            ratios["size_vs_hand"] = B.ratio_stats(rounds, "pg_backup", "hand_pipeline", key="size_stored")
        if with_module:
            ratios["module_net_vs_limit"] = B.ratio_stats(rounds, "module_net", "limit")
        print_ratio("backup: pg_backup / pg_dump -Z0", ratios["pg_backup_vs_limit"], TARGETS["backup_vs_limit"], size=size)
        if with_hand:
            print_ratio("backup: pg_backup / pg_dump|age", ratios["pg_backup_vs_hand"], TARGETS["backup_vs_hand"], size=size)
            print_ratio("backup: artifact size / pg_dump|age", ratios["size_vs_hand"], TARGETS["size_vs_hand"], size=size)
        if with_module:
            print_ratio("backup: module - ping / pg_dump -Z0", ratios["module_net_vs_limit"], TARGETS["backup_vs_limit"], size=size)
        eng = rounds["pg_backup"]
        record = {"size_mb": size, "dump_bytes": facts["dump_bytes"], "tenant": facts, "runs": self.runs,
                  "ratios": ratios, "times": B.summary(rounds),
                  "compression_ratio": round(B.median([r["size_raw"] / r["size_stored"] for r in eng]), 3),
                  "rss_mb": round(B.median([r["rss_self_kb"] for r in eng]) / 1024, 1),
                  "rss_mb_max": round(max(r["rss_self_kb"] for r in eng) / 1024, 1),
                  "ansible_ping_seconds": rounds.get("ansible_ping") and B.median([r["seconds"] for r in rounds["ansible_ping"]])}
        B.save("backup", size, record)

    # -- 1b. where the backup's time goes --------------------------------------------
    def backup_variants(self, size):
        db, facts = self.tenant(size)
        env = self.env
        out = env.path("variant.out")
        dump_env = dict((k, self.pe[k]) for k in ("PGHOST", "PGPORT", "PGUSER"))

        def var(encrypt, level, threads):
            return lambda: B.worker("store_variant", dict(dbname=db, pg_dump=self.pg_dump, env=dump_env, out=out,
                                                          recipient=env.public, encrypt=encrypt, level=level,
                                                          threads=threads))

        def cli(level):
            return lambda: B.run_timed("%s -Fc -Z0 -d %s | zstd -q -T2 -%d | age -r %s > %s" % (
                self.pg_dump, db, level, env.public, out), env=self.pe, shell=True)

        counts = ("SELECT count(*) FROM customers; SELECT count(*) FROM orders; SELECT count(*) FROM notes; "
                  "SELECT count(*) FROM attachments;")
        variants = [
            ("limit", lambda: B.run_timed("%s -Fc -Z0 -d %s > /dev/null" % (self.pg_dump, db), env=self.pe, shell=True)),
            ("pg_backup (default: level 1, 2 threads)", lambda: self.engine_backup(db, env.path("var-repo"))),
            ("pg_backup level 3", lambda: self.engine_backup(db, env.path("var-repo"), compression_level=3)),
            ("store l3 t2", var("inline", 3, 2)),
            ("store l3 t1", var("inline", 3, 1)),
            ("store l1 t2", var("inline", 1, 2)),
            ("store l1 t1", var("inline", 1, 1)),
            ("store l3 t2, age in a process", var("process", 3, 2)),
            ("store l1 t2, age in a process", var("process", 1, 2)),
            ("zstd l3 t2 only", var("none", 3, 2)),
            ("age only", var("inline", None, 2)),
            ("cli zstd -T2 -1 | age", cli(1)),
            ("cli zstd -T2 -3 | age", cli(3)),
            ("row counts alone", lambda: B.run_timed(["psql", "-X", "-q", "-d", db, "-c", counts], env=self.pe)),
        ]
        log("backup variants at %d MB" % size)

        def teardown(name, res):
            shutil.rmtree(env.path("var-repo"), ignore_errors=True)
            if os.path.exists(out):
                res.setdefault("size_stored", os.path.getsize(out))
                os.unlink(out)

        rounds = B.compare(variants, self.runs, teardown=teardown, log_label="variants %d" % size)
        ratios = dict((name, B.ratio_stats(rounds, name, "limit")) for name, _fn in variants if name != "limit")
        for name, st in ratios.items():
            log("RESULT variant %-34s %6.3f x limit" % (name, st["median"]))
        sizes = dict((name, B.median([r.get("size_stored") for r in rounds[name]])) for name, _fn in variants)
        B.save("backup_variants", size, {"size_mb": size, "dump_bytes": facts["dump_bytes"], "runs": self.runs,
                                         "ratios": ratios, "times": B.summary(rounds), "stored_bytes": sizes})

    # -- 3. restore ---------------------------------------------------------------------
    def restore(self, size, jobs_compare=False):
        db, facts = self.tenant(size)
        env = self.env
        repo = env.path("rs-repo-%d" % size)
        self.artifact(db, repo)
        plain = facts["dump_path"]  # pg_dump -Fc -Z0: the same bytes the artifact holds, unencrypted
        target = "r_%d" % size
        flags = "--no-owner --no-privileges --exit-on-error"

        def engine(jobs):
            return lambda: B.worker("restore", dict(env.login, tenant=db, repository=repo, artifact="latest",
                                                    identity_file=env.key_file, target_database=target, jobs=jobs))

        variants = [
            ("pg_restore", lambda: B.run_timed("%s -p %s %s && %s %s -d %s %s" % (
                env.bin("createdb"), self.pe["PGPORT"], target, self.pg_restore, flags, target, plain),
                env=self.pe, shell=True)),
            ("backup_restore", engine(1)),
        ]
        if jobs_compare:
            variants += [("backup_restore jobs 2", engine(2))]
        if size <= self.args.module_max and not jobs_compare:
            task = {"name": "restore", "lifeboat.backup.backup_restore": dict(
                env.login, tenant=db, repository=repo, artifact="latest", identity_file=env.key_file,
                target_database=target)}
            variants += [("module_backup_restore", lambda: self.playbook_seconds(task)), ("ansible_ping", self.ping)]
        log("restore at %d MB%s" % (size, " (jobs 1 vs 2)" if jobs_compare else ""))
        rounds = B.compare(variants, self.runs, setup=lambda name: env.drop_database(target),
                           teardown=lambda name, res: env.drop_database(target), log_label="restore %d" % size)
        ratios = {"backup_restore_vs_pg_restore": B.ratio_stats(rounds, "backup_restore", "pg_restore")}
        print_ratio("restore: backup_restore / pg_restore", ratios["backup_restore_vs_pg_restore"],
                    TARGETS["restore_vs_pg_restore"], size=size)
        if "module_backup_restore" in rounds:
            rounds["module_net"] = [{"seconds": m["seconds"] - p["seconds"]}
                                    for m, p in zip(rounds["module_backup_restore"], rounds["ansible_ping"])]
            ratios["module_net_vs_pg_restore"] = B.ratio_stats(rounds, "module_net", "pg_restore")
            print_ratio("restore: module - ping / pg_restore", ratios["module_net_vs_pg_restore"],
                        TARGETS["restore_vs_pg_restore"], size=size)
        if jobs_compare:
            ratios["jobs2_vs_jobs1"] = B.ratio_stats(rounds, "backup_restore jobs 2", "backup_restore")
            print_ratio("restore: jobs 2 / jobs 1", ratios["jobs2_vs_jobs1"], 1.0, size=size)
        eng = rounds["backup_restore"]
        record = {"size_mb": size, "dump_bytes": facts["dump_bytes"], "runs": self.runs, "ratios": ratios,
                  "times": B.summary(rounds), "rss_mb": round(B.median([r["rss_self_kb"] for r in eng]) / 1024, 1),
                  "rss_mb_max": round(max(r["rss_self_kb"] for r in eng) / 1024, 1)}
        if jobs_compare:
            j2 = rounds["backup_restore jobs 2"]
            record["rss_mb_jobs2"] = round(B.median([r["rss_self_kb"] for r in j2]) / 1024, 1)
        B.save("restore", size, record)
        if jobs_compare:
            B.save("restore_jobs", size, record)

    # -- 5. verify ----------------------------------------------------------------------
    def verify(self, size):
        db, facts = self.tenant(size)
        env = self.env
        repo = env.path("rs-repo-%d" % size)
        art = self.artifact(db, repo)
        scratch = "v_%d" % size
        variants = [
            ("by_hand", lambda: B.run_timed(
                "%s -p %s %s && age -d -i %s %s | zstd -q -d | %s --no-owner --no-privileges --exit-on-error -d %s" % (
                    env.bin("createdb"), self.pe["PGPORT"], scratch, env.key_file, art, self.pg_restore, scratch),
                env=self.pe, shell=True)),
            ("backup_verify", lambda: B.worker("verify", dict(env.login, tenant=db, repository=repo,
                                                              identity_file=env.key_file, record=False))),
        ]
        if size <= self.args.module_max:
            task = {"name": "verify", "lifeboat.backup.backup_verify": dict(
                env.login, tenant=db, repository=repo, identity_file=env.key_file, record=False)}
            variants += [("module_backup_verify", lambda: self.playbook_seconds(task)), ("ansible_ping", self.ping)]
        log("verify at %d MB" % size)
        rounds = B.compare(variants, self.runs, teardown=lambda name, res: env.drop_database(scratch),
                           log_label="verify %d" % size)
        ratios = {"backup_verify_vs_by_hand": B.ratio_stats(rounds, "backup_verify", "by_hand")}
        print_ratio("verify: backup_verify / by hand", ratios["backup_verify_vs_by_hand"], TARGETS["verify_vs_hand"],
                    size=size)
        if "module_backup_verify" in rounds:
            rounds["module_net"] = [{"seconds": m["seconds"] - p["seconds"]}
                                    for m, p in zip(rounds["module_backup_verify"], rounds["ansible_ping"])]
            ratios["module_net_vs_by_hand"] = B.ratio_stats(rounds, "module_net", "by_hand")
            print_ratio("verify: module - ping / by hand", ratios["module_net_vs_by_hand"], TARGETS["verify_vs_hand"],
                        size=size)
        eng = rounds["backup_verify"]
        B.save("verify", size, {"size_mb": size, "dump_bytes": facts["dump_bytes"], "runs": self.runs,
                                "ratios": ratios, "times": B.summary(rounds),
                                "rss_mb": round(B.median([r["rss_self_kb"] for r in eng]) / 1024, 1),
                                "rss_mb_max": round(max(r["rss_self_kb"] for r in eng) / 1024, 1)})

    # -- 4. fleet -----------------------------------------------------------------------
    def fleet(self):
        env = self.env
        n = self.args.fleet_tenants
        per_mb = self.args.fleet_mb
        names = ["f%03d" % i for i in range(1, n + 1)]
        import concurrent.futures

        import datagen

        t0 = time.monotonic()
        if not env.template:
            datagen.create_template(env.connect)
            env.template = True

        def make(i, name):
            datagen.create_tenant(env.connect, name, datagen.units_for(per_mb), seed=100 + i, parallel=1)
            return name

        todo = [(i, name) for i, name in enumerate(names) if name not in env.tenants]
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            for name in ex.map(lambda a: make(*a), todo):
                env.tenants[name] = {"name": name, "megabytes": per_mb}
        log("fleet: %d tenants of about %s MB made in %.0f s" % (n, per_mb, time.monotonic() - t0))
        repo = env.path("fleet-repo")
        dumps = env.path("fleet-dumps", "x")
        conf_dir = env.path("fleet-conf", "x")
        conf_dir = os.path.dirname(conf_dir)
        state = os.path.join(conf_dir, "state")
        os.makedirs(state, exist_ok=True)
        config = {
            "repository": repo, "recipients": [env.public], "parallel": self.args.fleet_parallel, "globals": False,
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
            f.write("set -e\nfor t in %s; do\n  %s -Fc -d \"$t\" -f %s/\"$t\".dump\ndone\n" % (
                " ".join(names), self.pg_dump, os.path.dirname(dumps)))
        variants = [
            ("sequential_pg_dump", lambda: B.run_timed(["/bin/bash", script], env=self.pe)),
            ("agent", lambda: B.worker("agent", {"argv": ["--config", cfg, "--tenants-env", tenv, "--no-progress",
                                                          "backup"]})),
        ]

        def teardown(name, res):
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(os.path.dirname(dumps), ignore_errors=True)
            os.makedirs(os.path.dirname(dumps), exist_ok=True)

        rounds = B.compare(variants, self.runs, teardown=teardown, log_label="fleet")
        ratios = {"agent_vs_sequential": B.ratio_stats(rounds, "agent", "sequential_pg_dump")}
        print_ratio("fleet: agent / %d sequential pg_dump" % n, ratios["agent_vs_sequential"],
                    TARGETS["fleet_vs_sequential"])
        B.save("fleet", n, {"tenants": n, "tenant_mb": per_mb, "parallel": self.args.fleet_parallel,
                            "runs": self.runs, "ratios": ratios, "times": B.summary(rounds)})

    # -- 6. S3 --------------------------------------------------------------------------
    def s3(self, size):
        env = self.env
        db, facts = self.tenant(size)
        art = self.artifact(db, env.path("rs-repo-%d" % size))
        name = os.path.basename(art)
        moto = env.s3()
        client = moto.client()
        aws_env = dict(os.environ)
        aws_env.update(moto.env())
        aws = [os.path.join(os.path.dirname(B.PY), "aws"), "--endpoint-url", moto.endpoint]
        opts = {"s3_endpoint_url": moto.endpoint, "s3_region": "us-east-1", "s3_access_key": moto.env()["AWS_ACCESS_KEY_ID"],
                "s3_secret_key": moto.env()["AWS_SECRET_ACCESS_KEY"]}
        down = env.path("s3-down.bin")
        # one copy to download from, uploaded by the AWS CLI
        subprocess.run(aws + ["s3", "cp", "--quiet", art, "s3://bench/src/%s/%s" % (db, name)], env=aws_env, check=True)
        variants = [
            ("aws_s3_cp_upload", lambda: B.run_timed(aws + ["s3", "cp", "--quiet", art, "s3://bench/aws/%s" % name],
                                                     env=aws_env)),
            ("engine_upload", lambda: B.worker("s3_put", {"repository": "s3://bench/eng", "s3": opts, "tenant": db,
                                                          "name": name, "file": art})),
            ("aws_s3_cp_download", lambda: B.run_timed(aws + ["s3", "cp", "--quiet", "s3://bench/src/%s/%s" % (db, name),
                                                              down], env=aws_env)),
            ("engine_download", lambda: B.worker("s3_get", {"repository": "s3://bench/src", "s3": opts, "tenant": db,
                                                            "name": name, "out": down})),
        ]

        def teardown(vname, res):
            for prefix in ("aws/", "eng/"):
                for obj in client.list_objects_v2(Bucket="bench", Prefix=prefix).get("Contents", []):
                    client.delete_object(Bucket="bench", Key=obj["Key"])
            if os.path.exists(down):
                os.unlink(down)

        log("S3 at %d MB (artifact %s MB)" % (size, mb(os.path.getsize(art))))
        rounds = B.compare(variants, self.runs, teardown=teardown, log_label="s3 %d" % size)
        ratios = {"upload_vs_awscli": B.ratio_stats(rounds, "engine_upload", "aws_s3_cp_upload"),
                  "download_vs_awscli": B.ratio_stats(rounds, "engine_download", "aws_s3_cp_download")}
        print_ratio("s3: engine upload / aws s3 cp", ratios["upload_vs_awscli"], TARGETS["s3_vs_awscli"], size=size)
        print_ratio("s3: engine download / aws s3 cp", ratios["download_vs_awscli"], TARGETS["s3_vs_awscli"], size=size)
        B.save("s3", size, {"size_mb": size, "object_bytes": os.path.getsize(art), "runs": self.runs, "ratios": ratios,
                            "times": B.summary(rounds),
                            "rss_mb_upload": round(B.median([r["rss_self_kb"] for r in rounds["engine_upload"]]) / 1024, 1),
                            "rss_mb_download": round(B.median([r["rss_self_kb"] for r in rounds["engine_download"]]) / 1024, 1),
                            "rss_mb_awscli_upload": round(B.median([r["rss_kb"] for r in rounds["aws_s3_cp_upload"]]) / 1024, 1),
                            "rss_mb_awscli_download": round(B.median([r["rss_kb"] for r in rounds["aws_s3_cp_download"]]) / 1024, 1)})

    # -- 7. anonymize -------------------------------------------------------------------
    def anonymize(self):
        import datagen

        env = self.env
        rows = self.args.anon_rows
        src = "anon_src"
        if src not in env.tenants:
            log("anonymize: making a table of %d people" % rows)
            env.sql('CREATE DATABASE "%s"' % src)
            env.sql("CREATE EXTENSION pgcrypto", db=src)
            datagen.create_people(env.connect, src, rows)
            env.tenants[src] = {"rows": rows}
        run_db = "anon_run"
        secret = "bench-secret-0123456789abcdef0123456789"
        update = ("UPDATE people SET full_name = '[redacted]', "
                  "email = 'anon-' || left(encode(hmac(lower(btrim(email)), '%s', 'sha256'), 'hex'), 24) "
                  "|| '@anonymized.invalid', phone = NULL "
                  "WHERE created_at < now() - interval '30 days'" % secret)
        rules = [{"table": "people", "timestamp": "created_at", "key": "id",
                  "columns": {"full_name": "redact", "email": "email", "phone": "null"}}]
        params = dict(env.login, tenant=run_db, rules=rules, older_than_days=30, hmac_secret=secret)
        checksum = "SELECT md5(string_agg(full_name || '|' || email || '|' || coalesce(phone, '-'), ',' ORDER BY id)) FROM people"
        sums = {}
        variants = [
            ("hand_update", lambda: B.run_timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", run_db, "-c", update],
                                                env=self.pe)),
            ("tenant_anonymize", lambda: B.worker("anonymize", params)),
        ]

        def setup(name):
            env.drop_database(run_db)
            env.sql('CREATE DATABASE "%s" TEMPLATE "%s"' % (run_db, src))

        def teardown(name, res):
            with env.connect(run_db) as conn:
                sums.setdefault(name, conn.execute(checksum).fetchone()[0])
            env.drop_database(run_db)

        log("anonymize: %d rows" % rows)
        rounds = B.compare(variants, self.runs, setup=setup, teardown=teardown, log_label="anonymize")
        # rows per second relative to the UPDATE: t_update / t_engine
        ratios = {"rows_per_s_vs_update": B.ratio_stats(rounds, "tenant_anonymize", "hand_update", invert=True)}
        print_ratio("anonymize: rows/s vs one UPDATE", ratios["rows_per_s_vs_update"], TARGETS["anonymize_vs_update"],
                    higher_is_better=True)
        same = len(set(sums.values())) == 1
        log("anonymize: same change as the UPDATE: %s" % same)
        t_eng = B.median([r["seconds"] for r in rounds["tenant_anonymize"]])
        t_upd = B.median([r["seconds"] for r in rounds["hand_update"]])
        B.save("anonymize", rows, {"rows": rows, "runs": self.runs, "ratios": ratios, "times": B.summary(rounds),
                                   "same_result_as_update": same, "rows_per_s_engine": round(rows / t_eng),
                                   "rows_per_s_update": round(rows / t_upd),
                                   "rss_mb": round(B.median([r["rss_self_kb"] for r in rounds["tenant_anonymize"]]) / 1024, 1)})


ALL = ("backup", "variants", "restore", "verify", "fleet", "s3", "anonymize", "jobs", "schemas", "dbtenants", "playbooks")
# `make bench` runs the standard set (about 30 minutes on 2 busy cores); the fleet and the 2 GB tenant are
# separate runs of about 20 and 35 minutes that merge into the same results:
#   make bench BENCH_ARGS='--only fleet'
#   make bench BENCH_ARGS='--sizes 2000 --only backup,jobs,verify'
# and the many-tenant runs of issue 15 (benchmarks/multitenant.py; 15 to 30 minutes each):
#   make bench BENCH_ARGS='--only schemas'     (1,200 schema tenants in one database, and 300)
#   make bench BENCH_ARGS='--only dbtenants'   (500 small database tenants)
# and the fleet playbooks at 10 to 1,000 tenants per host (issue 20, benchmarks/playbooks.py; about 40 minutes):
#   make bench BENCH_ARGS='--only playbooks'
STANDARD = ("backup", "variants", "restore", "verify", "s3", "anonymize")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "100,500"),
                    help="tenant sizes in MB of dump (default 100,500; 2000 is a run of its own)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")), help="rounds per comparison (>= 3)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ",".join(STANDARD)),
                    help="comma-separated subset of: %s (default: %s)" % (",".join(ALL), ",".join(STANDARD)))
    ap.add_argument("--hand-max", type=int, default=500, help="largest size for the gzip hand pipeline (slow)")
    ap.add_argument("--module-max", type=int, default=100, help="largest size timed through ansible-playbook")
    ap.add_argument("--detail-max", type=int, default=500,
                    help="largest size for restore/verify/S3 (the largest size always gets memory figures)")
    ap.add_argument("--variants-size", type=int, default=100, help="size for the backup pipeline variants")
    ap.add_argument("--jobs-size", type=int, default=None, help="size for jobs 1 vs 2 (default: the largest)")
    ap.add_argument("--fleet-tenants", type=int, default=200)
    ap.add_argument("--fleet-mb", type=float, default=0.5)
    ap.add_argument("--fleet-parallel", type=int, default=2)
    ap.add_argument("--anon-rows", type=int, default=1000000)
    ap.add_argument("--schema-tenants", default="300,1200",
                    help="schemas: databases of this many schema tenants (15 tables each), one pass each")
    ap.add_argument("--schema-sample", type=int, default=20,
                    help="schemas: tenants dumped one pg_dump -n each, extrapolated (0: skip)")
    ap.add_argument("--db-tenants", type=int, default=500, help="dbtenants: number of small database tenants")
    ap.add_argument("--playbook-tenants", default="10,100,200,1000",
                    help="playbooks: tenants per host for backup.yml, dr_restore.yml, verify.yml and drill.yml")
    ap.add_argument("--report-only", action="store_true", help="only rewrite docs/PERFORMANCE.md from results/")
    args = ap.parse_args(argv)
    only = set(x.strip() for x in args.only.split(",") if x.strip())
    unknown = only - set(ALL)
    if unknown:
        ap.error("unknown benchmark(s): %s" % ", ".join(sorted(unknown)))
    if args.runs < 3:
        log("warning: fewer than 3 rounds; medians of 1 or 2 runs are noise on a shared machine")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not args.report_only:
        started = time.monotonic()
        with B.Env() as env:
            bench = Bench(env, args)
            largest = max(sizes) if sizes else None
            for size in sorted(sizes):
                if "backup" in only:
                    bench.backup(size)
                if "variants" in only and size == args.variants_size:
                    bench.backup_variants(size)
                detail = size <= args.detail_max or size == largest
                jobs_here = "jobs" in only and size == (args.jobs_size or largest)
                if jobs_here:
                    # one comparison gives the restore ratio, jobs 2 against jobs 1, and the memory figures
                    bench.restore(size, jobs_compare=True)
                elif "restore" in only and detail:
                    bench.restore(size)
                if "verify" in only and detail:
                    bench.verify(size)
                if "s3" in only and size <= args.detail_max:
                    bench.s3(size)
                # a large tenant is not needed any more: free its disk for the next size
                if size != min(sizes):
                    env.drop_database("t%d" % size)
                    env.tenants.pop("t%d" % size, None)
            if "fleet" in only:
                bench.fleet()
            if "anonymize" in only:
                bench.anonymize()
            if "schemas" in only or "dbtenants" in only:
                import multitenant

                if "schemas" in only:
                    rec = multitenant.bench_schemas(
                        bench, sizes=[int(x) for x in args.schema_tenants.split(",") if x.strip()],
                        sample=args.schema_sample)
                    print_ratio("schemas: pass / one whole pg_dump", rec["ratios"]["pass_vs_whole_%d" % rec["tenants"]],
                                TARGETS["schemas_vs_whole_dump"])
                if "dbtenants" in only:
                    multitenant.bench_dbtenants(bench, n=args.db_tenants, parallel=args.fleet_parallel)
            if "playbooks" in only:
                import playbooks

                playbooks.bench_playbooks(bench, sizes=[int(x) for x in args.playbook_tenants.split(",") if x.strip()],
                                          parallel=args.fleet_parallel)
        log("bench run took %.1f min" % ((time.monotonic() - started) / 60))
    import report

    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
