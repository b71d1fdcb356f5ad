"""Per-tenant keys (issue 19, first half), on a local and an S3 (moto) repository.

Three schema tenants of one database, backed up in one pass: acme with its own key (made by the real
age-keygen), globex with its own key (made by age_encrypt state keypair), initech on the repository-wide
key (the ``keys`` fixture), like the database's shared part. Each artifact is encrypted to its own
recipients only (the manifests and backup_info say so, and the real age CLI agrees); verification and
restore find each tenant's identity in a key folder (identity_dir); a tenant whose identity file is
missing fails alone, naming itself and the file; rotate_tenant_key.yml rekeys one tenant's artifacts
and no other's. About 60 s on a quiet machine: one backup pass per repository, engine calls, and rotate_tenant_key.yml through ansible-playbook.
"""

import os
import secrets
import shutil
import subprocess

import pytest

import lbtest
import s3server
import saas

E = lbtest.load_engine()
from lifeboat_engine import agefile, backup_pass, errors, info, repository, restore, verify  # noqa: E402  pylint: disable=wrong-import-position

TENANTS = ("acme", "globex", "initech")


def _age_decrypts(identity, path):
    """Whether the real age CLI opens ``path`` with ``identity``."""
    res = subprocess.run(["age", "-d", "-i", identity, "-o", os.devnull, path], capture_output=True, check=False)
    return res.returncode == 0


@pytest.fixture(scope="module", params=["local", "s3"])
def world(request, pg, keys, moto, tmp_path_factory):
    kind = request.param
    base = tmp_path_factory.mktemp("tenant-keys-" + kind)
    db = "tk_" + kind
    pg.psql('DROP DATABASE IF EXISTS "%s"' % db)
    saas.build(pg, db=db, tenants=TENANTS, rows=30)
    keydir = str(base / "keys")
    os.makedirs(keydir, 0o700)
    # acme's key comes from the real age-keygen; globex's from age_encrypt below (existing keys are kept)
    acme_key, acme_public = lbtest.age_keygen(keydir)
    os.rename(acme_key, os.path.join(keydir, "acme.key"))
    made = agefile.run({"state": "keypair", "identity_dir": keydir, "tenants": ["acme", "globex"]})
    again = agefile.run({"state": "keypair", "identity_dir": keydir, "tenants": ["acme", "globex"]})
    publics = {"acme": acme_public, "globex": made["public_keys"]["globex"], "initech": keys["public"]}
    if kind == "s3":
        bucket = "lbtest-keys-%s" % secrets.token_hex(4)
        moto.client().create_bucket(Bucket=bucket)
        repository = "s3://%s/prod" % bucket
        s3 = {"s3_endpoint_url": moto.endpoint, "s3_region": s3server.REGION, "s3_access_key": s3server.ACCESS_KEY,
              "s3_secret_key": s3server.SECRET_KEY}
    else:
        repository, s3 = str(base / "repository"), {}
    backed = backup_pass.run(dict(pg.login, repository=repository, database=db, recipients=[keys["public"]], schemas=[
        {"tenant": "acme", "schema": "acme", "recipients_file": os.path.join(keydir, "acme.pub")},
        {"tenant": "globex", "schema": "globex", "recipients": [publics["globex"]]},
        {"tenant": "initech", "schema": "initech"}], **s3))
    yield {"kind": kind, "base": base, "db": db, "keydir": keydir, "repository": repository, "s3": s3, "keys": keys,
           "publics": publics, "made": made, "again": again, "backed": backed, "shared": "_shared_" + db}
    pg.psql('DROP DATABASE IF EXISTS "%s"' % db)


def _info(w):
    return info.run(dict(repository=w["repository"], include_globals=True, list_recipients=True, **w["s3"]))


