"""Secrets never leak; plaintext never reaches the disk in the default path;
bad input is refused before anything runs."""

import os
import re
import secrets
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lbtest
from lifeboat_engine import backup, crypto, restore, verify
from lifeboat_engine.errors import LifeboatError


class CmdlineSampler(threading.Thread):
    """Reads every process's command line every few milliseconds while a run goes on."""

    def __init__(self, needles):
        super().__init__(daemon=True)
        self.needles = [n.encode() for n in needles]
        self.stop = threading.Event()
        self.hits = []
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = open("/proc/%s/cmdline" % pid, "rb").read()
                except OSError:
                    continue
                for n in self.needles:
                    if n in cmd:
                        self.hits.append(cmd.replace(b"\0", b" ")[:300])
            self.samples += 1
            time.sleep(0.005)


def files_containing(roots, needles, since):
    found = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if os.path.islink(path) or os.path.getmtime(path) < since or os.path.getsize(path) > 512 << 20:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for n in needles:
                    if n.encode() in data:
                        found.append((path, n))
    return found


def test_no_secret_in_results_verbose_output_files_or_command_lines(pg, tmp_path, s3):
    password = "pw-CANARY-" + secrets.token_hex(8)
    pg.psql("CREATE ROLE leaky LOGIN SUPERUSER PASSWORD '%s'" % password)
    pg.psql("CREATE DATABASE sec")
    pg.psql("CREATE TABLE guests (id serial PRIMARY KEY, email text, created timestamptz);"
            "INSERT INTO guests (email, created) SELECT 'g' || i || '@example.com', now() - i * interval '1 day' "
            "FROM generate_series(1, 2000) i", db="sec")
    identity, public = crypto.generate_identity()
    hmac_secret = "hmac-CANARY-" + secrets.token_hex(8)
    passphrase = "pass-CANARY-" + secrets.token_hex(8)
    s3_secret = "s3-CANARY-" + secrets.token_hex(8)
    needles = [password, identity, hmac_secret, passphrase, s3_secret]
    login = dict(login_host="127.0.0.1", login_port=pg.port, login_user="leaky", login_password=password)
    repo = str(tmp_path / "repo")
    small = tmp_path / "small.txt"
    small.write_text("recovery codes")
    steps = [
        ("backup", "pg_backup", dict(login, tenant="sec", repository=repo, recipients=[public], globals=True)),
        ("verify", "backup_verify", dict(login, repository=repo, tenant="sec", identity=identity,
                                         report=str(tmp_path / "verify.json"))),
        ("restore", "backup_restore", dict(login, tenant="sec", repository=repo, artifact="latest",
                                           target_database="sec_copy", identity=identity)),
        ("anonymize", "tenant_anonymize", dict(login, tenant="sec", hmac_secret=hmac_secret, older_than_days=30,
                                               rules=[{"table": "guests", "timestamp": "created",
                                                       "columns": {"email": "email"}}])),
        ("passphrase", "age_encrypt", dict(src=str(small), dest=str(tmp_path / "small.age"), passphrase=passphrase)),
        ("s3", "pg_backup", dict(login, tenant="sec", repository=s3.url("p"), recipients=[public],
                                 **s3.options(s3_secret_key=s3_secret))),
    ]
    tasks = [{"name": name, "lifeboat.backup." + module: args} for name, module, args in steps]
    sampler = CmdlineSampler(needles)
    started = time.time() - 1
    sampler.start()
    run = lbtest.run_playbook(tasks, extra_args=["-vvv"])
    sampler.stop.set()
    sampler.join()
    names = [r["_task"] for r in run.results]
    assert names == [t["name"] for t in tasks]
    for r in run.results:
        assert not r.get("failed"), r  # (moto accepts any S3 secret)
    text = run.stdout + run.stderr
    assert "ESTABLISH LOCAL CONNECTION" in text  # verbose output really was on
    for n in needles:
        assert n not in text, "a secret reached the -vvv output"
    assert sampler.samples > 50
    assert sampler.hits == [], sampler.hits[:3]
    leaks = files_containing([str(tmp_path), "/tmp", os.path.expanduser("~/.ansible")], needles, started)
    assert leaks == [], leaks


def test_no_plaintext_on_disk_in_the_default_path(pg, keys, tmp_path):
    canary = "CANARY-PLAINTEXT-" + secrets.token_hex(8)
    pg.psql("CREATE DATABASE plain")
    pg.psql("CREATE TABLE notes (id serial PRIMARY KEY, body text);"
            "INSERT INTO notes (body) SELECT 'note ' || i FROM generate_series(1, 50000) i;"
            "INSERT INTO notes (body) VALUES ('%s')" % canary, db="plain")
    repo = str(tmp_path / "repo")
    started = time.time() - 1
    backup.run(dict(pg.login, tenant="plain", repository=repo, recipients=[keys["public"]]))
    res = verify.run(dict(pg.login, repository=repo, tenant="plain", identity_file=keys["identity"]))
    assert res["status"] == "PASS"
    restore.run(dict(pg.login, tenant="plain", repository=repo, artifact="latest", target_database="plain_copy",
                     identity_file=keys["identity"]))
    assert pg.psql("SELECT count(*) FROM notes WHERE body = '%s'" % canary, db="plain_copy") == "1"
    # every file written since the run began, anywhere but inside the databases themselves
    roots = [str(tmp_path), "/tmp", "/var/tmp", "/root", "/var/log", "/run"]
    leaks = files_containing(roots, [canary], started)
    assert leaks == [], leaks
    # the documented exception (jobs: 2 decrypts into a private folder) leaves nothing behind
    restore.run(dict(pg.login, tenant="plain", repository=repo, artifact="latest", target_database="plain_par",
                     identity_file=keys["identity"], jobs=2))
    assert files_containing(roots, [canary], started) == []
    assert not [d for d in os.listdir("/tmp") if d.startswith(("lifeboat-restore-", "lifeboat-verify-", "lifeboat-sqlite-"))]


NAME = st.one_of(
    st.text(min_size=0, max_size=80),
    st.sampled_from(["..", "../x", "a/b", "/etc/passwd", "a\0b", "x' OR 1=1 --", 'a"; DROP DATABASE x; --', "A" * 70,
                     "ünïcode", "a b", ".hidden", "-x", "x" * 64, "ok", "lb_v_0123456789abcdef0123"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME)
def test_hostile_tenant_names_are_refused_before_anything_runs(tmp_path, name):
    repo = tmp_path / "repo"
    before = set(os.listdir(tmp_path))
    valid = bool(re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", name)) and not re.match(r"^lb_[a-z]_[0-9a-f]{20}$", name)
    try:
        backup.run({"tenant": name, "engine": "sqlite", "path": str(tmp_path / "none.db"), "repository": str(repo),
                    "allow_unencrypted": True}, check_mode=True)
        refused = False
    except LifeboatError as e:
        refused = True
        if not valid:
            assert e.option == "tenant", (name, str(e))
    assert refused or valid
    assert set(os.listdir(tmp_path)) == before  # nothing written anywhere


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAME)
def test_hostile_artifact_names_are_refused(tmp_path, name):
    repo = tmp_path / "repo"
    (repo / "acme").mkdir(parents=True, exist_ok=True)
    with pytest.raises(LifeboatError):
        restore.run({"tenant": "acme", "engine": "sqlite", "repository": str(repo), "artifact": name or "x",
                     "target_path": str(tmp_path / "t.db"), "identity": crypto.generate_identity()[0]})
    assert not (tmp_path / "t.db").exists()
