"""age_encrypt through the real ansible-playbook: the check/create/again cycle,
diff, no_log of identities and passphrases, errors as fail_json, rekey."""

import json
import os
import subprocess

import lbtest


def _task(name, args, register=None, **extra):
    task = {"name": name, "lifeboat.backup.age_encrypt": args, "ignore_errors": True}
    if register:
        task["register"] = register
    task.update(extra)
    return task


def test_keypair_encrypt_decrypt_cycle(tmp_path):
    key = str(tmp_path / "keys" / "identity.txt")
    src = tmp_path / "etc-app"
    (src / "ssl").mkdir(parents=True)
    (src / ".env").write_text("DB_PASSWORD=s3cr3t\n")
    (src / "ssl" / "key.pem").write_text("PEM\n")
    dest = str(tmp_path / "out" / "app.tar.zst.age")
    restored = str(tmp_path / "restored")
    enc = {"src": str(src), "dest": dest, "recipients": ["{{ kp.public_key }}"]}
    dec = {"state": "decrypted", "src": dest, "dest": restored, "identity_file": key}
    tasks = [
        _task("keypair check", {"state": "keypair", "identity_file": key}, check_mode=True),
        _task("keypair", {"state": "keypair", "identity_file": key}, register="kp"),
        _task("keypair again", {"state": "keypair", "identity_file": key}),
        _task("encrypt check", enc, check_mode=True),
        _task("encrypt", enc),
        _task("encrypt again", enc),
        _task("decrypt check", dec, check_mode=True),
        _task("decrypt", dec),
        _task("decrypt again", dec),
    ]
    run = lbtest.run_playbook(tasks, diff=True)
    assert run.rc == 0, run
    r = dict((res["_task"], res) for res in run.results)
    assert r["keypair check"]["changed"] and r["keypair"]["changed"] and not r["keypair again"]["changed"]
    public = r["keypair"]["public_key"]
    assert public.startswith("age1") and r["keypair again"]["public_key"] == public
    assert subprocess.run(["age-keygen", "-y", key], capture_output=True, text=True, check=True).stdout.strip() == public
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert r["encrypt check"]["changed"] and r["encrypt"]["changed"] and not r["encrypt again"]["changed"]
    assert r["encrypt"]["recipients"] == [public] and r["encrypt"]["diff"]["after"]["recipients"] == [public]
    assert r["decrypt check"]["changed"] and r["decrypt"]["changed"] and not r["decrypt again"]["changed"]
    assert {"path": "ssl/key.pem", "action": "create"} in r["decrypt"]["changes"]
    with open(os.path.join(restored, ".env")) as f:
        assert f.read() == "DB_PASSWORD=s3cr3t\n"
    with open(key) as f:
        secret = [line for line in f.read().splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    assert secret not in run.stdout and secret not in run.stderr and "s3cr3t" not in run.stdout


def test_secrets_are_not_logged_and_errors_name_the_option(tmp_path, keys):
    with open(keys["identity"]) as f:
        identity = f.read()
    secret = [line for line in identity.splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    plain = tmp_path / "codes.txt"
    plain.write_text("codes\n")
    enc = str(tmp_path / "codes.txt.age")
    tasks = [
        _task("encrypt", {"src": str(plain), "dest": enc, "recipients": [keys["public"]]}),
        _task("decrypt with identity option", {"state": "decrypted", "src": enc, "dest": str(tmp_path / "a"),
                                               "identity": identity}),
        _task("wrong key", {"state": "decrypted", "src": enc, "dest": str(tmp_path / "b"),
                            "identity_file": keys["other_identity"]}),
        _task("bad recipient", {"src": str(plain), "dest": str(tmp_path / "c.age"),
                                "recipients": [keys["public"], "age1notakey"]}),
        _task("passphrase", {"src": str(plain), "dest": str(tmp_path / "p.age"), "passphrase": "Tr0ub4dor&3"}),
    ]
    run = lbtest.run_playbook(tasks)
    r = dict((res["_task"], res) for res in run.results)
    assert r["encrypt"]["changed"] and r["decrypt with identity option"]["changed"]
    assert r["wrong key"]["failed"] and r["wrong key"]["option"] == "identity_file"
    assert "None of the identities" in r["wrong key"]["msg"]
    assert r["bad recipient"]["failed"] and r["bad recipient"]["option"] == "recipients"
    assert "age1notakey" in r["bad recipient"]["msg"]
    assert r["passphrase"]["changed"]
    for text in (run.stdout, run.stderr, json.dumps(run.data)):
        assert secret not in text and "Tr0ub4dor" not in text
    assert not (tmp_path / "b").exists() and not (tmp_path / "c.age").exists()


def test_repository_bundle_then_rekey(tmp_path, keys):
    src = tmp_path / "cfg"
    src.mkdir()
    (src / "app.conf").write_text("x=1\n")
    repo = str(tmp_path / "repo")
    store = {"src": str(src), "repository": repo, "tenant": "acme", "recipients": [keys["public"]]}
    rekey = {"state": "rekeyed", "repository": repo, "recipients": [keys["other_public"]],
             "identity_file": keys["identity"]}
    tasks = [
        _task("store", store, register="stored"),
        _task("store again", store),
        _task("rekey check", rekey, check_mode=True),
        _task("rekey", rekey),
        _task("rekey again", rekey),
        _task("restore with the new key", {"state": "decrypted", "src": "{{ stored.artifact }}",
                                           "dest": str(tmp_path / "back"), "identity_file": keys["other_identity"]}),
    ]
    run = lbtest.run_playbook(tasks)
    assert run.rc == 0, run
    r = dict((res["_task"], res) for res in run.results)
    assert r["store"]["changed"] and not r["store again"]["changed"]
    assert r["store"]["artifact"].startswith(os.path.join(repo, "acme", "acme-"))
    assert r["rekey check"]["changed"] and r["rekey"]["changed"] and not r["rekey again"]["changed"]
    with open(r["store"]["manifest"]) as f:
        doc = json.load(f)
    assert doc["encryption"]["recipients"] == [keys["other_public"]]
    assert r["restore with the new key"]["changed"]
    assert (tmp_path / "back" / "app.conf").read_text() == "x=1\n"
