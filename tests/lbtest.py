"""Test helpers: the engine without Ansible, throwaway PostgreSQL clusters,
age keys from the real CLI, and a runner for real ansible-playbook runs."""

import glob
import hashlib
import importlib.util
import json
import os
import pathlib
import secrets
import socket
import subprocess
import sqlite3
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENGINE_DIR = ROOT / "plugins" / "module_utils"
BIN = pathlib.Path(sys.executable).parent
COLLECTIONS = ROOT / "build" / "collections"


def load_engine(name="lifeboat_engine"):
    """Import plugins/module_utils as a plain package (as the host agent does)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ENGINE_DIR / "__init__.py", submodule_search_locations=[str(ENGINE_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- PostgreSQL -----------------------------------------------------------------

def pg_versions():
    return sorted((int(os.path.basename(os.path.dirname(d))) for d in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def drop_stale_clusters():
    """Drop lbtest_<pid>_* clusters left by killed test runs."""
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[1].startswith("lbtest_"):
            continue
        try:
            pid = int(fields[1].split("_")[1])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            subprocess.run(["pg_dropcluster", "--stop", fields[0], fields[1]], capture_output=True, check=False)


class PgCluster(object):
    """A throwaway cluster: superuser lbadmin with a password over TCP on
    127.0.0.1, and trust over the unix socket in /var/run/postgresql."""

    socket_dir = "/var/run/postgresql"

    def __init__(self, version=None, tag="main"):
        self.version = version or pg_versions()[0]
        self.name = "lbtest_%d_%s" % (os.getpid(), tag)
        self.port = free_port()
        self.user = "lbadmin"
        self.password = "pw-" + secrets.token_hex(12)

    def start(self):
        opts = ["-o", "fsync=off", "-o", "synchronous_commit=off", "-o", "full_page_writes=off",
                "-o", "max_connections=60"]
        subprocess.run(["pg_createcluster", str(self.version), self.name, "-p", str(self.port),
                        "--start-conf=manual"] + opts + ["--", "--auth-local=trust", "--auth-host=scram-sha-256"],
                       check=True, capture_output=True)
        try:
            subprocess.run(["pg_ctlcluster", str(self.version), self.name, "start"], check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            self.drop()
            raise RuntimeError("PostgreSQL cluster %s did not start: %s" % (self.name, e.stderr.decode(errors="replace")))
        self.psql("CREATE ROLE %s SUPERUSER LOGIN PASSWORD '%s'" % (self.user, self.password), user="postgres")
        return self

    def drop(self):
        subprocess.run(["pg_dropcluster", "--stop", str(self.version), self.name], capture_output=True, check=False)

    def psql(self, sql, db="postgres", user=None):
        """Run SQL through the real psql client over the unix socket."""
        res = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir, "-p", str(self.port),
                              "-U", user or "postgres", "-d", db, "-At", "-c", sql],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError("psql failed: %s" % res.stderr)
        return res.stdout.strip()

    def connect(self, db="postgres", autocommit=True):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=db, autocommit=autocommit)

    @property
    def login(self):
        """module options to reach this cluster over TCP with a password."""
        return {"login_host": "127.0.0.1", "login_port": self.port, "login_user": self.user,
                "login_password": self.password}

    @property
    def socket_login(self):
        return {"login_unix_socket": self.socket_dir, "login_port": self.port, "login_user": "postgres"}

    def bin(self, tool):
        return "/usr/lib/postgresql/%d/bin/%s" % (self.version, tool)

    def env(self):
        env = dict(os.environ)
        env.update(PGHOST=self.socket_dir, PGPORT=str(self.port), PGUSER="postgres")
        return env


def table_checksums(conn, schema=None):
    """{schema.table: (rows, md5 of all rows in a stable order)} of user tables."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%%' AND (%s::text IS NULL OR n.nspname = %s::text) ORDER BY 1, 2",
        (schema, schema),
    ).fetchall()
    from psycopg import sql

    out = {}
    for nsp, rel in rows:
        q = sql.SQL("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {}.{} t").format(
            sql.Identifier(nsp), sql.Identifier(rel))
        out["%s.%s" % (nsp, rel)] = tuple(conn.execute(q).fetchone())
    return out


