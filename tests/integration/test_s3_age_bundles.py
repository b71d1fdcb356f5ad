"""age_encrypt stores configuration bundles in an S3 repository; backup_verify proves them."""

import json

import lbtest


def test_bundle_to_s3_then_verified_and_rekey_refused_clearly(s3, keys, tmp_path):
    src = tmp_path / "etc-myapp"
    (src / "tls").mkdir(parents=True)
    (src / ".env").write_text("DATABASE_URL=postgres://app@db/app\n")
    (src / "tls" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot really\n")
    url = s3.url("fleet")
    res = lbtest.run_module("age_encrypt", dict(s3.options(), src=str(src), repository=url, tenant="acme",
                                                recipients=[keys["public"]]))
    assert res.get("changed") is True and not res.get("failed"), res
    names = s3.keys("fleet/acme/")
    assert [k for k in names if k.endswith(".tar.zst.age")] and [k for k in names if k.endswith(".manifest.json")]
    manifest = json.loads(s3.get([k for k in names if k.endswith(".manifest.json")][0]))
    assert manifest["format"] == "tar" and manifest["encryption"]["recipients"] == [keys["public"]]
    verified = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, tenant="acme",
                                                       identity_file=keys["identity"]))
    assert verified["status"] == "PASS", verified
    assert "tar bundle" in {c["name"]: c for c in verified["checks"]}["restore"]["detail"]
    rekey = lbtest.run_module("age_encrypt", dict(s3.options(), state="rekeyed", repository=url, tenant="acme",
                                                  identity_file=keys["identity"], recipients=[keys["other_public"]]))
    assert rekey.get("changed") is True and not rekey.get("failed"), rekey
    # The bundle now opens with the new identity only.
    again = lbtest.run_module("backup_verify", dict(s3.options(), repository=url, tenant="acme",
                                                    identity_file=keys["other_identity"]))
    assert again["status"] == "PASS", again
