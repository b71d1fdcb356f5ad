"""The `lifeboat` host agent, run as a command from its built wheel.

The wheel is built once per session by scripts/build-agent-wheel.sh and
unpacked with pip (--target, no dependencies: the test venv has them), so
these tests also prove the packaging: the engine imports as
``lifeboat_engine`` with its relative imports, and the console script's
entry point exists. Real SQLite files, a real PostgreSQL cluster, the real
age CLI, a real HTTP server for the webhook, a real pseudo-terminal.
"""

import configparser
import http.server
import json
import os
import pty
import pwd
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import pytest

import lbtest

LINE = re.compile(r"^(?:<\d>)?op=")


@pytest.fixture(scope="session")
def agent_pkg(tmp_path_factory):
    out = tmp_path_factory.mktemp("agent-wheel")
    proc = subprocess.run([str(lbtest.ROOT / "scripts" / "build-agent-wheel.sh"), str(out / "dist")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    wheel = proc.stdout.strip().splitlines()[-1]
    target = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    wheel], check=True, capture_output=True)
    return {"wheel": wheel, "site": str(target)}


class Agent(object):
    def __init__(self, site, root):
        self.site = site
        self.root = root
        self.config = os.path.join(root, "lifeboat.yml")
        self.tenants_env = os.path.join(root, "tenants.env")
        self.state = os.path.join(root, "state")
        self.metrics = os.path.join(root, "metrics")
        os.makedirs(self.metrics, exist_ok=True)

    def configure(self, settings, tenants, extra_env=""):
        base = {"state_dir": self.state, "lock_file": os.path.join(self.state, "agent.lock"),
                "metrics_dir": self.metrics}
        base.update(settings)
        with open(self.config, "w") as f:
            json.dump(base, f)  # JSON is YAML
        with open(self.tenants_env, "w") as f:
            f.write('TENANTS="%s"\n%s' % (" ".join(tenants), extra_env))

    def argv(self, *args):
        return [sys.executable, "-m", "lifeboat_engine.agent", "--config", self.config,
                "--tenants-env", self.tenants_env] + list(args)

    def env(self, extra=None):
        env = dict(os.environ, PYTHONPATH=self.site)
        env.pop("JOURNAL_STREAM", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        env.pop("BACKUP_PRIVATE_KEY", None)
        env.update(extra or {})
        return env

    def run(self, *args, env=None, timeout=180):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env(env), timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
        proc.lines = [parse(line) for line in proc.stdout.splitlines() if LINE.match(line)]
        proc.tenants = dict((x["tenant"], x) for x in proc.lines if "tenant" in x)
        proc.done = [x for x in proc.lines if x.get("event") == "done"]
        return proc

    def metrics_text(self, op):
        with open(os.path.join(self.metrics, "lifeboat_%s.prom" % op)) as f:
            return f.read()


def parse(line):
    line = re.sub(r"^<\d>", "", line)
    out = {}
    for m in re.finditer(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        value = m.group(2)
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        out[m.group(1)] = value
    return out


def metric(text, name, tenant=None):
    pattern = r"^%s%s (\S+)$" % (re.escape(name), re.escape('{tenant="%s"}' % tenant) if tenant else "")
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


def make_sqlite(path, rows=100, with_guests=False):
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("v%d" % i,) for i in range(rows)])
    if with_guests:
        conn.execute("CREATE TABLE guests (id INTEGER PRIMARY KEY, email TEXT, left_at TEXT)")
        conn.executemany("INSERT INTO guests (email, left_at) VALUES (?, datetime('now', ?))",
                         [("g%d@example.com" % i, "-%d days" % i) for i in range(1, 61)])
    conn.commit()
    conn.close()
    return str(path)


@pytest.fixture
def agent(agent_pkg, tmp_path):
    return Agent(agent_pkg["site"], str(tmp_path))


@pytest.fixture
def sqlite_setup(agent, tmp_path, keys):
    tenants = {}
    for name in ("alpha", "beta", "gamma"):
        tenants[name] = {"engine": "sqlite", "path": make_sqlite(tmp_path / ("%s.db" % name), with_guests=True)}
    settings = {"repository": str(tmp_path / "repo"), "recipients": [keys["public"]], "tenants": tenants,
                "parallel": 2, "verify": {"identity_file": keys["identity"]}}
    agent.configure(settings, list(tenants))
    return settings


