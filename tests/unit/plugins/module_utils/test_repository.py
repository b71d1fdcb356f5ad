import os
import stat
import subprocess
import sys
import textwrap

import pytest

import lbtest
from lifeboat_engine import locking, naming, repository
from lifeboat_engine.errors import LifeboatError, LockBusy


def test_writer_publishes_atomically_with_private_modes(tmp_path):
    repo = repository.open_repository(str(tmp_path / "r"))
    w = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    w.write(b"data")
    # while writing, only a dot-file exists: nothing looks complete
    assert repo.artifacts("acme") == []
    assert len(repo.partial_files("acme")) == 1
    path = w.commit()
    assert open(path, "rb").read() == b"data"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "r").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "r" / "acme").st_mode) == 0o700
    assert repo.partial_files("acme") == []
    arts = repo.artifacts("acme")
    assert [a["name"] for a in arts] == ["acme-20260101T000000Z.sqlite"]
    assert arts[0]["complete"] is False  # no manifest yet


def test_commit_never_replaces_an_existing_artifact(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    for content in (b"first", b"second"):
        w = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
        w.write(content)
        if content == b"first":
            w.commit()
        else:
            with pytest.raises(LifeboatError):
                w.commit()
    assert open(tmp_path / "acme" / "acme-20260101T000000Z.sqlite", "rb").read() == b"first"
    assert repo.partial_files("acme") == []


def test_abort_leaves_nothing(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    w = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    w.write(b"half")
    w.abort()
    assert repo.names("acme") == {}


def test_manifest_makes_an_artifact_complete(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    w = repo.new_writer("t1", "t1-20260101T000000Z.pgdump.zst.age")
    w.write(b"x")
    w.commit()
    repo.write_json("t1", "t1-20260101T000000Z.manifest.json", {"a": 1})
    assert repo.latest_complete("t1")["name"] == "t1-20260101T000000Z.pgdump.zst.age"
    assert repo.read_json("t1", "t1-20260101T000000Z.manifest.json") == {"a": 1}


@pytest.mark.parametrize("tenant", ["../x", "a/b", "/etc", "..", "A"])
def test_paths_cannot_escape(tmp_path, tenant):
    repo = repository.open_repository(str(tmp_path / "r"))
    with pytest.raises(LifeboatError):
        repo.new_writer(tenant, "x")
    assert not (tmp_path / "x").exists()


def test_symlinked_tenant_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "r"
    root.mkdir()
    os.symlink(str(outside), str(root / "acme"))
    repo = repository.open_repository(str(root))
    with pytest.raises(LifeboatError) as e:
        repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    assert "symlink" in str(e.value)
    assert list(outside.iterdir()) == []


def _lose_the_race(created_by_other):
    """os.makedirs that finds the folder created by another process first."""
    real = os.makedirs

    def makedirs(path, mode=0o777, exist_ok=False):
        created_by_other(path)
        return real(path, mode, exist_ok)

    return makedirs


def test_a_repository_root_created_concurrently_is_used(tmp_path, monkeypatch):
    # Parallel tenants of one agent run create the root at the same moment:
    # the loser of that race must carry on, not fail its tenant.
    root = tmp_path / "r"
    monkeypatch.setattr(os, "makedirs", _lose_the_race(lambda p: os.mkdir(p, 0o700)))
    repo = repository.open_repository(str(root))
    writer = repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    writer.abort()
    assert (root / "acme").is_dir()


def test_a_repository_root_replaced_by_a_symlink_in_the_race_is_refused(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "r"
    monkeypatch.setattr(os, "makedirs", _lose_the_race(lambda p: os.symlink(str(outside), p)))
    repo = repository.open_repository(str(root))
    with pytest.raises(LifeboatError) as e:
        repo.new_writer("acme", "acme-20260101T000000Z.sqlite")
    assert "symlink" in str(e.value) and e.value.option == "repository"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("spec", ["", "ftp://x/y", "http://bucket/prefix", "a\0b"])
def test_unsupported_repositories_name_the_option(spec):
    with pytest.raises(LifeboatError) as e:
        repository.open_repository(spec)
    assert e.value.option == "repository"


def test_lock_excludes_a_second_holder_and_says_who(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    with repo.lock("acme", "backup of tenant acme"):
        assert repo.lock_holder("acme")["pid"] == os.getpid()
        # a separate process cannot take it
        code = textwrap.dedent("""
            import sys; sys.path.insert(0, %r)
            import lbtest; lbtest.load_engine()
            from lifeboat_engine import repository
            from lifeboat_engine.errors import LockBusy
            try:
                repository.open_repository(%r).lock("acme", "second backup").acquire()
            except LockBusy as e:
                print("BUSY", e)
        """ % (str(lbtest.ROOT / "tests"), str(tmp_path)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout
        assert out.startswith("BUSY") and "backup of tenant acme" in out and "lock_timeout" in out
    assert repo.lock_holder("acme") is None


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    repo.ensure_tenant_dir("acme")
    code = textwrap.dedent("""
        import sys, time; sys.path.insert(0, %r)
        import lbtest; lbtest.load_engine()
        from lifeboat_engine import repository
        repository.open_repository(%r).lock("acme", "doomed").acquire()
        print("held", flush=True); time.sleep(60)
    """ % (str(lbtest.ROOT / "tests"), str(tmp_path)))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert repo.lock_holder("acme")["operation"] == "doomed"
    proc.kill()
    proc.wait()
    with repo.lock("acme", "next run"):
        pass


def test_lock_timeout_waits_then_fails(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    with repo.lock("acme", "first"):
        lock = locking.FileLock(str(tmp_path / "acme" / ".lock"), "second", timeout=0.5)
        # flock is per open file description: a second open in this process conflicts too
        with pytest.raises(LockBusy):
            lock.acquire()


def test_check_writable_reports_read_only_repositories(tmp_path):
    if os.geteuid() == 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        # root ignores modes: use a path under a file, which can never be created
        f = tmp_path / "file"
        f.write_text("x")
        repo = repository.open_repository(str(f / "sub"))
        with pytest.raises(LifeboatError):
            repo.ensure_tenant_dir("acme")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(LifeboatError):
            repository.open_repository(str(ro / "repo")).check_writable()


def test_listing_ignores_foreign_files(tmp_path):
    repo = repository.open_repository(str(tmp_path))
    repo.ensure_tenant_dir("acme")
    for name in ["README", "acme-20260101T000000Z.exe", "other-20260101T000000Z.sqlite", ".lock"]:
        (tmp_path / "acme" / name).write_text("x")
    assert repo.artifacts("acme") == []
    assert naming.parse_artifact_name("acme-20260101T000000Z.sqlite")


def test_the_engines_s3_option_names_are_the_modules_s3_options():
    """argspec (what the modules accept) and repository (what the engines pass on) name the same options."""
    from lifeboat_engine import argspec, repository
    assert set(argspec.S3) == set(repository.S3_OPTIONS)
    assert set(argspec.S3_CONNECTION) == set(repository.S3_CONNECTION_OPTIONS)
