"""age_encrypt's engine: round trips, idempotency, errors, keypair and rekey (real age CLI, real ssh-keygen)."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from lifeboat_engine import agefile, manifest
from lifeboat_engine.errors import LifeboatError


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory):
    if not shutil.which("ssh-keygen"):
        pytest.fail("ssh-keygen is missing: install openssh-client (make test does).")
    d = tmp_path_factory.mktemp("ssh")
    out = {}
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        path = str(d / kind)
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "op@example", "-f", path] + extra, check=True)
        with open(path + ".pub") as f:
            out[kind] = (path, f.read().strip())
    return out


def _tree(root):
    """{relative path: (kind, content or target, mode)} of a folder."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture
def secrets_dir(tmp_path):
    src = tmp_path / "app"
    (src / "tls").mkdir(parents=True)
    (src / ".env").write_text("DB_PASSWORD=hunter2\n")
    (src / "tls" / "key.pem").write_bytes(os.urandom(3000))
    os.chmod(str(src / "tls" / "key.pem"), 0o600)
    (src / "unit.conf").write_text("[Service]\nEnvironment=A=1\n")
    os.symlink("tls/key.pem", str(src / "current.pem"))
    return src


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith(".partial") or ".lifeboat-" in n]


def _kinds(keys, ssh_keys, tmp_path):
    rfile = tmp_path / "recipients.txt"
    rfile.write_text("# operators\n%s\n\n%s\n" % (ssh_keys["ed25519"][1], keys["public"]))
    return {
        "x25519": ({"recipients": [keys["public"]]}, {"identity_file": keys["identity"]}),
        "ssh-ed25519": ({"recipients": [ssh_keys["ed25519"][1]]}, {"identity_file": ssh_keys["ed25519"][0]}),
        "ssh-rsa": ({"recipients": [ssh_keys["rsa"][1]]}, {"identity_file": ssh_keys["rsa"][0]}),
        "recipients_file": ({"recipients_file": str(rfile)}, {"identity_file": ssh_keys["ed25519"][0]}),
        "passphrase": ({"passphrase": "correct horse battery"}, {"passphrase": "correct horse battery"}),
    }


@pytest.mark.parametrize("kind", ["x25519", "ssh-ed25519", "ssh-rsa", "recipients_file", "passphrase"])
@pytest.mark.parametrize("what", ["file", "folder"])
def test_round_trip(tmp_path, keys, ssh_keys, secrets_dir, kind, what):
    enc, dec = _kinds(keys, ssh_keys, tmp_path)[kind]
    src = secrets_dir if what == "folder" else secrets_dir / ".env"
    dest = tmp_path / "out" / ("bundle.tar.zst.age" if what == "folder" else "env.age")
    res = agefile.run(dict(enc, src=str(src), dest=str(dest)))
    assert res["changed"] and res["format"] == ("tar" if what == "folder" else "file")
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    assert "hunter2" not in json.dumps(res)
    back = tmp_path / "back" / ("app" if what == "folder" else "env")
    res = agefile.run(dict(dec, state="decrypted", src=str(dest), dest=str(back)))
    assert res["changed"]
    if what == "folder":
        assert _tree(str(back)) == _tree(str(secrets_dir))
    else:
        assert back.read_text() == "DB_PASSWORD=hunter2\n"
    assert agefile.run(dict(dec, state="decrypted", src=str(dest), dest=str(back)))["changed"] is False
    assert agefile.run(dict(enc, src=str(src), dest=str(dest)))["changed"] is False
    assert _leftovers(str(dest.parent)) == [] and _leftovers(str(back.parent)) == []