def test_each_tenant_is_encrypted_to_its_own_recipients_and_backup_info_shows_them(world):
    w = world
    assert not w["backed"]["failed_tenants"], w["backed"]
    made = w["made"]
    assert made["changed"] and made["keys"]["acme"]["public_key"] == w["publics"]["acme"]  # age-keygen's key, kept
    assert not w["again"]["changed"]
    assert oct(os.stat(w["keydir"]).st_mode & 0o777) == "0o700"
    for tenant in ("acme", "globex"):
        assert oct(os.stat(os.path.join(w["keydir"], tenant + ".key")).st_mode & 0o777) == "0o600"
        with open(os.path.join(w["keydir"], tenant + ".pub")) as f:
            assert f.read().strip() == w["publics"][tenant]
    found = _info(w)
    shared = [w["keys"]["public"]]
    for tenant in TENANTS:
        row = found["tenants"][tenant]
        assert row["recipients"] == [w["publics"][tenant]], (tenant, row["recipients"])
        assert row["shared_recipients"] == shared
        assert row["latest"]["manifest_summary"]["recipients"] == [w["publics"][tenant]]
    assert found["tenants"][w["shared"]]["recipients"] == shared
    # what the repository-wide key opens: initech and the shared part, never acme's or globex's artifacts
    opened = found["artifacts_by_recipient"][w["keys"]["public"]]
    assert sorted(set(a.split("/")[0] for a in opened)) == sorted(["initech", w["shared"]])
    assert [a.split("/")[0] for a in found["artifacts_by_recipient"][w["publics"]["acme"]]] == ["acme"]
    if w["kind"] == "local":  # the real age CLI agrees: each key opens its own tenant's artifact only
        art = dict((t, os.path.join(w["repository"], t, found["tenants"][t]["latest"]["artifact"])) for t in TENANTS)
        assert _age_decrypts(os.path.join(w["keydir"], "acme.key"), art["acme"])
        assert _age_decrypts(os.path.join(w["keydir"], "globex.key"), art["globex"])
        assert not _age_decrypts(w["keys"]["identity"], art["acme"])
        assert not _age_decrypts(os.path.join(w["keydir"], "acme.key"), art["globex"])


def test_verify_and_restore_find_each_tenants_identity_and_a_missing_one_fails_alone(world, pg):
    w = world
    common = dict(pg.login, repository=w["repository"], identity_dir=w["keydir"], **w["s3"])
    done = verify.run(dict(common, identity_file=w["keys"]["identity"]))
    status = dict((r["tenant"], r["status"]) for r in done["tenants"])
    assert status == {"acme": "PASS", "globex": "PASS", "initech": "PASS", w["shared"]: "PASS"}, done["msg"]
    parked = os.path.join(str(w["base"]), "globex.key.parked")
    expected = os.path.join(w["keydir"], "globex.key")
    os.rename(expected, parked)
    try:
        # as the fleet playbooks call it: a list of tenants, each in its own worker
        done = verify.run(dict(common, identity_file=w["keys"]["identity"], record=False, parallel=2,
                               tenants=[{"tenant": "globex"}, {"tenant": "initech"}]))
        rows = dict((r["tenant"], r) for r in done["tenants"])
        assert rows["globex"]["status"] == "FAIL" and rows["initech"]["status"] == "PASS", done["msg"]
        detail = [c["detail"] for c in rows["globex"]["checks"] if c["name"] == "decrypt"][0]
        assert "globex" in detail and expected in detail, detail
        # with no repository-wide identity either, the message says that nothing at all was found for it
        alone = verify.run(dict(common, tenant="globex", record=False))
        detail = [c["detail"] for c in alone["tenants"][0]["checks"] if c["name"] == "decrypt"][0]
        assert detail.startswith("No identity for tenant globex: its identity file %s does not exist" % expected)
        with pytest.raises(errors.LifeboatError) as failed:
            restore.run(dict(common, tenant="globex", database=w["db"], schema="globex", force=True), check_mode=True)
        assert "globex" in str(failed.value) and expected in str(failed.value)
    finally:
        os.rename(parked, expected)
    # acme restores with its own key (and the shared part's repository-wide one) over a damaged schema
    with pg.connect(w["db"]) as conn:
        before = lbtest.table_checksums(conn, "acme")
    pg.psql("DELETE FROM acme.orders", db=w["db"])
    out = restore.run(dict(common, identity_file=w["keys"]["identity"], tenant="acme", database=w["db"],
                           schema="acme", force=True, keep_safety_copy=False))
    assert out["changed"], out
    with pg.connect(w["db"]) as conn:
        assert lbtest.table_checksums(conn, "acme") == before


