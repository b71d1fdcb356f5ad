"""age_encrypt state=decrypted straight from a repository (a folder or S3):
what dr_restore.yml uses to put configuration bundles back on a rebuilt host."""

import os

import pytest

import lbtest


def make_bundle(tmp_path, name="etc-myapp", text="v1"):
    src = tmp_path / name
    (src / "tls").mkdir(parents=True, exist_ok=True)
    (src / ".env").write_text("DATABASE_URL=postgres://app@db/app %s\n" % text)
    (src / "tls" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n%s\n" % text)
    return src


def files_of(folder):
    out = {}
    for base, _dirs, names in os.walk(str(folder)):
        for n in names:
            path = os.path.join(base, n)
            with open(path) as f:
                out[os.path.relpath(path, str(folder))] = f.read()
    return out


def store(repo_options, src, keys):
    res = lbtest.run_module("age_encrypt", dict(repo_options, src=str(src), tenant="acme-config",
                                                recipients=[keys["public"]]))
    assert res.get("changed") is True and not res.get("failed"), res
    return os.path.basename(res["artifact"])


def test_a_local_repository_bundle_is_put_back_latest_or_by_name(tmp_path, keys):
    repo = str(tmp_path / "repo")
    first = store({"repository": repo}, make_bundle(tmp_path, text="v1"), keys)
    import time
    time.sleep(1.1)  # a later stamp
    second = store({"repository": repo}, make_bundle(tmp_path, name="etc-myapp2", text="v2"), keys)
    dest = tmp_path / "restored"
    args = dict(state="decrypted", repository=repo, tenant="acme-config", dest=str(dest),
                identity_file=keys["identity"])
    dry = lbtest.run_module("age_encrypt", args, check=True)
    assert dry.get("changed") is True and not dest.exists(), dry
    res = lbtest.run_module("age_encrypt", args)
    assert res.get("changed") is True and res["artifact"] == second, res
    assert files_of(dest) == files_of(tmp_path / "etc-myapp2")
    again = lbtest.run_module("age_encrypt", args)
    assert again.get("changed") is False, again
    older = lbtest.run_module("age_encrypt", dict(args, artifact=first, dest=str(tmp_path / "older")))
    assert older.get("changed") is True and older["artifact"] == first, older
    assert files_of(tmp_path / "older") == files_of(tmp_path / "etc-myapp")


@pytest.mark.parametrize("artifact, words", [
    ("latest_verified", ["no verified", "backup_verify"]),
    ("acme-config-20200101T000000Z.tar.zst.age", ["is not in"]),
    ("other-20200101T000000Z.tar.zst.age", ["not an artifact name of tenant acme-config"]),
    ("../acme-config-20200101T000000Z.tar.zst.age", ["not an artifact name"]),
])
def test_bad_artifact_choices_are_refused_and_nothing_is_written(tmp_path, keys, artifact, words):
    repo = str(tmp_path / "repo")
    store({"repository": repo}, make_bundle(tmp_path), keys)
    dest = tmp_path / "restored"
    res = lbtest.run_module("age_encrypt", dict(state="decrypted", repository=repo, tenant="acme-config",
                                                artifact=artifact, dest=str(dest), identity_file=keys["identity"]))
    assert res.get("failed") is True, res
    assert all(w in res["msg"] for w in words), res["msg"]
    assert not dest.exists()


def test_damaged_or_incomplete_artifacts_are_not_unpacked(tmp_path, keys):
    repo = tmp_path / "repo"
    name = store({"repository": str(repo)}, make_bundle(tmp_path), keys)
    folder = repo / "acme-config"
    dest = tmp_path / "restored"
    args = dict(state="decrypted", repository=str(repo), tenant="acme-config", artifact=name, dest=str(dest),
                identity_file=keys["identity"])
    data = bytearray((folder / name).read_bytes())
    data[-20] ^= 0x01
    os.chmod(str(folder / name), 0o600)
    (folder / name).write_bytes(bytes(data))
    res = lbtest.run_module("age_encrypt", args)
    assert res.get("failed") is True and ("modified" in res["msg"] or "does not match" in res["msg"]), res
    assert not dest.exists() or files_of(dest) == {}
    manifest = [n for n in os.listdir(str(folder)) if n.endswith(".manifest.json")][0]
    os.unlink(str(folder / manifest))
    res = lbtest.run_module("age_encrypt", args)
    assert res.get("failed") is True and "incomplete" in res["msg"], res
    both = lbtest.run_module("age_encrypt", dict(args, src=str(folder / name)))
    assert both.get("failed") is True and "not both" in both["msg"], both


def test_an_s3_bundle_is_put_back_from_the_newest_verified_artifact(s3, keys, tmp_path):
    url = s3.url("fleet")
    opts = dict(s3.options(), repository=url)
    src = make_bundle(tmp_path)
    first = store(opts, src, keys)
    verified = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, tenant="acme-config",
                                                       identity_file=keys["identity"]))
    assert verified["status"] == "PASS", verified
    import time
    time.sleep(1.1)
    newer = store(opts, make_bundle(tmp_path, name="etc-newer", text="unverified"), keys)
    assert newer != first
    dest = tmp_path / "restored"
    res = lbtest.run_module("age_encrypt", dict(opts, state="decrypted", tenant="acme-config",
                                                artifact="latest_verified", dest=str(dest),
                                                identity_file=keys["identity"]))
    assert res.get("changed") is True and not res.get("failed"), res
    assert res["artifact"] == first and res["verified_at"] and res["src"].startswith("s3://"), res
    assert files_of(dest) == files_of(src)
    # The wrong identity: a clear error, nothing more written.
    other = tmp_path / "other"
    res = lbtest.run_module("age_encrypt", dict(opts, state="decrypted", tenant="acme-config", dest=str(other),
                                                identity_file=keys["other_identity"]))
    assert res.get("failed") is True and "identit" in res["msg"], res
    assert not other.exists() or files_of(other) == {}