def test_encrypted_is_idempotent_and_check_mode_writes_nothing(tmp_path, keys):
    src = tmp_path / "secret.txt"
    src.write_text("s3cr3t-one\n")
    dest = tmp_path / "enc" / "secret.txt.age"
    args = {"src": str(src), "dest": str(dest), "recipients": [keys["public"]]}
    check = agefile.run(args, check_mode=True)
    assert check["changed"] and not dest.parent.exists()
    first = agefile.run(args)
    record = json.loads((dest.parent / ".secret.txt.age.lifeboat.json").read_text())
    assert record["recipients"] == [keys["public"]] and record["sha256"] == first["sha256"]
    assert "s3cr3t" not in json.dumps(record) and record["source_digest"]["algorithm"] == "pbkdf2-sha256"
    again = agefile.run(args)
    assert again["changed"] is False and again["reasons"] == []
    assert agefile.run(args, check_mode=True)["changed"] is False
    blob = dest.read_bytes()
    src.write_text("two\n")
    check = agefile.run(args, check_mode=True)
    assert check["changed"] and check["reasons"] == ["the content of src changed"] and dest.read_bytes() == blob
    assert agefile.run(args)["changed"] and dest.read_bytes() != blob
    args["recipients"] = [keys["public"], keys["other_public"]]
    assert agefile.run(args)["reasons"] == ["recipients changed"]
    assert agefile.run(dict(args, recipients=list(reversed(args["recipients"]))))["changed"] is False
    dest.write_bytes(dest.read_bytes()[:-1] + b"x")
    assert agefile.run(args)["reasons"] == ["dest was modified since it was written"]
    assert agefile.run(dict(args, force=True))["reasons"] == ["force: true"]
    os.chmod(str(dest), 0o644)
    res = agefile.run(args)
    assert res["changed"] and res["reasons"] == [] and stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    res = agefile.run(dict(args, mode="0640", armor=True))
    assert res["reasons"] == ["armor changed"] and stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o640
    assert dest.read_bytes().startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")


def test_remove_src_then_second_run_is_unchanged(tmp_path, keys, secrets_dir):
    dest = tmp_path / "b.tar.zst.age"
    args = {"src": str(secrets_dir), "dest": str(dest), "recipients": [keys["public"]], "remove_src": True}
    assert agefile.run(args)["changed"]
    assert not secrets_dir.exists() and dest.exists()
    assert agefile.run(args)["changed"] is False
    with pytest.raises(LifeboatError) as e:
        agefile.run(dict(args, remove_src=False))
    assert e.value.option == "src"


def test_dest_inside_src_is_refused(tmp_path, keys, secrets_dir):
    with pytest.raises(LifeboatError) as e:
        agefile.run({"src": str(secrets_dir), "dest": str(secrets_dir / "x.age"), "recipients": [keys["public"]]})
    assert e.value.option == "dest" and "inside src" in str(e.value)


@pytest.mark.parametrize("bad", ["age1qqqq", "ssh-ed25519 AAAAbroken", "not-a-key"])
def test_malformed_recipient_is_named(tmp_path, keys, bad):
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(LifeboatError) as e:
        agefile.run({"src": str(src), "dest": str(tmp_path / "f.age"), "recipients": [keys["public"], bad]})
    assert e.value.option == "recipients" and bad[:10] in str(e.value)
    assert not (tmp_path / "f.age").exists()


def test_passphrase_cap_is_enforced(tmp_path):
    src = tmp_path / "big"
    with open(str(src), "wb") as f:
        f.truncate(agefile.PASSPHRASE_MAX_BYTES + 1)
    with pytest.raises(LifeboatError) as e:
        agefile.run({"src": str(src), "dest": str(tmp_path / "big.age"), "passphrase": "pw"})
    assert e.value.option == "passphrase" and "16.8 MB" in str(e.value)
    assert _leftovers(str(tmp_path)) == [] and not (tmp_path / "big.age").exists()


def test_wrong_passphrase_and_wrong_kind_of_secret(tmp_path, keys):
    src = tmp_path / "f"
    src.write_text("secret")
    enc = tmp_path / "f.age"
    agefile.run({"src": str(src), "dest": str(enc), "passphrase": "right"})
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "out"), "passphrase": "wrong"})
    assert e.value.option == "passphrase" and "wrong passphrase" in str(e.value)
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "out"),
                     "identity_file": keys["identity"]})
    assert e.value.option == "passphrase"
    assert not (tmp_path / "out").exists() and _leftovers(str(tmp_path)) == []


