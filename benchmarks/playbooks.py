"""The fleet playbooks at many tenants per host (issue 20): run.py's ``playbooks``.

One host (localhost, ``ansible_connection: local``) with N small database tenants, each a copy of
multitenant.py's template (5 tables, 1,470 rows, foreign keys), for N in ``--playbook-tenants``
(default 10, 100, 200 and 1000). Compared in the same rounds, on the same databases:

- backup: N sequential ``pg_dump -Fc -d tenant -f tenant.dump`` (pg_dump's default compression),
  against ``playbooks/backup.yml`` with the N tenants in ``lifeboat_tenants`` (wall time of the
  whole ``ansible-playbook``: start-up, selection, the backups, the roles and grants, the report);
- restore: N sequential ``createdb`` + ``pg_restore`` of those dumps, against the restore phase of
  ``playbooks/dr_restore.yml`` (the tenants' databases dropped first: the lost host), read from its
  JSON report's timeline, and the whole ``dr_restore.yml`` run.

Then, once per N (untimed by rounds): ``verify.yml`` and ``drill.yml`` over the N tenants, for
their wall time per tenant. The N = 1000 case runs one round (it takes about 20 minutes); the
others ``--runs`` rounds. Results in results/playbooks.json, keyed by N; report.py writes the
table, the per-tenant cost of each playbook and the plot of RTO against tenants per host.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import lbbench as B
import multitenant
from lbbench import log

ROOT = os.path.dirname(B.HERE)
PLAYBOOKS = os.path.join(ROOT, "playbooks")
ONE_ROUND_FROM = 500  # tenants per host from which one round is enough (and all there is time for)


def _inventory(env, base, names, parallel):
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "lifeboat_python": sys.executable,
            "lifeboat_tenants": [{"name": n, "engine": "postgresql", "database": n} for n in names]}
    group = {"lifeboat_repository": os.path.join(base, "repository"), "lifeboat_recipients": [env.public],
             "lifeboat_identity_file": env.key_file, "lifeboat_report_dir": os.path.join(base, "reports"),
             "lifeboat_connection": env.login, "lifeboat_parallel": parallel}
    os.makedirs(os.path.join(base, "inventory", "group_vars"), exist_ok=True)
    with open(os.path.join(base, "inventory", "hosts.yml"), "w") as f:
        json.dump({"all": {"hosts": {"localhost": host}}}, f)  # JSON is YAML
    with open(os.path.join(base, "inventory", "group_vars", "all.yml"), "w") as f:
        json.dump(group, f)
    return os.path.join(base, "inventory")


def _ansible_env():
    env = dict(os.environ)
    env.update({"ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "ANSIBLE_PIPELINING": "1",
                "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "build", "collections"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_STDOUT_CALLBACK": "default"})
    return env


def playbook(name, inventory, *extra):
    """Wall time of one ansible-playbook run (it must succeed: a benchmark of a failing run means nothing)."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
            os.path.join(PLAYBOOKS, name + ".yml")] + list(extra)
    return B.run_timed(argv, env=_ansible_env(), cwd=ROOT)


def _newest_report(base, kind):
    found = sorted(glob.glob(os.path.join(base, "reports", "%s-*.json" % kind)))
    with open(found[-1]) as f:
        return json.load(f)


def _restore_phase(report):
    for phase in report["timeline"][0]["phases"]:
        if phase["name"] == "restore":
            return phase["seconds"]
    raise RuntimeError("the dr_restore report has no restore phase: %r" % (report["timeline"],))


