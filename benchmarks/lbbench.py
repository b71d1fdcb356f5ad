"""Benchmark plumbing: the throwaway cluster and S3 server, timed runs with
peak memory, paired comparisons and their medians.

Every figure the benchmarks publish is a ratio against a baseline measured
in the same run on the same data: the variants of one comparison run in
rounds, each round runs every variant once (the order rotates from round to
round so that none always goes first), and the published ratio is the
median over the rounds of (variant / baseline) within a round. On a shared
machine absolute times swing by 2x from minute to minute; variants measured
seconds apart swing together.
"""

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import lbtest  # noqa: E402

PY = sys.executable
RESULTS = os.path.join(HERE, "results")


def log(*parts):
    sys.stderr.write(time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts) + "\n")
    sys.stderr.flush()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class RunFailed(RuntimeError):
    pass


LAUNCHER = ["/usr/bin/python3", "-S", "-I", os.path.join(HERE, "launch.py")]


def run_timed(argv, env=None, shell=False, stdout=subprocess.DEVNULL, cwd=None):
    """Run a command; return wall seconds, the peak RSS (KiB) of its largest process and its CPU seconds.

    Commands start from a small launcher (launch.py), which reports the
    rusage of exactly that command and its descendants.
    """
    if shell:
        argv = ["/bin/bash", "-o", "pipefail", "-c", argv]
    fd, report = tempfile.mkstemp(prefix="lbbench-", suffix=".json")
    os.close(fd)
    t0 = time.monotonic()
    proc = subprocess.Popen(LAUNCHER + [report, "--"] + list(argv), env=env, stdout=stdout,
                            stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        raise
    seconds = time.monotonic() - t0
    try:
        with open(report) as f:
            usage = json.load(f)
    except (OSError, ValueError):
        usage = {}
    finally:
        os.unlink(report)
    if proc.returncode != 0:
        raise RunFailed("%s failed (%s): %s" % (" ".join(argv), proc.returncode,
                                                (err or b"").decode("utf-8", "replace")[-2000:]))
    return {"seconds": seconds, "rss_kb": usage.get("rss_kb"), "cpu_seconds": usage.get("cpu_seconds"),
            "stdout": out}


def worker(op, params, env=None):
    """An engine operation in its own process (benchmarks/worker.py)."""
    res = run_timed([PY, os.path.join(HERE, "worker.py"), op, json.dumps(params)], env=env,
                    stdout=subprocess.PIPE)
    data = json.loads(res["stdout"].decode().strip().splitlines()[-1])
    data["process_seconds"] = res["seconds"]
    data["cpu_seconds"] = res["cpu_seconds"]
    data["seconds"] = data["engine_seconds"]
    return data


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def compare(variants, runs, setup=None, teardown=None, log_label=""):
    """Run every variant once per round, ``runs`` rounds, rotating the order.

    ``variants``: list of (name, fn); fn() returns a dict with ``seconds``.
    ``setup(name)`` and ``teardown(name, result)`` run around each call, untimed.
    Returns {name: [result per round]}.
    """
    out = dict((name, []) for name, _fn in variants)
    n = len(variants)
    for r in range(runs):
        order = variants[r % n:] + variants[:r % n]
        for name, fn in order:
            if setup:
                setup(name)
            res = fn()
            res["load"] = loadavg()
            out[name].append(res)
            rss = res.get("rss_self_kb", res.get("rss_kb"))
            log("  %s round %d/%d %-22s %7.2f s  rss %s KiB" % (log_label, r + 1, runs, name, res["seconds"], rss))
            if teardown:
                teardown(name, res)
    return out


def ratio_stats(rounds, name, base, key="seconds", invert=False):
    """Median, min and max over rounds of rounds[name][i][key] / rounds[base][i][key]."""
    per = []
    for a, b in zip(rounds[name], rounds[base]):
        if a.get(key) is None or not b.get(key):
            continue
        per.append((b[key] / a[key]) if invert else (a[key] / b[key]))
    if not per:
        return None
    return {"median": round(statistics.median(per), 3), "min": round(min(per), 3), "max": round(max(per), 3),
            "rounds": [round(x, 3) for x in per]}


def summary(rounds, keys=("seconds", "rss_self_kb", "rss_kb", "cpu_seconds", "process_seconds")):
    out = {}
    for name, results in rounds.items():
        entry = {"runs": len(results)}
        for key in keys:
            vals = [r.get(key) for r in results if r.get(key) is not None]
            if vals:
                entry[key] = [round(v, 3) if isinstance(v, float) else v for v in vals]
                entry[key + "_median"] = round(median(vals), 3)
        out[name] = entry
    return out


def verdict(ratio, target, higher_is_better=False):
    if ratio is None:
        return None
    return ratio >= target if higher_is_better else ratio <= target


def save(bench, key, record):
    """Merge ``record`` under ``key`` into results/<bench>.json."""
    import fcntl

    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "%s.json" % bench)
    record = dict(record, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  host={"cpus": os.cpu_count(), "load_at_end": loadavg()})
    os.makedirs(os.path.join(RESULTS, "tmp"), exist_ok=True)  # git-ignored
    with open(os.path.join(RESULTS, "tmp", "save.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two bench runs (different sizes) may save at once
        data = {}
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
        data[str(key)] = record
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    return path


class Env(object):
    """The cluster, age keys, folders and (on demand) the S3 server of one bench run."""

    def __init__(self, workdir=None):
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="lifeboat-bench-")
        os.chmod(self.workdir, 0o700)
        self.cluster = None
        self.moto = None
        self.tenants = {}
        self.template = False

    # -- set-up and tear-down ---------------------------------------------------
    def start(self):
        lbtest.drop_stale_clusters()
        self.cluster = lbtest.PgCluster(tag="bench").start()
        self.key_file, self.public = lbtest.age_keygen(self.workdir)
        return self

    def stop(self):
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self.cluster is not None:
            self.cluster.drop()
            self.cluster = None
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def path(self, *parts):
        p = os.path.join(self.workdir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def s3(self):
        if self.moto is None:
            import s3server

            self.moto = s3server.MotoServer(self.workdir).start()
            self.moto.client().create_bucket(Bucket="bench")
        return self.moto

    # -- PostgreSQL ------------------------------------------------------------
    def connect(self, db="postgres"):
        import psycopg

        c = self.cluster
        return psycopg.connect(host="127.0.0.1", port=c.port, user=c.user, password=c.password, dbname=db,
                               autocommit=True)

    def pg_env(self):
        return self.cluster.env()

    def bin(self, tool):
        return self.cluster.bin(tool)

    @property
    def login(self):
        """Engine options: the unix socket, as a host agent on the database host connects."""
        return {"login_unix_socket": self.cluster.socket_dir, "login_port": self.cluster.port,
                "login_user": "postgres"}

    def sql(self, statement, db="postgres"):
        with self.connect(db) as conn:
            conn.execute(statement)

    def drop_database(self, name):
        self.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def tenant(self, name, megabytes, seed=1):
        """Create (once) a tenant database of about ``megabytes`` of dump. Returns its facts."""
        import datagen

        if name in self.tenants:
            return self.tenants[name]
        if not self.template:
            log("creating the generator template (phrases)")
            datagen.create_template(self.connect)
            self.template = True
        units = datagen.units_for(megabytes)
        log("generating tenant %s: about %s MB (%d customers)" % (name, megabytes, units))
        seconds = datagen.create_tenant(self.connect, name, units, seed=seed)
        facts = {"name": name, "megabytes": megabytes, "units": units, "generate_seconds": round(seconds, 1)}
        with self.connect(name) as conn:
            facts["database_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            facts["rows"] = dict(conn.execute(
                "SELECT relname, n_live_tup FROM pg_stat_user_tables ORDER BY relname").fetchall())
        self.tenants[name] = facts
        log("  done in %.1f s" % seconds)
        return facts

    def dump_facts(self, name):
        """Size of the tenant's pg_dump -Fc -Z0 and its zstd/gzip compression ratios (measured once)."""
        facts = self.tenants[name]
        if "dump_bytes" not in facts:
            path = self.path("dumps", name + ".pgdump")
            subprocess.run([self.bin("pg_dump"), "-Fc", "-Z0", "-d", name, "-f", path], env=self.pg_env(), check=True)
            facts["dump_bytes"] = os.path.getsize(path)
            facts["dump_path"] = path
            facts["zstd3_ratio"] = round(facts["dump_bytes"] / _piped_size(["zstd", "-T2", "-3", "-c", path]), 2)
            facts["gzip6_ratio"] = round(facts["dump_bytes"] / _piped_size(["gzip", "-6", "-c", path]), 2)
        return facts


def _piped_size(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    n = 0
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        n += len(chunk)
    p.wait()
    return n


def maxrss_self_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