@pytest.mark.parametrize("what", ["file", "folder"])
@pytest.mark.parametrize("damage", ["wrong key", "truncated", "tampered"])
def test_damaged_input_or_wrong_key_leaves_nothing(tmp_path, keys, secrets_dir, what, damage):
    big = secrets_dir / "tls" / "big.bin"
    big.write_bytes(os.urandom(600000))  # several age chunks
    src = secrets_dir if what == "folder" else big
    enc = tmp_path / ("b.tar.zst.age" if what == "folder" else "big.bin.age")
    agefile.run({"src": str(src), "dest": str(enc), "recipients": [keys["public"]]})
    identity = keys["identity"]
    blob = bytearray(enc.read_bytes())
    if damage == "wrong key":
        identity = keys["other_identity"]
    elif damage == "truncated":
        enc.write_bytes(bytes(blob[: len(blob) - 70000]))
    else:
        blob[len(blob) // 2] ^= 0x20
        enc.write_bytes(bytes(blob))
    out = tmp_path / "restore" / "target"
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(enc), "dest": str(out), "identity_file": identity})
    msg = str(e.value)
    if damage == "wrong key":
        assert e.value.option == "identity_file" and "None of the identities" in msg and "1 X25519" in msg
    else:
        assert e.value.option == "src" and "truncated or was modified" in msg
    assert "Nothing was written to dest" in msg
    assert not out.exists() and os.listdir(str(out.parent)) == []


def test_identities_never_show_and_env_is_used(tmp_path, keys):
    with open(keys["identity"]) as f:
        identity = f.read()
    secret_line = [line for line in identity.splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    src = tmp_path / "f"
    src.write_text("x")
    enc = tmp_path / "f.age"
    agefile.run({"src": str(src), "dest": str(enc), "recipients": [keys["public"]]})
    res = agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "a"), "identity": identity})
    assert secret_line not in json.dumps(res)
    res = agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "b")},
                      environ={"BACKUP_PRIVATE_KEY": identity})
    assert res["changed"] and (tmp_path / "b").read_text() == "x"
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "c")}, environ={})
    assert e.value.option == "identity_file" and "BACKUP_PRIVATE_KEY" in str(e.value)
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": str(enc), "dest": str(tmp_path / "c"),
                     "identity": keys["other_public"]})
    assert secret_line not in str(e.value) and keys["other_public"] not in str(e.value)


def test_keypair(tmp_path):
    path = tmp_path / "keys" / "id.txt"
    check = agefile.run({"state": "keypair", "identity_file": str(path)}, check_mode=True)
    assert check["changed"] and not path.exists() and check["public_key"] is None
    res = agefile.run({"state": "keypair", "identity_file": str(path)})
    assert res["changed"] and stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    derived = subprocess.run(["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert res["public_key"] == derived
    assert "AGE-SECRET-KEY" not in json.dumps(res)
    again = agefile.run({"state": "keypair", "identity_file": str(path)})
    assert again["changed"] is False and again["public_key"] == derived
    os.chmod(str(path), 0o644)
    assert agefile.run({"state": "keypair", "identity_file": str(path)})["warnings"]
    bad = tmp_path / "pub.txt"
    bad.write_text(derived + "\n")
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "keypair", "identity_file": str(bad)})
    assert e.value.option == "identity" and bad.read_text() == derived + "\n"


def _decrypts_with(path, identity):
    return subprocess.run(["age", "-d", "-i", identity, str(path)], capture_output=True, check=False).returncode == 0


