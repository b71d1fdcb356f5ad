"""Write docs/PERFORMANCE.md and the plots (benchmarks/results/*.png) from benchmarks/results/*.json.

    .venv/bin/python benchmarks/report.py

The analysis (why a target is missed, what was tried) is hand-written in
benchmarks/ANALYSIS.md and copied in below the generated tables.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
ANALYSIS = os.path.join(HERE, "ANALYSIS.md")

sys.path.insert(0, HERE)
from run import TARGETS  # noqa: E402


def load(name):
    path = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def by_size(data):
    return [data[k] for k in sorted(data, key=float)]


def fmt(x, digits=2):
    return "n/m" if x is None else ("%.*f" % (digits, x))


def verdict(value, target, higher=False):
    if value is None:
        return "not measured"
    ok = value >= target if higher else value <= target
    return "**pass**" if ok else "**MISS**"


def ratio(record, key):
    st = (record.get("ratios") or {}).get(key)
    return st["median"] if st else None


def spread(record, key):
    st = (record.get("ratios") or {}).get(key)
    if not st:
        return ""
    return "%s to %s" % (fmt(st["min"]), fmt(st["max"]))


def size_label(record):
    if record.get("dump_bytes"):
        return "%d MB (dump %.0f MB)" % (record["size_mb"], record["dump_bytes"] / 1e6)
    return "%s MB" % record.get("size_mb")


def rel(path):
    return os.path.relpath(path, os.path.dirname(DOC))


# -- plots ----------------------------------------------------------------------------------

def plots(backup, restore, verify, variants, summary_rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    rows = by_size(backup)
    if rows:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        xs = [r["dump_bytes"] / 1e6 for r in rows]
        for name, label, style in (("limit", "pg_dump -Fc -Z0 > /dev/null (the limit)", "k--o"),
                                   ("pg_backup", "pg_backup (zstd + age, local)", "b-o"),
                                   ("hand_pipeline", "pg_dump -Fc | age > file (by hand)", "r:s")):
            pts = [(x, r["times"][name]["seconds_median"]) for x, r in zip(xs, rows) if name in r["times"]]
            if pts:
                ax1.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("dump size (MB, log scale)")
        ax1.set_ylabel("seconds (median, log scale; shared 2 cores)")
        ax1.set_title("Backup time against size")
        ax1.legend(fontsize=8)
        ax1.grid(alpha=0.3)
        for key, label, style in (("pg_backup_vs_limit", "pg_backup / limit", "b-o"),
                                  ("pg_backup_vs_hand", "pg_backup / by hand", "r-s")):
            pts = [(x, ratio(r, key)) for x, r in zip(xs, rows) if ratio(r, key) is not None]
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        ax2.axhline(TARGETS["backup_vs_limit"], color="b", ls="--", lw=0.8, label="target vs limit (1.20)")
        ax2.axhline(TARGETS["backup_vs_hand"], color="r", ls="--", lw=0.8, label="target vs by hand (0.40)")
        ax2.set_xscale("log")
        ax2.set_xlabel("dump size (MB, log scale)")
        ax2.set_ylabel("ratio (median of paired rounds)")
        ax2.set_title("Backup ratios against size")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(RESULTS, "backup_scaling.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(("Backup time and ratios against size", path))
    mem = []
    for name, data in (("backup", backup), ("restore", restore), ("verify", verify)):
        pts = [(r["dump_bytes"] / 1e6, r["rss_mb"]) for r in by_size(data) if r.get("rss_mb")]
        if pts:
            mem.append((name, pts))
    if mem:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for (name, pts), style in zip(mem, ("b-o", "g-s", "m-^")):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
        ax.axhline(TARGETS["memory_mb"], color="r", ls="--", lw=0.8, label="target: under 100 MB")
        ax.set_xscale("log")
        ax.set_xlabel("dump size (MB, log scale)")
        ax.set_ylabel("peak RSS of the engine process (MB)")
        ax.set_title("Peak memory against size")
        ax.set_ylim(0, max(120, max(p[1] for _n, pts in mem for p in pts) * 1.15))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(RESULTS, "memory.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(("Peak RSS against size", path))
    if variants:
        rec = by_size(variants)[-1]
        items = sorted(((k, v["median"]) for k, v in rec["ratios"].items() if v), key=lambda kv: kv[1])
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(items) + 1.2))
        ax.barh([k for k, _v in items], [v for _k, v in items], color=["#4a7" if v <= 1.2 else "#c66" for _k, v in items])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axvline(TARGETS["backup_vs_limit"], color="b", ls="--", lw=0.8, label="target 1.20")
        ax.set_xlabel("time / pg_dump -Fc -Z0 > /dev/null (median of paired rounds)")
        ax.set_title("Where the backup's time goes (%d MB)" % rec["size_mb"])
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(RESULTS, "backup_variants.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(("Backup pipeline variants", path))
    items = [(label, value / target if not higher else target / value, value, target)
             for label, value, target, higher in summary_rows if value]
    if items:
        fig, ax = plt.subplots(figsize=(8, 0.38 * len(items) + 1.2))
        labels = [i[0] for i in items]
        norm = [i[1] for i in items]
        ax.barh(labels, norm, color=["#4a7" if n <= 1 else "#c66" for n in norm])
        ax.axvline(1.0, color="k", lw=1, label="target")
        for y, (_l, n, v, t) in enumerate(items):
            ax.text(n, y, "  %.2f (target %.2f)" % (v, t), va="center", fontsize=7)
        ax.set_xlabel("measured / target (left of 1 passes; for rows/s, target / measured)")
        ax.set_title("Every target")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, max(norm) * 1.5)
        ax.invert_yaxis()
        fig.tight_layout()
        path = os.path.join(RESULTS, "targets.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.insert(0, ("Every target: measured / target", path))
    return made


# -- the document -----------------------------------------------------------------------------

def load_text(*benches):
    """The 1-minute load averages at the end of the records shown, as a range."""
    loads = [r["host"]["load_at_end"][0] for bench in benches for r in bench.values()
             if (r.get("host") or {}).get("load_at_end")]
    if not loads:
        return "load average not recorded"
    return "1-minute load average %.1f to %.1f at the end of the runs shown" % (min(loads), max(loads))


def write():
    backup, variants = load("backup"), load("backup_variants")
    restore, jobs, verify = load("restore"), load("restore_jobs"), load("verify")
    fleet, s3, anon = load("fleet"), load("s3"), load("anonymize")
    schemas, dbtenants = load("schemas"), load("dbtenants")
    pbooks, pbooks_before = load("playbooks"), load("playbooks_per_task")
    lines = []
    add = lines.append
    summary_rows = []  # (label, value, target, higher_is_better) for the plot
    add("# Performance")
    add("")
    add("Generated by `make bench` (`benchmarks/run.py`, then `benchmarks/report.py`) from "
        "`benchmarks/results/*.json`; the analysis at the end is `benchmarks/ANALYSIS.md`. Do not edit the "
        "tables by hand. `make bench` runs the standard set (100 MB and 500 MB tenants: about 8 minutes on 2 quiet "
        "cores, 30 on busy ones); two more runs merge into the same results: `make bench BENCH_ARGS='--only fleet'` "
        "(200 small tenants, 3 to 20 minutes) and `make bench BENCH_ARGS='--sizes 2000 --only backup,jobs,verify'` "
        "(the 2 GB tenant, 15 to 35 minutes). Any part: `make bench BENCH_ARGS='--sizes 100 --only backup,variants'`.")
    add("")
    add("**Method.** Every figure is a ratio against a baseline measured in the same run, on the same data, "
        "seconds apart: each comparison runs in rounds, every variant once per round (the order rotates), and "
        "the figure is the median over the rounds of variant / baseline within a round (min to max shown). "
        "Absolute seconds are listed only to show scale: the machine has 2 cores shared with other work "
        "(%s), so they swing by up to 2x. Engine times are the engine call "
        "alone, in a process of its own (`benchmarks/worker.py`); times through Ansible are "
        "`ansible-playbook` with the module minus `ansible-playbook` with `ansible.builtin.ping` in the same "
        "round (Ansible's own start-up is reported separately). Peak memory is VmHWM of the engine process "
        "(pg_dump and pg_restore are PostgreSQL's own processes, reported apart where useful)." % load_text(
            backup, variants, restore, jobs, verify, fleet, s3, anon))
    add("")
    add("**Data.** `benchmarks/datagen.py` generates tenants deterministically (server-side, seeded hashes): "
        "customers (names, e-mails, phones, addresses, birth dates, time stamps, balances, JSON preferences), "
        "orders (JSON line items), notes (free text from an English vocabulary with skewed word frequencies) and "
        "attachments (incompressible bytea, about a sixth of the dump), with indexes and foreign keys. Sizes are "
        "given as the size of `pg_dump -Fc -Z0`; the tables below give the measured dump size and compression.")
    add("")
    # -- targets summary
    add("## Targets")
    add("")
    add("| # | What | Target | Measured (median) | Spread | At | Verdict |")
    add("| --- | --- | --- | --- | --- | --- | --- |")

    def row(num, what, target_text, value, rec, key, at, target, higher=False, label=None):
        # a value that rounds onto its target gets a third digit, so that "1.00 pass" never reads "< 1.00"
        shown = fmt(value, 3) if value is not None and fmt(value) == fmt(target) and value != target else fmt(value)
        cells = (num, what, target_text, shown, spread(rec, key) if rec else "", at, verdict(value, target, higher))
        add("| %s | %s | %s | %s | %s | %s | %s |" % cells)
        if label:
            summary_rows.append((label, value, target, higher))

    for rec in by_size(backup):
        at = size_label(rec)
        row(1, "pg_backup / `pg_dump -Fc -Z0 > /dev/null`", "<= 1.20", ratio(rec, "pg_backup_vs_limit"), rec,
            "pg_backup_vs_limit", at, TARGETS["backup_vs_limit"], label="1 backup/limit %d MB" % rec["size_mb"])
        if ratio(rec, "pg_backup_vs_hand") is not None:
            row(1, "pg_backup / `pg_dump -Fc \\| age -r KEY > file`", "<= 0.40", ratio(rec, "pg_backup_vs_hand"), rec,
                "pg_backup_vs_hand", at, TARGETS["backup_vs_hand"], label="1 backup/by hand %d MB" % rec["size_mb"])
            row(1, "artifact size / that pipeline's file", "<= 0.85", ratio(rec, "size_vs_hand"), rec, "size_vs_hand",
                at, TARGETS["size_vs_hand"], label="1 size/by hand %d MB" % rec["size_mb"])
        if ratio(rec, "module_net_vs_limit") is not None:
            row(1, "pg_backup through Ansible (minus ping) / limit", "<= 1.20", ratio(rec, "module_net_vs_limit"), rec,
                "module_net_vs_limit", at, TARGETS["backup_vs_limit"])
    # memory
    mems = []
    for name, data in (("backup", backup), ("restore", restore), ("verify", verify)):
        recs = [r for r in by_size(data) if r.get("rss_mb")]
        if recs:
            mems.append((name, recs[0], recs[-1]))
    for name, small, large in mems:
        peak = max(small.get("rss_mb_max", small["rss_mb"]), large.get("rss_mb_max", large["rss_mb"]))
        add("| 2 | peak RSS of %s (largest of all runs, MB) | < 100 | %.1f | | %s | %s |" % (
            name, peak, " and ".join(sorted({size_label(small), size_label(large)})), verdict(peak, TARGETS["memory_mb"])))
        summary_rows.append(("2 %s RSS MB" % name, peak, TARGETS["memory_mb"], False))
        if small is not large:
            growth = large["rss_mb"] / small["rss_mb"]
            add("| 2 | %s RSS at %d MB / at %d MB | <= 1.10 | %.2f | | | %s |" % (
                name, large["size_mb"], small["size_mb"], growth, verdict(growth, TARGETS["memory_growth"])))
            summary_rows.append(("2 %s RSS growth" % name, growth, TARGETS["memory_growth"], False))
        else:
            add("| 2 | %s RSS growth with size | <= 1.10 | n/m | | only %s measured | not measured |" % (
                name, size_label(small)))
    for rec in by_size(restore):
        row(3, "backup_restore / `pg_restore` of a local `-Fc -Z0` dump", "<= 1.10",
            ratio(rec, "backup_restore_vs_pg_restore"), rec, "backup_restore_vs_pg_restore", size_label(rec),
            TARGETS["restore_vs_pg_restore"], label="3 restore %d MB" % rec["size_mb"])
        if ratio(rec, "module_net_vs_pg_restore") is not None:
            row(3, "backup_restore through Ansible (minus ping) / pg_restore", "<= 1.10",
                ratio(rec, "module_net_vs_pg_restore"), rec, "module_net_vs_pg_restore", size_label(rec),
                TARGETS["restore_vs_pg_restore"])
    for rec in by_size(jobs):
        row(3, "backup_restore `jobs: 2` / `jobs: 1`", "< 1.00", ratio(rec, "jobs2_vs_jobs1"), rec, "jobs2_vs_jobs1",
            size_label(rec), 0.9999, label="3 jobs2/jobs1 %d MB" % rec["size_mb"])
    for rec in by_size(fleet):
        row(4, "agent, %d tenants / %d sequential `pg_dump -Fc`" % (rec["tenants"], rec["tenants"]), "<= 0.75",
            ratio(rec, "agent_vs_sequential"), rec, "agent_vs_sequential",
            "%d x %s MB, parallel %d" % (rec["tenants"], rec["tenant_mb"], rec["parallel"]),
            TARGETS["fleet_vs_sequential"], label="4 fleet")
    for rec in by_size(verify):
        row(5, "backup_verify / (`age -d \\| zstd -d \\| pg_restore` by hand)", "<= 1.30",
            ratio(rec, "backup_verify_vs_by_hand"), rec, "backup_verify_vs_by_hand", size_label(rec),
            TARGETS["verify_vs_hand"], label="5 verify %d MB" % rec["size_mb"])
        if ratio(rec, "module_net_vs_by_hand") is not None:
            row(5, "backup_verify through Ansible (minus ping) / by hand", "<= 1.30",
                ratio(rec, "module_net_vs_by_hand"), rec, "module_net_vs_by_hand", size_label(rec),
                TARGETS["verify_vs_hand"])
    for rec in by_size(s3):
        at = "%s MB object" % round(rec["object_bytes"] / 1e6)
        row(6, "S3 upload / `aws s3 cp` upload", "<= 1.00", ratio(rec, "upload_vs_awscli"), rec, "upload_vs_awscli", at,
            TARGETS["s3_vs_awscli"], label="6 S3 up %d MB" % rec["size_mb"])
        row(6, "S3 download / `aws s3 cp` download", "<= 1.00", ratio(rec, "download_vs_awscli"), rec,
            "download_vs_awscli", at, TARGETS["s3_vs_awscli"], label="6 S3 down %d MB" % rec["size_mb"])
        add("| 6 | S3 peak RSS, upload / download (MB) | bounded | %.1f / %.1f | | %s | %s |" % (
            rec["rss_mb_upload"], rec["rss_mb_download"], at,
            verdict(max(rec["rss_mb_upload"], rec["rss_mb_download"]), TARGETS["memory_mb"])))
    for rec in by_size(anon):
        row(7, "tenant_anonymize rows/s / one hand-written UPDATE's", ">= 0.50", ratio(rec, "rows_per_s_vs_update"),
            rec, "rows_per_s_vs_update", "%d rows" % rec["rows"], TARGETS["anonymize_vs_update"], higher=True,
            label="7 anonymize rows/s")
    for rec in by_size(schemas):
        key = "pass_vs_whole_%d" % rec["tenants"]
        row(8, "pg_backup `schemas`, %s schema tenants / one whole-database `pg_dump -Fc -Z0 > /dev/null`" % (
            "{:,}".format(rec["tenants"])), "<= 3.00", ratio(rec, key), rec, key,
            "%s tables" % "{:,}".format(rec["per_size"][str(rec["tenants"])]["tables"]), TARGETS["schemas_vs_whole_dump"])
    for rec in by_size(pbooks):
        if rec["tenants"] != 200:
            continue
        at = "200 small database tenants, parallel %d" % rec["parallel"]
        row(9, "backup.yml / 200 sequential `pg_dump -Fc`", "<= 1.00", ratio(rec, "backup_yml_vs_sequential"), rec,
            "backup_yml_vs_sequential", at, TARGETS["playbooks_backup_vs_sequential"], label="9 backup.yml")
        row(9, "dr_restore.yml restore phase / 200 sequential `createdb` + `pg_restore`", "<= 1.00",
            ratio(rec, "dr_restore_phase_vs_sequential"), rec, "dr_restore_phase_vs_sequential", at,
            TARGETS["playbooks_restore_vs_sequential"], label="9 dr_restore")
    add("")
    figures = plots(backup, restore, verify, variants, summary_rows)
    for title, path in figures:
        add("![%s](%s)" % (title, rel(path)))
        add("")
    # -- details
    add("## Details")
    add("")
    if backup:
        add("### 1. Backup and scaling")
        add("")
        add("| Size | Dump MB | zstd ratio | gzip -6 ratio | limit s | pg_backup s | by hand s | pg_backup RSS MB | "
            "Ansible ping s | generated in s |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in by_size(backup):
            t = r["times"]
            add("| %d MB | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["size_mb"], r["dump_bytes"] / 1e6, fmt(r.get("compression_ratio")),
                fmt(r["tenant"].get("gzip6_ratio")), fmt(t["limit"]["seconds_median"]),
                fmt(t["pg_backup"]["seconds_median"]),
                fmt(t.get("hand_pipeline", {}).get("seconds_median")), fmt(r["rss_mb"], 1),
                fmt(r.get("ansible_ping_seconds")), fmt(r["tenant"].get("generate_seconds"), 0)))
        add("")
    if variants:
        for r in by_size(variants):
            add("### 1b. Where the backup's time goes (%d MB, dump %.0f MB)" % (r["size_mb"], r["dump_bytes"] / 1e6))
            add("")
            add("`store lN tM`: `pg_dump -Fc -Z0` through `pipeline.store` (zstd level N with M threads, then age), "
                "without the rest of pg_backup (snapshot, row counts, manifest); \"age in a process\": zstd in "
                "the engine process, pyrage in a forked child fed through a pipe; `cli`: the same with the zstd "
                "and age command-line tools (`benchmarks/variants.py`).")
            add("")
            add("| Variant | time / limit (median) | spread | stored MB |")
            add("| --- | --- | --- | --- |")
            for name, st in sorted(r["ratios"].items(), key=lambda kv: kv[1]["median"] if kv[1] else 99):
                stored = r["stored_bytes"].get(name)
                add("| %s | %s | %s to %s | %s |" % (name.replace("|", "\\|"), fmt(st["median"]), fmt(st["min"]), fmt(st["max"]),
                                                     fmt(stored / 1e6, 1) if stored else ""))
            add("")
    if restore or jobs:
        add("### 3. Restore")
        add("")
        add("| Size | pg_restore s | backup_restore s | ratio | RSS MB |")
        add("| --- | --- | --- | --- | --- |")
        for r in by_size(restore):
            t = r["times"]
            add("| %s | %s | %s | %s | %.1f |" % (size_label(r), fmt(t["pg_restore"]["seconds_median"]),
                                                  fmt(t["backup_restore"]["seconds_median"]),
                                                  fmt(ratio(r, "backup_restore_vs_pg_restore")), r["rss_mb"]))
        for r in by_size(jobs):
            t = r["times"]
            add("")
            add("`jobs` at %s: backup_restore `jobs: 1` %s s, `jobs: 2` %s s (ratio %s); peak RSS with `jobs: 2` "
                "%s MB." % (size_label(r), fmt(t["backup_restore"]["seconds_median"]),
                            fmt(t["backup_restore jobs 2"]["seconds_median"]), fmt(ratio(r, "jobs2_vs_jobs1")),
                            fmt(r.get("rss_mb_jobs2"), 1)))
        add("")
    if verify:
        add("### 5. Verify")
        add("")
        add("| Size | by hand s | backup_verify s | ratio | RSS MB |")
        add("| --- | --- | --- | --- | --- |")
        for r in by_size(verify):
            t = r["times"]
            add("| %s | %s | %s | %s | %.1f |" % (size_label(r), fmt(t["by_hand"]["seconds_median"]),
                                                  fmt(t["backup_verify"]["seconds_median"]),
                                                  fmt(ratio(r, "backup_verify_vs_by_hand")), r["rss_mb"]))
        add("")
    if fleet:
        add("### 4. Fleet")
        add("")
        for r in by_size(fleet):
            t = r["times"]
            add("%d tenants of about %s MB: %d sequential `pg_dump -Fc` %s s, agent (`lifeboat backup`, parallel %d, "
                "zstd + age, manifests, row counts) %s s: ratio %s." % (
                    r["tenants"], r["tenant_mb"], r["tenants"], fmt(t["sequential_pg_dump"]["seconds_median"]),
                    r["parallel"], fmt(t["agent"]["seconds_median"]), fmt(ratio(r, "agent_vs_sequential"))))
        add("")
    if s3:
        add("### 6. S3 (moto on loopback)")
        add("")
        add("| Object | aws up s | engine up s | aws down s | engine down s | engine RSS up/down MB | aws CLI RSS up/down MB |")
        add("| --- | --- | --- | --- | --- | --- | --- |")
        for r in by_size(s3):
            t = r["times"]
            add("| %.0f MB | %s | %s | %s | %s | %.1f / %.1f | %.1f / %.1f |" % (
                r["object_bytes"] / 1e6, fmt(t["aws_s3_cp_upload"]["seconds_median"]),
                fmt(t["engine_upload"]["seconds_median"]), fmt(t["aws_s3_cp_download"]["seconds_median"]),
                fmt(t["engine_download"]["seconds_median"]), r["rss_mb_upload"], r["rss_mb_download"],
                r["rss_mb_awscli_upload"], r["rss_mb_awscli_download"]))
        add("")
    if anon:
        add("### 7. Anonymization")
        add("")
        for r in by_size(anon):
            add("%d rows (name redacted, e-mail replaced by its keyed hash, phone nulled): one `UPDATE` with "
                "pgcrypto's `hmac()` %s rows/s, tenant_anonymize (batches of 1000, HMAC in Python) %s rows/s; ratio "
                "%s. Same result as the UPDATE (checksum of all rows): %s." % (
                    r["rows"], r["rows_per_s_update"], r["rows_per_s_engine"], fmt(ratio(r, "rows_per_s_vs_update")),
                    "yes" if r["same_result_as_update"] else "NO"))
        add("")
    if schemas or dbtenants:
        many_tenants(add, schemas, dbtenants)
    if pbooks:
        fleet_playbooks(add, pbooks, pbooks_before)
    if os.path.exists(ANALYSIS):
        with open(ANALYSIS) as f:
            add(f.read().rstrip())
        add("")
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write("\n".join(lines))
    return DOC


def schemas_meaning(rec, sizes, big, main, target, growth):
    """The interpretation of the schema-tenant figures, from the figures themselves."""
    n_fmt = "{:,}".format
    out = []
    if main is not None:
        if main <= target:
            out.append("One pass backs up all %s tenants, each into its own encrypted, separately restorable "
                       "artifact, in %sx the time of the plain whole-database dump, within the %.0fx target." % (
                           n_fmt(rec["tenants"]), fmt(main, 1), target))
        else:
            out.append("The %.0fx target is missed: one pass over all %s tenants takes %sx the time of the plain "
                       "whole-database dump (which writes one unencrypted file and needs the lock table "
                       "raised)." % (target, n_fmt(rec["tenants"]), fmt(main, 1)))
    phases = big.get("phases") or {}
    last = (big.get("pass_seconds_reported") or [None])[-1]
    dump = (phases.get("pg_dump -n ... runs + split, in the dump thread (one per group)") or {}).get("seconds")
    head = (phases.get("reading the archive head (pg_dump's catalog work, in the dump thread)") or {}).get("seconds")
    writes = phases.get("artifact writes (lock, stream, commit, manifest; summed over the writers)") or {}
    runs = big["pg_dump_runs"] - 1
    if last and dump is not None and head is not None and writes:
        out.append("Where the time goes (the round timed step by step): the dump thread, one `pg_dump` after the "
                   "other, is the critical path: %s%% of the pass, of which %s s (%s s per run) wait for each of "
                   "the %d group runs to read the catalog of the whole database before its first byte (a `pg_dump "
                   "-n` reads the catalog of all %s tables whatever it dumps: server-side work, which the lock "
                   "budget allows only one run at a time to do). The %s artifacts' writes (%s ms each: zstd + age, "
                   "then the artifact and its manifest each written, fsynced, linked into place and their folder "
                   "fsynced) take %s s summed over the three writers, beside the dump thread rather than after it." % (
                       fmt(100.0 * dump / last, 0), fmt(head, 1), fmt(head / max(1, runs), 1), runs,
                       n_fmt(big["tables"]), n_fmt(writes["calls"]),
                       fmt(1000.0 * writes["seconds"] / writes["calls"], 0), fmt(writes["seconds"], 1)))
    if growth is not None and len(sizes) > 1:
        if growth > 1.1:
            out.append("The per-tenant cost grows with the number of tenants (%sx from %s to %s tenants, against "
                       "%sx for the whole-database dump): the number of `pg_dump` runs grows with the tenants "
                       "and each run's catalog work grows with the database, so the catalog part is quadratic; "
                       "the artifact part is linear." % (
                           fmt(growth), n_fmt(sizes[0]["tenants"]), n_fmt(sizes[-1]["tenants"]),
                           fmt((rec["ratios"].get("whole_per_tenant_growth") or {}).get("median"))))
        else:
            out.append("The per-tenant cost does not grow materially with the number of tenants (%sx from %s to %s)."
                       % (fmt(growth), n_fmt(sizes[0]["tenants"]), n_fmt(sizes[-1]["tenants"])))
    if len(sizes) > 1 and big.get("rss_mb_max") and sizes[0].get("rss_mb_max"):
        grows = big["rss_mb_max"] > sizes[0]["rss_mb_max"] * 1.1
        out.append("Peak RSS of the engine %s with the number of tenants (%.1f MB at %s, %.1f MB at %s)%s." % (
            "grows" if grows else "stays flat", sizes[0]["rss_mb_max"], n_fmt(sizes[0]["tenants"]),
            big["rss_mb_max"], n_fmt(big["tenants"]),
            (", above the %d MB the single-tenant backup stays under" % TARGETS["memory_mb"])
            if big["rss_mb_max"] >= TARGETS["memory_mb"] else ""))
    ext = ratio(rec, "pass_vs_per_schema_extrapolated")
    if ext:
        out.append("Against the old way, one `pg_dump -n` per tenant, the pass is about %.0fx faster "
                   "(extrapolated), and it needs no change to the server's lock settings, where one whole-database "
                   "dump does." % (1.0 / ext))
    return " ".join(out)


def many_tenants(add, schemas, dbtenants):
    """Section 8 (issue 15): schema tenants in one database (backup_pass), database tenants (the agent)."""
    add("### 8. Many tenants: 1,200 schema tenants in one database, 500 database tenants")
    add("")
    for rec in by_size(schemas):
        sizes = [rec["per_size"][str(n)] for n in rec["sizes"]]
        big = rec["per_size"][str(rec["tenants"])]
        t = rec["times"]
        target = TARGETS["schemas_vs_whole_dump"]
        main = ratio(rec, "pass_vs_whole_%d" % rec["tenants"])
        n_fmt = "{:,}".format
        add("**Schema tenants: method.** `benchmarks/multitenant.py` makes a database of %s schema tenants "
            "(`t0001` ...), each of %d tables (an application's: accounts, users, orders, invoices, audit_log ...), "
            "every table with a primary key and 5 to 20 rows, and each tenant's `accounts` referencing "
            "`public.plans` (the database's shared part): %s tables, %.0f MB on disk, made server-side by one "
            "`DO` block per 100 schemas in %.0f s. A second database of %s tenants, made the same way, gives the "
            "per-tenant trend. Compared in the same rounds (%d rounds, order rotating; the server is restarted, "
            "untimed, before every timed run, with the setting that run needs):" % (
                n_fmt(rec["tenants"]), rec["tables_per_tenant"], n_fmt(big["tables"]), big["database_bytes"] / 1e6,
                big["generate_seconds"], " and ".join(n_fmt(n) for n in rec["sizes"] if n != rec["tenants"]),
                rec["runs"]))
        add("")
        add("- the baseline, ONE `pg_dump -Fc -Z0 -d DB > /dev/null` of the whole database. It locks every table "
            "of the database in one transaction, which the default lock table does not hold (at "
            "`max_locks_per_transaction` %d it fails with `out of shared memory`), so it runs with "
            "`max_locks_per_transaction` raised to %d;" % (rec["max_locks_default"], rec["max_locks_raised"]))
        connections = rec.get("max_connections") or rec["lock_capacity_default"] // rec["max_locks_default"]
        add("- lifeboat: `pg_backup` with `schemas` listing every tenant (`backup_pass.run` in a process of its own, "
            "`benchmarks/worker.py`), with the default `max_locks_per_transaction` (%d) and %s (a lock table of %s "
            "entries). It exports ONE snapshot; dumps the shared part first (`pg_dump` excluding the tenant "
            "schemas, artifact `_shared_<database>`); then dumps the tenants in groups, one `pg_dump -n s1 -n s2 "
            "...` per group, on the same snapshot, each group sized so that the tables one `pg_dump` locks stay "
            "within half the lock table (lock budget %s here, so %d `pg_dump` runs in all), one `pg_dump` at a "
            "time, in a thread of its own; each group's custom-format stream is split on the fly by "
            "`plugins/module_utils/pgarchive.py` into one archive per tenant, held in memory (32 MB at the most) "
            "until one of three writer threads streams it through zstd and age into the tenant's own artifact, "
            "with its own manifest and row counts (counted in the same snapshot by a second connection), so that "
            "the next group's `pg_dump` reads the catalog while the artifacts of the last one are written. %s "
            "artifacts written per pass, %s failed tenants;" % (
                rec["max_locks_default"],
                "PostgreSQL's default `max_connections` (%d)" % connections if connections == 100 else
                "this cluster's `max_connections` of %d (a server with the stock 100 has %s entries)" % (
                    connections, n_fmt(100 * rec["max_locks_default"])),
                n_fmt(rec["lock_capacity_default"]), n_fmt(big["lock_budget"]),
                big["pg_dump_runs"], n_fmt(big["artifacts_written"]), big["failed_tenants"]))
        if rec.get("sample"):
            add("- the old way, one `pg_dump -Fc -Z0 -n tNNNN > /dev/null` per tenant, timed for a sample of %d "
                "tenants spread over the database and **extrapolated** to %s (x %s / %d): not measured in full." % (
                    rec["sample"], n_fmt(rec["tenants"]), n_fmt(rec["tenants"]), rec["sample"]))
        add("")
        add("| Tenants | Tables | whole pg_dump s | lifeboat pass s | pass / whole pg_dump | spread | pg_dump runs | "
            "s per tenant, lifeboat | s per tenant, whole pg_dump | engine RSS MB | whole pg_dump RSS MB |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for ps in sizes:
            n = ps["tenants"]
            add("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %.1f | %.1f |" % (
                n_fmt(n), n_fmt(ps["tables"]), fmt(t["pg_dump_whole_%d" % n]["seconds_median"]),
                fmt(t["lifeboat_pass_%d" % n]["seconds_median"]), fmt(ratio(rec, "pass_vs_whole_%d" % n)),
                spread(rec, "pass_vs_whole_%d" % n), ps["pg_dump_runs"], fmt(ps["seconds_per_tenant"], 4),
                fmt(ps["whole_seconds_per_tenant"], 4), ps["rss_mb_max"], ps["pg_dump_whole_rss_mb"]))
        add("")
        verdict_text = verdict(main, target)
        add("**Target: lifeboat's pass over all %s tenants in at most %.0fx the time of the one whole-database "
            "pg_dump: %s (%s, rounds %s).** Engine peak RSS (VmHWM of the process running the pass, pg_dump's "
            "own processes apart) %.1f MB at %s tenants." % (
                n_fmt(rec["tenants"]), target, fmt(main), verdict_text.strip("*").lower(),
                spread(rec, "pass_vs_whole_%d" % rec["tenants"]), big["rss_mb_max"], n_fmt(rec["tenants"])))
        add("")
        growth = (rec["ratios"].get("per_tenant_growth") or {}).get("median")
        whole_growth = (rec["ratios"].get("whole_per_tenant_growth") or {}).get("median")
        if growth is not None and len(sizes) > 1:
            small = sizes[0]
            add("**Per-tenant cost against the number of tenants.** Seconds per tenant of the pass: %s at %s "
                "tenants, %s at %s; per round, (s per tenant at %s) / (s per tenant at %s) = %s (%s). The same "
                "for the whole-database pg_dump: %s. %s" % (
                    fmt(small["seconds_per_tenant"], 4), n_fmt(small["tenants"]), fmt(big["seconds_per_tenant"], 4),
                    n_fmt(big["tenants"]), n_fmt(big["tenants"]), n_fmt(small["tenants"]), fmt(growth),
                    spread(rec, "per_tenant_growth"), fmt(whole_growth),
                    "A ratio near 1 means the cost grows linearly with the number of tenants; above 1, each "
                    "tenant costs more in a bigger database (every `pg_dump` reads the whole catalog, and a "
                    "bigger database needs more of them)."))
            add("")
        if rec.get("sample"):
            ext = ratio(rec, "per_schema_extrapolated_vs_whole")
            vs_old = ratio(rec, "pass_vs_per_schema_extrapolated")
            sample_s = t["pg_dump_per_schema_sample"]["seconds_median"]
            add("**The old way (extrapolated).** %d sequential `pg_dump -n` took %s s (%s s each: every run reads "
                "the whole catalog of %s tables); extrapolated to %s tenants, %s s, %s x the whole-database "
                "pg_dump. lifeboat's pass takes %sx that extrapolated time." % (
                    rec["sample"], fmt(sample_s), fmt(sample_s / rec["sample"]), n_fmt(big["tables"]),
                    n_fmt(rec["tenants"]), fmt(sample_s * rec["tenants"] / rec["sample"], 0), fmt(ext, 1),
                    fmt(vs_old, 3)))
            add("")
        phases = big.get("phases")
        if phases:
            add("Where the pass's time goes at %s tenants (the last round; the engine's own functions timed by "
                "`worker.py`'s `_phases`: totals, nested; the dump thread and the writers run at once, and the "
                "writers' steps are summed over the three of them):" % (
                    n_fmt(rec["tenants"])))
            add("")
            add("| Step | calls | seconds |")
            add("| --- | --- | --- |")
            for name, v in sorted(phases.items(), key=lambda kv: -kv[1]["seconds"]):
                add("| %s | %d | %s |" % (name, v["calls"], fmt(v["seconds"])))
            add("")
            add("Pass seconds as the engine reports them (`seconds` of the result), per round: %s." % (
                ", ".join(fmt(x) for x in big.get("pass_seconds_reported") or [] if x is not None)))
            add("")
        if big.get("warnings"):
            add("Warnings in the pass's result: %s" % "; ".join(str(w) for w in big["warnings"][:5]))
            add("")
        meaning = schemas_meaning(rec, sizes, big, main, target, growth)
        if meaning:
            add("**What it means.** " + meaning)
            add("")
        if big.get("failed_tenants"):
            add("**Failed tenants: %d.** First: %s" % (big["failed_tenants"], "; ".join(
                "%s: %s" % (f.get("tenant"), f.get("error")) for f in big.get("failed_examples") or [])))
            add("")
    for rec in by_size(dbtenants):
        t = rec["times"]
        add("**Database tenants.** %d databases, each a copy (`CREATE DATABASE ... TEMPLATE`) of one small "
            "database of 5 tables (customers, orders, order_items, products, settings: %s rows, foreign keys, "
            "`pg_dump -Fc -Z0` %.0f kB): %d sequential `pg_dump -Fc -Z0 -d tenant -f tenant.dump` %s s (%s s per "
            "tenant), the agent (`lifeboat backup` with a config listing the %d tenants, parallel %d: one "
            "snapshot, pg_dump, row counts, zstd + age, manifest per tenant) %s s (%s s per tenant): ratio "
            "**%s** (%s). No target was set for this one; the fleet's (200 tenants, `pg_dump -Fc` with its "
            "default compression) is 0.75. Agent peak RSS %.1f MB." % (
                rec["tenants"], "{:,}".format(rec["tenant"]["rows"]), rec["tenant"]["dump_bytes"] / 1e3, rec["tenants"],
                fmt(t["sequential_pg_dump"]["seconds_median"]), fmt(rec["seconds_per_tenant_sequential"], 3),
                rec["tenants"], rec["parallel"], fmt(t["agent"]["seconds_median"]),
                fmt(rec["seconds_per_tenant_agent"], 3), fmt(ratio(rec, "agent_vs_sequential")),
                spread(rec, "agent_vs_sequential"), rec["rss_mb"]))
        add("")


def _per_tenant(records, key):
    """Seconds per added tenant: the slope between the smallest and the largest N measured."""
    pts = [(r["tenants"], r.get(key)) for r in records if r.get(key) is not None]
    if len(pts) < 2:
        return None
    (n0, t0), (n1, t1) = pts[0], pts[-1]
    return (t1 - t0) / float(n1 - n0) if n1 != n0 else None


def _median_of(rec, variant, key="seconds_median"):
    return (rec["times"].get(variant) or {}).get(key)


def playbooks_plot(records, before):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    xs = [r["tenants"] for r in records]
    series = (("dr_restore_yml", "wall_seconds_median", "dr_restore.yml, whole run (one call per chunk)", "b-o"),
              ("dr_restore_yml", "seconds_median", "its restore phase", "b--s"),
              ("sequential_createdb_pg_restore", "seconds_median", "sequential createdb + pg_restore", "k:^"),
              ("backup_yml", "seconds_median", "backup.yml (one call per chunk)", "g-o"),
              ("sequential_pg_dump", "seconds_median", "sequential pg_dump -Fc", "k:v"))
    for variant, key, label, style in series:
        pts = [(x, _median_of(r, variant, key)) for x, r in zip(xs, records) if _median_of(r, variant, key)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    old = by_size(before)
    pts = [(r["tenants"], _median_of(r, "dr_restore_yml", "wall_seconds_median")) for r in old
           if _median_of(r, "dr_restore_yml", "wall_seconds_median")]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "r-x", label="dr_restore.yml before (one task per tenant)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tenants per host (log scale)")
    ax.set_ylabel("seconds (log scale; shared 2 cores)")
    ax.set_title("RTO and backup time against tenants per host")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(RESULTS, "playbooks_tenants.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def fleet_playbooks(add, playbooks, before):
    records = by_size(playbooks)
    add("### 9. The fleet playbooks at 10 to 1,000 tenants per host")
    add("")
    add("`make bench BENCH_ARGS='--only playbooks'` (`benchmarks/playbooks.py`): one host (localhost) with N small "
        "database tenants (the template of section 8: 5 tables, %s rows), the playbooks run by `ansible-playbook` "
        "as on-call staff run them, with the tenants in `lifeboat_tenants` and `lifeboat_parallel` %d. The "
        "baselines are the same work by hand, one tenant after the other, in the same rounds: `pg_dump -Fc` (its "
        "default compression) for backup.yml; `createdb` + `pg_restore` of those dumps for dr_restore.yml's "
        "restore phase (read from its report's timeline; the tenants' databases are dropped before each run, as "
        "on a lost host). Whole-run times include Ansible's start-up, the selection, the roles and grants and the "
        "report. Targets at 200 tenants: both ratios at most 1.0." % (
            "{:,}".format(records[0]["tenant"]["rows"]), records[0]["parallel"]))
    add("")
    add("| Tenants | Rounds | backup.yml | sequential pg_dump | ratio | dr_restore.yml (whole) | its restore phase "
        "| sequential createdb + pg_restore | ratio | verify.yml | drill.yml |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in records:
        add("| %s | %d | %s s | %s s | **%s** (%s) | %s s | %s s | %s s | **%s** (%s) | %s s | %s s |" % (
            "{:,}".format(r["tenants"]), r["runs"], fmt(_median_of(r, "backup_yml"), 1),
            fmt(_median_of(r, "sequential_pg_dump"), 1), fmt(ratio(r, "backup_yml_vs_sequential")),
            spread(r, "backup_yml_vs_sequential"), fmt(_median_of(r, "dr_restore_yml", "wall_seconds_median"), 1),
            fmt(_median_of(r, "dr_restore_yml"), 1), fmt(_median_of(r, "sequential_createdb_pg_restore"), 1),
            fmt(ratio(r, "dr_restore_phase_vs_sequential")), spread(r, "dr_restore_phase_vs_sequential"),
            fmt(r.get("verify_yml_seconds"), 1), fmt(r.get("drill_yml_seconds"), 1)))
    add("")
    per = dict((name, _per_tenant([dict(rec, x=_median_of(rec, variant, key)) for rec in records], "x"))
               for name, variant, key in (("backup", "backup_yml", "seconds_median"),
                                          ("pg_dump", "sequential_pg_dump", "seconds_median"),
                                          ("dr", "dr_restore_yml", "wall_seconds_median"),
                                          ("restore", "sequential_createdb_pg_restore", "seconds_median")))
    per["verify"] = _per_tenant(records, "verify_yml_seconds")
    per["drill"] = _per_tenant(records, "drill_yml_seconds")
    if len(records) > 1:
        add("**Cost per tenant** (the slope from %d to %s tenants, so Ansible's fixed start-up is left out): "
            "backup.yml %s s (pg_dump alone %s s), dr_restore.yml %s s (createdb + pg_restore alone %s s), "
            "verify.yml %s s, drill.yml %s s. A host's RTO grows by that much per tenant (the tenants of one host "
            "run `lifeboat_parallel` at a time, so a host with more cores restores faster with a larger "
            "`lifeboat_parallel`); the rest is a fixed cost per run, whatever the number of tenants." % (
                records[0]["tenants"], "{:,}".format(records[-1]["tenants"]), fmt(per["backup"], 3),
                fmt(per["pg_dump"], 3), fmt(per["dr"], 3), fmt(per["restore"], 3), fmt(per["verify"], 3),
                fmt(per["drill"], 3)))
        add("")
    old = by_size(before)
    if old:
        add("**Before (one Ansible task per tenant)**, the same harness on the previous playbooks: " + "; ".join(
            "%s tenants: backup.yml %s s (%sx sequential pg_dump), dr_restore.yml %s s, its restore phase %s s "
            "(%sx createdb + pg_restore), verify.yml %s s, drill.yml %s s" % (
                "{:,}".format(r["tenants"]), fmt(_median_of(r, "backup_yml"), 1),
                fmt(ratio(r, "backup_yml_vs_sequential")), fmt(_median_of(r, "dr_restore_yml", "wall_seconds_median"), 1),
                fmt(_median_of(r, "dr_restore_yml"), 1), fmt(ratio(r, "dr_restore_phase_vs_sequential")),
                fmt(r.get("verify_yml_seconds"), 1), fmt(r.get("drill_yml_seconds"), 1)) for r in old) + ".")
        add("")
    path = playbooks_plot(records, before)
    if path:
        add("![RTO and backup time against tenants per host](%s)" % rel(path))
        add("")


if __name__ == "__main__":
    print(write())