def _artifact_bytes(w, tenant):
    repo = repository.open_repository(w["repository"], create=False, **repository.s3_options(w["s3"]))
    out = {}
    for a in repo.artifacts(tenant):
        reader = repo.open_read(tenant, a["name"])
        try:
            out[a["name"]] = reader.read()
        finally:
            reader.close()
    return out


def test_rotate_tenant_key_rekeys_that_tenants_artifacts_only(world, pg, tmp_path):
    w = world
    before = dict((t, _artifact_bytes(w, t)) for t in ("acme", "globex", "initech", w["shared"]))
    old_key = os.path.join(str(tmp_path), "acme-old.key")
    shutil.copy(os.path.join(w["keydir"], "acme.key"), old_key)
    group_vars = {"lifeboat_repository": w["repository"], "lifeboat_identity_file": w["keys"]["identity"],
                  "lifeboat_identity_dir": w["keydir"], "lifeboat_connection": pg.login}
    if w["s3"]:
        group_vars["lifeboat_s3"] = w["s3"]
    inv = lbtest.write_fleet_inventory(tmp_path, "inv", [], group_vars)
    argv = [str(lbtest.BIN / "ansible-playbook"), "-i", str(inv), str(lbtest.ROOT / "playbooks" / "rotate_tenant_key.yml"),
            "-e", "tenant=acme"]
    if w["kind"] == "local":  # check mode changes nothing (once: each ansible-playbook run costs seconds)
        checked = subprocess.run(argv + ["--check"], capture_output=True, text=True, env=lbtest.ansible_env(),
                                 check=False, cwd=str(lbtest.ROOT))
        assert checked.returncode == 0 and "Check mode, nothing changed" in checked.stdout, checked.stdout[-3000:]
        assert _artifact_bytes(w, "acme") == before["acme"]
        assert not os.path.exists(os.path.join(w["keydir"], ".next", "acme.key"))
    run = subprocess.run(argv, capture_output=True, text=True, env=lbtest.ansible_env(), check=False, cwd=str(lbtest.ROOT))
    assert run.returncode == 0, run.stdout[-4000:]
    assert "key is rotated" in run.stdout and "retired" in run.stdout
    after = dict((t, _artifact_bytes(w, t)) for t in before)
    assert after["acme"].keys() == before["acme"].keys()
    assert all(after["acme"][n] != before["acme"][n] for n in before["acme"])  # every artifact of acme rekeyed
    for tenant in ("globex", "initech", w["shared"]):
        assert after[tenant] == before[tenant], tenant  # no other tenant's bytes changed
    retired = os.listdir(os.path.join(w["keydir"], "retired"))
    assert len(retired) == 1 and retired[0].startswith("acme-")
    # what tenant_erase destroys besides <tenant>.key: the retired key (and a rotation's next key, gone now)
    assert E.crypto.rotation_identity_files(w["keydir"], "acme") == [os.path.join(w["keydir"], "retired", retired[0])]
    assert E.crypto.rotation_identity_files(w["keydir"], "globex") == []
    with open(os.path.join(w["keydir"], "acme.pub")) as f:
        new_public = f.read().strip()
    assert new_public != w["publics"]["acme"]
    assert _info(w)["tenants"]["acme"]["recipients"] == [new_public]
    common = dict(pg.login, repository=w["repository"], tenant="acme", record=False, **w["s3"])
    assert verify.run(dict(common, identity_dir=w["keydir"], identity_file=w["keys"]["identity"]))["status"] == "PASS"
    old = verify.run(dict(common, identity_file=old_key))
    assert old["status"] == "FAIL" and "decrypt" in old["tenants"][0]["failed_checks"], old["msg"]