def test_rekey_a_lone_file(tmp_path, keys):
    src = tmp_path / "f"
    src.write_bytes(os.urandom(200000))
    enc = tmp_path / "f.age"
    agefile.run({"src": str(src), "dest": str(enc), "recipients": [keys["public"]], "armor": True})
    args = {"state": "rekeyed", "src": str(enc), "recipients": [keys["other_public"]],
            "identity_file": keys["identity"]}
    check = agefile.run(args, check_mode=True)
    assert check["changed"] and _decrypts_with(enc, keys["identity"])
    res = agefile.run(args)
    assert res["changed"] and res["rekeyed"][0]["recipients_before"] == [keys["public"]]
    assert not _decrypts_with(enc, keys["identity"])
    out = subprocess.run(["age", "-d", "-i", keys["other_identity"], str(enc)], capture_output=True, check=True)
    assert out.stdout == src.read_bytes()
    assert enc.read_bytes().startswith(b"-----BEGIN AGE")  # armor kept
    assert agefile.run(args)["changed"] is False
    # the encrypted state agrees: same source, recipients as recorded by the rekey
    assert agefile.run({"src": str(src), "dest": str(enc), "recipients": [keys["other_public"]],
                        "armor": True})["changed"] is False
    assert _leftovers(str(tmp_path)) == []


def _repo_with_artifacts(tmp_path, keys, secrets_dir):
    repo = tmp_path / "repo"
    for tenant in ("acme", "globex"):
        res = agefile.run({"src": str(secrets_dir), "repository": str(repo), "tenant": tenant,
                           "recipients": [keys["public"]]})
        assert res["changed"]
    return repo


def test_repository_bundle_manifest_and_idempotency(tmp_path, keys, secrets_dir):
    repo = tmp_path / "repo"
    args = {"src": str(secrets_dir), "repository": str(repo), "tenant": "acme", "recipients": [keys["public"]]}
    assert agefile.run(args, check_mode=True)["changed"] and not repo.exists()
    res = agefile.run(args)
    assert res["artifact"].endswith(".tar.zst.age") and os.path.dirname(res["artifact"]) == str(repo / "acme")
    with open(res["manifest"]) as f:
        doc = manifest.validate(json.load(f), res["manifest"])
    assert doc["format"] == "tar" and doc["encryption"]["recipients"] == [keys["public"]]
    assert doc["sha256"] == res["sha256"] and doc["size"]["stored"] == os.path.getsize(res["artifact"])
    assert "hunter2" not in json.dumps(doc)
    assert agefile.run(args)["changed"] is False
    (secrets_dir / ".env").write_text("DB_PASSWORD=changed\n")
    second = agefile.run(args)
    assert second["changed"] and second["artifact"] != res["artifact"]
    back = tmp_path / "back"
    agefile.run({"state": "decrypted", "src": second["artifact"], "dest": str(back), "identity_file": keys["identity"]})
    assert _tree(str(back)) == _tree(str(secrets_dir))


def test_decrypting_an_artifact_checks_its_manifest(tmp_path, keys, secrets_dir):
    res = agefile.run({"src": str(secrets_dir), "repository": str(tmp_path / "repo"), "tenant": "acme",
                       "recipients": [keys["public"]]})
    with open(res["manifest"]) as f:
        doc = json.load(f)
    doc["sha256"] = "0" * 64
    os.chmod(res["manifest"], 0o600)
    with open(res["manifest"], "w") as f:
        json.dump(doc, f)
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "decrypted", "src": res["artifact"], "dest": str(tmp_path / "back"),
                     "identity_file": keys["identity"]})
    assert "does not match its manifest" in str(e.value)
    assert not (tmp_path / "back").exists()