def sqlite_guests(path, rows):
    """Add ``rows`` guests to the SQLite file ``path`` (made if missing); returns the path as a string."""
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE IF NOT EXISTS guests (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO guests (name) VALUES (?)", [("Guest %d" % i,) for i in range(rows)])
    conn.commit()
    conn.close()
    return str(path)


def sqlite_checksums(path):
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]
        out = {}
        for n in names:
            rows = conn.execute('SELECT * FROM "%s"' % n.replace('"', '""')).fetchall()
            digest = hashlib.md5("|".join(sorted(repr(r) for r in rows)).encode()).hexdigest()
            out[n] = (len(rows), digest)
        return out
    finally:
        conn.close()


# -- age ----------------------------------------------------------------------

def age_keygen(directory):
    """An identity file made by the real age-keygen; returns (path, public key)."""
    path = os.path.join(directory, "key-%s.txt" % secrets.token_hex(3))
    res = subprocess.run(["age-keygen", "-o", path], capture_output=True, text=True, check=True)
    public = [line.split(":", 1)[1].strip() for line in res.stderr.splitlines() if "Public key" in line][0]
    return path, public


# -- Ansible --------------------------------------------------------------------

class PlaybookRun(object):
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data
        self.results = []
        for play in (data or {}).get("plays", []):
            for task in play.get("tasks", []):
                for _host, res in task.get("hosts", {}).items():
                    res = dict(res)
                    res["_task"] = task["task"]["name"]
                    self.results.append(res)

    def result(self, index=-1):
        return self.results[index]

    def __repr__(self):
        return "PlaybookRun(rc=%s, results=%s, stderr=%s)" % (self.rc, json.dumps(self.results, default=str)[:3000], self.stderr[-2000:])


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tempfile.gettempdir(), "lbtest-ansible-tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "PATH": "%s:%s" % (BIN, env.get("PATH", "")),
    })
    env.update(extra or {})
    return env


def run_playbook(tasks, check=False, diff=False, extra_env=None, extra_args=(), workdir=None):
    """Run ``tasks`` on localhost through the real ansible-playbook."""
    if isinstance(tasks, dict):
        tasks = [tasks]
    play = [{
        "name": "lifeboat test",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": tasks,
    }]
    fd, path = tempfile.mkstemp(suffix=".yml", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(play, f)  # JSON is YAML
    argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", path] + list(extra_args)
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(extra_env), check=False)
    os.unlink(path)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else None
    except ValueError:
        data = None
    return PlaybookRun(proc, data)


def run_module(module, args, check=False, diff=False, extra_env=None):
    """One task of ``lifeboat.backup.<module>`` through ansible-playbook; its result."""
    run = run_playbook([{"name": module, "lifeboat.backup.%s" % module: args, "ignore_errors": True}],
                       check=check, diff=diff, extra_env=extra_env)
    assert run.results, "ansible-playbook produced no result: %r" % (run,)
    return run.result(0)


def dedent(text):
    return textwrap.dedent(text).lstrip()


def complete_artifacts_are_honest(root, tenant):
    """Every artifact with a manifest matches it byte for byte; returns their names."""
    from lifeboat_engine import manifest, repository

    repo = repository.open_repository(root)
    names = []
    for a in repo.artifacts(tenant):
        if not a["complete"]:
            continue
        doc = manifest.validate(repo.read_json(tenant, a["manifest"]), a["manifest"])
        data = open(os.path.join(root, tenant, a["name"]), "rb").read()
        assert hashlib.sha256(data).hexdigest() == doc["sha256"] and len(data) == doc["size"]["stored"], a["name"]
        names.append(a["name"])
    return names


def write_fleet_inventory(base, name, tenants, group_vars, **host_vars):
    """An inventory for the fleet playbooks: localhost with ``tenants``, run by this venv.

    The playbooks run lifeboat's modules with lifeboat_python (default: the
    agent's venv on a host); here, this venv. ``group_vars`` go to group_vars/all.
    """
    inv = base / name
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "lifeboat_python": sys.executable, "lifeboat_tenants": tenants}
    host.update(host_vars)
    (inv / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"localhost": host}}}))
    (inv / "group_vars" / "all.yml").write_text(json.dumps(group_vars))
    return inv