# -- packaging -----------------------------------------------------------------------------

def test_the_wheel_holds_the_engine_and_the_console_script(agent_pkg):
    with zipfile.ZipFile(agent_pkg["wheel"]) as z:
        names = z.namelist()
        entry = [n for n in names if n.endswith("entry_points.txt")][0]
        eps = configparser.ConfigParser()
        eps.read_string(z.read(entry).decode())
        meta = z.read([n for n in names if n.endswith("METADATA")][0]).decode()
    assert eps["console_scripts"]["lifeboat"] == "lifeboat_engine.agent:main"
    assert "lifeboat_engine/backup.py" in names and "lifeboat_engine/agent.py" in names
    assert not [n for n in names if n.startswith(("plugins/", "ansible"))]
    requires = sorted(line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:"))
    assert "pyrage==1.4.0" in requires and "PyYAML==6.0.3" in requires


def test_pyproject_pins_are_the_pins_of_requirements_txt():
    import tomllib

    deps = tomllib.loads((lbtest.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [line.split("#")[0].strip() for line in (lbtest.ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert all("==" in d for d in deps), "the agent's dependencies are pinned"
    missing = sorted(set(reqs) - set(deps))
    assert missing == [], "requirements.txt pins missing from pyproject.toml: %s" % missing


def test_version_and_help(agent):
    proc = subprocess.run(agent.argv("--version"), capture_output=True, text=True, env=agent.env(), check=False)
    assert proc.returncode == 0 and proc.stdout.strip().startswith("lifeboat 0.")
    proc = subprocess.run(agent.argv("--help"), capture_output=True, text=True, env=agent.env(), check=False)
    for sub in ("backup", "verify", "prune", "anonymize", "restore", "status"):
        assert sub in proc.stdout


def test_the_engine_runs_without_ansible(agent, sqlite_setup):
    code = ("import sys, importlib.abc\n"
            "class No(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('ansible', 'ansible_collections'): raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, No())\n"
            "from lifeboat_engine import agent\n"
            "sys.exit(agent.main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "--config", agent.config, "--tenants-env", agent.tenants_env,
                           "backup", "--tenant", "alpha"], capture_output=True, text=True, env=agent.env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- backup --------------------------------------------------------------------------------

def test_backup_runs_tenants_in_parallel_with_one_line_each(agent, sqlite_setup, keys, tmp_path):
    proc = agent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.tenants) == ["alpha", "beta", "gamma"], "no globals for SQLite-only hosts"
    assert [x["event"] for x in proc.lines if "event" in x] == ["start", "done"]
    assert proc.lines[0]["parallel"] == "2"
    for name, line in proc.tenants.items():
        assert line["status"] == "ok" and int(line["size"]) > 0 and line["rows"] == "160"
        art = line["artifact"]
        assert os.path.exists(art) and art.startswith(str(tmp_path / "repo" / name))
        manifest = json.load(open(re.sub(r"\.sqlite\.zst\.age$", ".manifest.json", art)))
        assert manifest["size"]["stored"] == os.path.getsize(art)
        plain = subprocess.run("age -d -i %s %s | zstd -d -q" % (keys["identity"], art), shell=True,
                               capture_output=True, check=True).stdout
        assert plain.startswith(b"SQLite format 3")
    text = agent.metrics_text("backup")
    for name in ("alpha", "beta", "gamma"):
        assert metric(text, "lifeboat_backup_status", name) == 1
        assert abs(metric(text, "lifeboat_backup_last_success_timestamp_seconds", name) - time.time()) < 120
        assert metric(text, "lifeboat_backup_size_bytes", name) > 0
    assert metric(text, 'lifeboat_backup_tenants{status="ok"}') == 3


def test_check_mode_writes_nothing(agent, sqlite_setup, tmp_path):
    proc = agent.run("backup", "--check")
    assert proc.returncode == 0, proc.stdout
    assert not os.path.exists(str(tmp_path / "repo" / "alpha")) or not os.listdir(str(tmp_path / "repo" / "alpha"))
    assert not os.path.exists(os.path.join(agent.metrics, "lifeboat_backup.prom"))


def test_a_failed_tenant_fails_the_run_but_not_the_others_and_keeps_its_last_success(agent, sqlite_setup, tmp_path):
    assert agent.run("backup").returncode == 0
    first = metric(agent.metrics_text("backup"), "lifeboat_backup_last_success_timestamp_seconds", "beta")
    os.rename(str(tmp_path / "beta.db"), str(tmp_path / "beta.moved"))
    time.sleep(1.1)
    proc = agent.run("backup")
    assert proc.returncode == 1
    assert proc.tenants["beta"]["status"] == "failed" and "beta.db" in proc.tenants["beta"]["error"]
    assert proc.tenants["alpha"]["status"] == "ok" and proc.tenants["gamma"]["status"] == "ok"
    assert proc.done[0]["failed"] == "1" and proc.done[0]["failed_tenants"] == "beta"
    text = agent.metrics_text("backup")
    assert metric(text, "lifeboat_backup_status", "beta") == 0
    assert metric(text, "lifeboat_backup_last_success_timestamp_seconds", "beta") == first
    assert metric(text, "lifeboat_backup_last_run_timestamp_seconds", "beta") > first


def test_postgresql_tenants_and_the_servers_globals(agent, pg, keys, tmp_path):
    pg.psql("DROP DATABASE IF EXISTS agent_db")
    pg.psql("CREATE DATABASE agent_db")
    pg.psql("CREATE TABLE a (x int); INSERT INTO a SELECT generate_series(1, 500)", db="agent_db")
    pg.psql("DROP DATABASE IF EXISTS agent_saas")
    pg.psql("CREATE DATABASE agent_saas")
    pg.psql("CREATE SCHEMA tenant_s; CREATE TABLE tenant_s.b (y int); INSERT INTO tenant_s.b VALUES (1), (2)",
            db="agent_saas")
    pwfile = tmp_path / "pw"
    pwfile.write_text(pg.password + "\n")
    conn = {"login_host": "127.0.0.1", "login_port": pg.port, "login_user": pg.user,
            "login_password_file": str(pwfile), "pg_bin_dir": os.path.dirname(pg.bin("pg_dump"))}
    agent.configure({"repository": str(tmp_path / "repo"), "recipients": [keys["public"]], "connection": conn,
                     "tenants": {"dbt": {"database": "agent_db"},
                                 "schemat": {"database": "agent_saas", "schema": "tenant_s"}}},
                    ["dbt", "schemat"])
    proc = agent.run("backup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    globals_label = [t for t in proc.tenants if t.startswith("_globals_")]
    assert len(globals_label) == 1 and proc.tenants[globals_label[0]]["status"] == "ok"
    assert proc.tenants["dbt"]["rows"] == "500" and proc.tenants["schemat"]["rows"] == "2"
    # the schema tenant went in its database's pass, with the shared part first, one line each
    assert proc.tenants["_shared_agent_saas"]["status"] == "ok", proc.stdout
    manifests = [n for n in os.listdir(str(tmp_path / "repo" / "schemat")) if n.endswith(".manifest.json")]
    with open(str(tmp_path / "repo" / "schemat" / manifests[0])) as f:
        assert json.load(f)["shared"]["tenant"] == "_shared_agent_saas"
    proc = agent.run("prune", "--check")
    assert proc.tenants["_shared_agent_saas"]["status"] == "ok", proc.stdout  # the shared part rotates too
    assert pg.password not in proc.stdout + proc.stderr
    for name in ("dbt", "schemat", globals_label[0]):
        assert metric(agent.metrics_text("backup"), "lifeboat_backup_status", name) == 1
    proc = agent.run("backup", "--tenant", "dbt")
    assert sorted(proc.tenants) == ["dbt"], "a run for some tenants skips the globals"
    assert metric(agent.metrics_text("backup"), "lifeboat_backup_status", "schemat") == 1, "others' history stays"


# -- lock ----------------------------------------------------------------------------------

def test_a_second_run_exits_75_with_a_clear_message_or_waits(agent, sqlite_setup, agent_pkg):
    sys.path.insert(0, agent_pkg["site"])
    try:
        from lifeboat_engine.locking import FileLock
    finally:
        sys.path.pop(0)
    os.makedirs(agent.state, exist_ok=True)
    lock = FileLock(os.path.join(agent.state, "agent.lock"), "lifeboat backup (the test's holder)").acquire()
    try:
        proc = agent.run("backup")
        assert proc.returncode == 75
        assert "Another lifeboat run holds the host lock" in proc.stdout
        assert "the test's holder" in proc.stdout and "--wait" in proc.stdout
        proc = subprocess.Popen(agent.argv("backup", "--wait", "60"), stdout=subprocess.PIPE, text=True,
                                env=agent.env(), stdin=subprocess.DEVNULL)
        first = proc.stdout.readline()
        assert parse(first)["event"] == "waiting" and "the test's holder" in first, first
        time.sleep(0.5)
        assert proc.poll() is None, "it waits while the lock is held"
        lock.release()
        rest = proc.stdout.read()
        assert proc.wait(120) == 0, first + rest
        assert rest.count("status=ok") == 3
    finally:
        lock.release()


# -- configuration errors --------------------------------------------------------------------

def test_configuration_errors_exit_2_and_name_the_key(agent, tmp_path):
    agent.configure({"repository": "/r", "tenants": {"acme": {"engine": "sqlit"}}}, ["acme"])
    proc = agent.run("backup")
    assert proc.returncode == 2
    assert proc.lines[0]["key"] == "tenants.acme.engine" and "lifeboat.yml: tenants.acme.engine:" in proc.lines[0]["error"]
    agent.configure({"repository": str(tmp_path / "r")}, [])
    proc = agent.run("backup")
    assert proc.returncode == 2 and proc.lines[0]["key"] == "recipients"
    agent.configure({"repository": str(tmp_path / "r"), "recipients": ["age1x"]}, [])
    proc = agent.run("backup")
    assert proc.returncode == 2 and proc.lines[0]["key"] == "TENANTS"
    bad = tmp_path / "bad.yml"
    bad.write_text("alert:\n  webhook: http://x\n")
    proc = agent.run("check-config", "--file", str(bad))
    assert proc.returncode == 2 and "bad.yml: alert.webhook: unknown key" in proc.stdout


# -- verify, prune, anonymize, restore, status ---------------------------------------------------

def test_verify_reads_the_identity_from_the_credentials_directory(agent, sqlite_setup, keys, tmp_path):
    assert agent.run("backup").returncode == 0
    settings = dict(sqlite_setup, verify={})
    agent.configure(settings, list(settings["tenants"]))
    proc = agent.run("verify")
    assert proc.returncode == 2 and proc.lines[0]["key"] == "verify.identity_credential"
    creds = tmp_path / "creds"
    creds.mkdir()
    shutil.copy(keys["identity"], str(creds / "age-identity"))
    proc = agent.run("verify", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.lines[0]["identity"] == "credential"
    assert all(x["status"] == "ok" and x["result"] == "PASS" for x in proc.tenants.values())
    assert metric(agent.metrics_text("verify"), "lifeboat_verify_status", "alpha") == 1
    status = agent.run("status")
    assert status.returncode == 0
    rows = dict((line.split()[0], line) for line in status.stdout.splitlines()[2:] if line.strip())
    assert "PASS" in rows["alpha"] and "OK" in rows["alpha"]


def test_verify_of_a_damaged_artifact_fails_the_run(agent, sqlite_setup, keys, tmp_path):
    proc = agent.run("backup")
    art = proc.tenants["alpha"]["artifact"]
    with open(art, "r+b") as f:
        f.seek(os.path.getsize(art) // 2)
        f.write(b"\x00" * 16)
    proc = agent.run("verify")
    assert proc.returncode == 1
    assert proc.tenants["alpha"]["status"] == "failed" and "FAIL" in proc.tenants["alpha"]["error"]
    assert proc.tenants["beta"]["status"] == "ok"
    assert metric(agent.metrics_text("verify"), "lifeboat_verify_status", "alpha") == 0


def test_status_flags_tenants_past_their_rpo(agent, sqlite_setup):
    settings = dict(sqlite_setup)
    settings["tenants"] = dict(settings["tenants"])
    settings["tenants"]["alpha"] = dict(settings["tenants"]["alpha"], rpo="1s")
    agent.configure(settings, list(settings["tenants"]))
    assert agent.run("backup").returncode == 0
    time.sleep(2.1)
    proc = agent.run("status", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    by = dict((t["tenant"], t) for t in data["tenants"])
    assert by["alpha"]["rpo"] == "LATE" and by["beta"]["rpo"] == "OK" and by["beta"]["verified"] is None
    assert by["beta"]["last_backup_status"] == "ok"
    proc = agent.run("status")
    assert "1 tenant(s) need attention: alpha" in proc.stdout


def test_prune_applies_the_retention(agent, sqlite_setup):
    for dummy in range(2):
        assert agent.run("backup").returncode == 0
        time.sleep(1.1)
    proc = agent.run("prune", "--check")
    assert proc.returncode == 0 and all(x["status"] == "ok" for x in proc.tenants.values())
    proc = agent.run("prune")
    assert proc.returncode == 0, proc.stdout
    # Two artifacts the same UTC day: the daily rule keeps the newest one.
    assert all(x["deleted"] == "1" and x["kept"] == "1" for x in proc.tenants.values()), proc.stdout
    assert metric(agent.metrics_text("prune"), "lifeboat_prune_status", "alpha") == 1


def test_a_retention_of_zero_means_keep_none_as_in_backup_prune(agent, sqlite_setup):
    """retention 0 everywhere: backup_prune's meaning (keep none by that rule; the newest stays, protected),
    not "not set" (which made prune refuse to run: no policy)."""
    agent.configure(dict(sqlite_setup, retention={"daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}),
                    list(sqlite_setup["tenants"]))
    for dummy in range(2):
        assert agent.run("backup").returncode == 0
        time.sleep(1.1)
    proc = agent.run("prune")
    assert proc.returncode == 0, proc.stdout
    assert all(x["deleted"] == "1" and x["kept"] == "1" for x in proc.tenants.values()), proc.stdout


def test_anonymize_uses_pii_days_from_tenants_env(agent, sqlite_setup, tmp_path):
    settings = dict(sqlite_setup, anonymize={"tenant_rules": {"alpha": [
        {"table": "guests", "timestamp": "left_at", "columns": {"email": "null"}}]}})
    agent.configure(settings, list(settings["tenants"]), extra_env="PII_DAYS=20\n")
    proc = agent.run("anonymize")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.tenants["alpha"]["status"] == "ok" and proc.tenants["beta"]["status"] == "skipped"
    conn = sqlite3.connect(str(tmp_path / "alpha.db"))
    left = conn.execute("SELECT count(*) FROM guests WHERE email IS NOT NULL").fetchone()[0]
    conn.close()
    assert left in (19, 20), "rows 1..19 days old keep their email"
    assert metric(agent.metrics_text("anonymize"), "lifeboat_anonymize_rows_scrubbed", "alpha") >= 40


def test_restore_of_a_sqlite_tenant(agent, sqlite_setup, keys, tmp_path):
    assert agent.run("backup").returncode == 0
    target = tmp_path / "restored.db"
    proc = agent.run("restore", "beta", "--target-path", str(target), "--identity-file", keys["identity"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lbtest.sqlite_checksums(str(target)) == lbtest.sqlite_checksums(str(tmp_path / "beta.db"))
    # operator mistakes: another tenant's file is refused whatever the flags, and left as it was ...
    alpha = str(tmp_path / "alpha.db")
    before = lbtest.sqlite_checksums(alpha)
    proc = agent.run("restore", "beta", "--target-path", alpha, "--force", "--replace-target", alpha,
                     "--identity-file", keys["identity"])
    assert proc.returncode != 0 and "other tenants: alpha" in proc.stdout, proc.stdout + proc.stderr
    assert lbtest.sqlite_checksums(alpha) == before
    # ... and so is another tenant's artifact; named twice on purpose, the old file is kept beside it
    gamma_art = sorted(n for n in os.listdir(str(tmp_path / "repo" / "gamma")) if n.endswith(".age"))[-1]
    proc = agent.run("restore", "beta", "--artifact", gamma_art, "--target-path", str(target), "--force",
                     "--replace-target", str(target), "--identity-file", keys["identity"])
    assert proc.returncode != 0 and "source_tenant" in proc.stdout + proc.stderr
    proc = agent.run("restore", "beta", "--target-path", str(target), "--force", "--replace-target", str(target),
                     "--identity-file", keys["identity"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len([n for n in os.listdir(str(tmp_path)) if n.startswith("lb_s_")]) == 1


# -- terminal, journal ------------------------------------------------------------------------------

def test_live_progress_on_a_terminal_and_plain_lines_otherwise(agent, sqlite_setup):
    master, slave = pty.openpty()
    proc = subprocess.Popen(agent.argv("backup"), stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                            env=agent.env({"TERM": "xterm"}))
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = select.select([master], [], [], 0.5)[0]
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    stdout = proc.stdout.read().decode()
    proc.wait()
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode("utf-8", "replace")
    assert "TENANT" in text and "ELAPSED" in text and "\x1b[" in text
    assert all(name in text for name in ("alpha", "beta", "gamma"))
    assert "\x1b[" not in stdout and stdout.count("status=ok") == 3
    plain = agent.run("backup")
    assert "\x1b[" not in plain.stdout + plain.stderr


# -- alert -----------------------------------------------------------------------------------------

class Hook(http.server.BaseHTTPRequestHandler):
    received = []
    code = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(Hook.code)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_alert_runs_the_command_and_posts_the_webhook(agent, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        marker = tmp_path / "alerted"
        agent.configure({"alert": {"command": ["/bin/sh", "-c", 'echo "$LIFEBOAT_FAILED_UNIT" > %s' % marker],
                                   "webhook_url": "http://127.0.0.1:%d/hook" % server.server_port,
                                   "journal_lines": 0}}, [])
        Hook.received = []
        proc = agent.run("alert", "lifeboat-backup.service")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert marker.read_text().strip() == "lifeboat-backup.service"
        assert Hook.received[0]["unit"] == "lifeboat-backup.service"
        assert "lifeboat-backup.service failed" in Hook.received[0]["text"]
        assert proc.lines[0]["delivered"] == "command,webhook"
        Hook.code = 500
        proc = agent.run("alert", "lifeboat-verify.service")
        assert proc.returncode == 1 and "HTTP 500" in proc.lines[0]["error"]
    finally:
        Hook.code = 200
        server.shutdown()


def test_alert_without_configuration_says_so(agent):
    agent.configure({}, [])
    proc = agent.run("alert", "x.service")
    assert proc.returncode == 1 and "no alert is configured" in proc.lines[0]["error"]


# -- run-as user ---------------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_started_as_root_it_runs_as_the_configured_user(agent_pkg, keys):
    user = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="lbagent-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        work = os.path.join(top, "work")
        os.mkdir(work)
        os.chown(work, user.pw_uid, user.pw_gid)
        db = make_sqlite(os.path.join(top, "t.db"))
        os.chmod(db, 0o644)
        a = Agent(agent_pkg["site"], work)
        a.configure({"user": "nobody", "repository": os.path.join(work, "repo"), "recipients": [keys["public"]],
                     "tenants": {"t": {"engine": "sqlite", "path": db}}}, ["t"])
        os.chmod(a.config, 0o644)
        os.chmod(a.tenants_env, 0o644)
        os.chown(a.metrics, user.pw_uid, user.pw_gid)
        proc = a.run("backup")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        art = proc.tenants["t"]["artifact"]
        assert os.stat(art).st_uid == user.pw_uid
        assert os.stat(os.path.join(a.state, "state.json")).st_uid == user.pw_uid
    finally:
        shutil.rmtree(top, ignore_errors=True)