def bench_playbooks(bench, sizes=(10, 100, 200, 1000), parallel=2):
    env = bench.env
    out = {}
    for n in sizes:
        runs = 1 if n >= ONE_ROUND_FROM else bench.runs
        names = ["pb%04d" % i for i in range(1, n + 1)]
        facts = multitenant.create_db_tenants(env, names)
        base = os.path.dirname(env.path("playbooks-%d" % n, "x"))
        dumps = os.path.join(base, "dumps")
        inv = _inventory(env, base, names, parallel)
        pg_dump, pg_restore, createdb = env.bin("pg_dump"), env.bin("pg_restore"), env.bin("createdb")
        seq_dump = os.path.join(base, "sequential_dump.sh")
        with open(seq_dump, "w") as f:
            f.write("set -e\nmkdir -p %s\nfor t in %s; do\n  %s -Fc -d \"$t\" -f %s/\"$t\".dump\ndone\n" % (
                dumps, " ".join(names), pg_dump, dumps))
        seq_restore = os.path.join(base, "sequential_restore.sh")
        with open(seq_restore, "w") as f:
            f.write("set -e\nfor t in %s; do\n  %s \"r_$t\"\n  %s -d \"r_$t\" %s/\"$t\".dump\ndone\n" % (
                " ".join(names), createdb, pg_restore, dumps))

        def backup_teardown(name, res):
            if name == "backup_yml":
                report = _newest_report(base, "backup")
                res["rows_ok"] = sum(1 for r in report["rows"] if r["status"] == "OK")
                shutil.rmtree(os.path.join(base, "repository"), ignore_errors=True)

        log("playbooks: %d tenants, backup.yml (parallel %d) against %d sequential pg_dump -Fc, %d round(s)"
            % (n, parallel, n, runs))
        backup_rounds = B.compare([
            ("sequential_pg_dump", lambda: B.run_timed(["/bin/bash", seq_dump], env=bench.pe)),
            ("backup_yml", lambda: playbook("backup", inv)),
        ], runs, teardown=backup_teardown, log_label="playbooks %d" % n)

        # The repository the other playbooks read: one more backup.yml, kept; then verify and drill once.
        playbook("backup", inv)
        verify = playbook("verify", inv)
        drill = playbook("drill", inv, "-e", "drill_record=false")

        def restore_setup(name):
            if name == "dr_restore_yml":
                for t in names:  # the lost host: its tenants' databases are gone
                    env.drop_database(t)

        def restore_teardown(name, res):
            if name == "sequential_createdb_pg_restore":
                for t in names:
                    env.drop_database("r_" + t)
            else:
                report = _newest_report(base, "dr_restore")
                res["restore_phase_seconds"] = _restore_phase(report)
                res["rows_ok"] = sum(1 for r in report["rows"] if r.get("status") == "OK" and r.get("what") == "tenant")
                res["wall_seconds"] = res["seconds"]

        def dr_restore():
            res = playbook("dr_restore", inv, "-e", "dr_hosts=localhost", "-e", "dr_provision=false",
                           "-e", "dr_enable_timers=false")
            return res

        log("playbooks: %d tenants, dr_restore.yml's restore phase against %d sequential createdb + pg_restore"
            % (n, n))
        restore_rounds = B.compare([
            ("sequential_createdb_pg_restore", lambda: B.run_timed(["/bin/bash", seq_restore], env=bench.pe)),
            ("dr_restore_yml", dr_restore),
        ], runs, setup=restore_setup, teardown=restore_teardown, log_label="playbooks %d" % n)
        for res in restore_rounds["dr_restore_yml"]:
            res["seconds"] = res["restore_phase_seconds"]
        rec = {
            "tenants": n, "parallel": parallel, "runs": runs, "tenant": facts,
            "ratios": {"backup_yml_vs_sequential": B.ratio_stats(backup_rounds, "backup_yml", "sequential_pg_dump"),
                       "dr_restore_phase_vs_sequential": B.ratio_stats(restore_rounds, "dr_restore_yml",
                                                                       "sequential_createdb_pg_restore")},
            "times": dict(B.summary(backup_rounds), **B.summary(restore_rounds, keys=(
                "seconds", "wall_seconds", "rss_kb", "cpu_seconds"))),
            "rows_ok": {"backup_yml": [r.get("rows_ok") for r in backup_rounds["backup_yml"]],
                        "dr_restore_yml": [r.get("rows_ok") for r in restore_rounds["dr_restore_yml"]]},
            "verify_yml_seconds": round(verify["seconds"], 2), "drill_yml_seconds": round(drill["seconds"], 2),
        }
        for key, label in (("backup_yml_vs_sequential", "backup.yml / sequential pg_dump -Fc"),
                           ("dr_restore_phase_vs_sequential", "dr_restore restore phase / createdb+pg_restore")):
            stats = rec["ratios"][key]
            log("RESULT playbooks %4d tenants %-48s %s" % (n, label, "n/m" if stats is None else "%.3f" % stats["median"]))
        B.save("playbooks", n, rec)
        out[n] = rec
        for t in names:
            env.drop_database(t)
        shutil.rmtree(base, ignore_errors=True)
    return out


if __name__ == "__main__":
    subprocess.run([sys.executable, os.path.join(B.HERE, "run.py"), "--only", "playbooks"] + sys.argv[1:], check=False)