def test_rekey_a_repository(tmp_path, keys, ssh_keys, secrets_dir):
    repo = _repo_with_artifacts(tmp_path, keys, secrets_dir)
    new = [keys["other_public"], ssh_keys["ed25519"][1]]
    args = {"state": "rekeyed", "repository": str(repo), "recipients": new, "identity_file": keys["identity"]}
    check = agefile.run(args, check_mode=True)
    assert check["changed"] and len(check["rekeyed"]) == 2
    res = agefile.run(args)
    assert len(res["rekeyed"]) == 2
    for entry in res["rekeyed"]:
        art = entry["artifact"]
        mpath = art.replace(".tar.zst.age", ".manifest.json")
        with open(mpath) as f:
            doc = manifest.validate(json.load(f), mpath)
        assert doc["encryption"]["recipients"] == new and "rekeyed_at" in doc
        assert doc["sha256"] == entry["sha256"] and doc["size"]["stored"] == os.path.getsize(art)
        assert not _decrypts_with(art, keys["identity"]) and _decrypts_with(art, ssh_keys["ed25519"][0])
        assert _leftovers(os.path.dirname(art)) == []
    assert agefile.run(args)["changed"] is False
    res = agefile.run(dict(args, tenant="acme", force=True, identity_file=keys["other_identity"]))
    assert len(res["rekeyed"]) == 1


def test_rekey_refuses_an_artifact_that_does_not_match_its_manifest(tmp_path, keys, secrets_dir):
    repo = _repo_with_artifacts(tmp_path, keys, secrets_dir)
    art = [os.path.join(str(repo / "acme"), n) for n in os.listdir(str(repo / "acme")) if n.endswith(".age")][0]
    # a different but valid age file put in place of the artifact
    subprocess.run(["age", "-r", keys["public"], "-o", art + ".new", art], check=True)
    os.replace(art + ".new", art)
    before = open(art, "rb").read()
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "rekeyed", "repository": str(repo), "tenant": "acme",
                     "recipients": [keys["other_public"]], "identity_file": keys["identity"]})
    assert "does not match its manifest" in str(e.value)
    assert open(art, "rb").read() == before and _leftovers(str(repo / "acme")) == []


def test_rekey_of_a_tampered_artifact_changes_nothing(tmp_path, keys, secrets_dir):
    big = secrets_dir / "big.bin"
    big.write_bytes(os.urandom(400000))
    repo = _repo_with_artifacts(tmp_path, keys, secrets_dir)
    art = [os.path.join(str(repo / "acme"), n) for n in os.listdir(str(repo / "acme")) if n.endswith(".age")][0]
    blob = bytearray(open(art, "rb").read())
    blob[len(blob) // 2] ^= 1
    with open(art, "wb") as f:
        f.write(bytes(blob))
    with pytest.raises(LifeboatError) as e:
        agefile.run({"state": "rekeyed", "repository": str(repo), "tenant": "acme",
                     "recipients": [keys["other_public"]], "identity_file": keys["identity"]})
    assert "truncated or was modified" in str(e.value) and "it was not rekeyed" in str(e.value).lower()
    assert open(art, "rb").read() == bytes(blob) and _leftovers(str(repo / "acme")) == []


def test_option_errors_name_the_option(tmp_path, keys):
    src = tmp_path / "f"
    src.write_text("x")
    cases = [
        ({"src": str(src), "dest": str(tmp_path / "o")}, "recipients"),
        ({"src": str(src), "recipients": [keys["public"]]}, "dest"),
        ({"src": str(src), "dest": str(tmp_path / "o"), "recipients": [keys["public"]],
          "identity_file": keys["identity"]}, "identity_file"),
        ({"src": str(src), "repository": str(tmp_path / "r"), "recipients": [keys["public"]]}, "tenant"),
        ({"src": str(src), "repository": str(tmp_path / "r"), "tenant": "Bad Name", "recipients": [keys["public"]]},
         "tenant"),
        ({"src": str(src), "repository": str(tmp_path / "r"), "tenant": "a", "passphrase": "x"}, "passphrase"),
        ({"state": "rekeyed", "recipients": [keys["public"]], "identity_file": keys["identity"]}, "src"),
        ({"state": "decrypted", "src": str(src), "dest": str(tmp_path / "o"), "identity_file": keys["identity"]},
         "src"),
        ({"state": "keypair"}, "identity_file"),
    ]
    for params, option in cases:
        with pytest.raises(LifeboatError) as e:
            agefile.run(params)
        assert e.value.option == option, (params, str(e.value))
