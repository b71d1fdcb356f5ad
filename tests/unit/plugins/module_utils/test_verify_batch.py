"""backup_verify's tenants list (verify_batch.py): the list is checked whole before anything runs, and
real verifications of SQLite tenants (no server needed) each give their own row."""

import glob
import os

import pytest

import lbtest
from lifeboat_engine import backup, crypto, verify
from lifeboat_engine.errors import LifeboatError


@pytest.mark.parametrize("extra, option, words", [
    ({"tenant": "acme"}, "tenant", "mutually exclusive"),
    ({"legacy_glob": "/x/*.sql"}, "legacy_glob", "mutually exclusive"),
    ({"tenants": []}, "tenants", "empty"),
    ({"parallel": 0}, "parallel", "1 to 64"),
    ({"tenants": [{"tenant": "acme", "schema": "x"}]}, "tenants[0].schema", "unknown key"),
    ({"tenants": [{"tenant": "acme"}, {"tenant": "b", "identity": "AGE-SECRET-KEY-1X"}]}, "tenants[1].identity", "logged"),
    ({"tenants": [{"tenant": "acme"}, {"tenant": "globex", "max_age": "soon"}]}, "tenants[1].max_age", "globex"),
    ({"tenants": [{"tenant": "acme", "queries": [{"name": "q"}]}]}, "tenants[0].queries", "acme"),
    ({"tenants": [{"tenant": "acme", "artifact": "globex-20260101T000000Z.sqlite.zst.age"}]},
     "tenants[0].artifact", "not an artifact of tenant acme"),
    ({"tenants": [{"tenant": "acme", "artifact": "/r/acme/acme-20260101T000000Z.sqlite.zst.age"}],
      "max_age": "later"}, "max_age", "fix max_age"),
])
def test_a_bad_list_is_refused_before_anything_runs(tmp_path, extra, option, words):
    params = dict({"repository": str(tmp_path / "missing"), "tenants": [{"tenant": "acme"}]}, **extra)
    with pytest.raises(LifeboatError) as e:
        verify.run(params)
    assert e.value.option == option and words in str(e.value), str(e.value)
    assert "Nothing was done" in str(e.value)
    assert not os.path.exists(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory):
    """Three SQLite tenants backed up once, the artifact of one corrupted (bytes flipped)."""
    base = tmp_path_factory.mktemp("vb")
    ident, pub = crypto.generate_identity()
    (base / "id.txt").write_text(str(ident) + "\n")
    for name in ("alpha", "beta", "gamma"):
        db = lbtest.sqlite_guests(base / ("%s.db" % name), 50)
        backup.run({"tenant": name, "engine": "sqlite", "path": db, "repository": str(base / "repo"),
                    "recipients": [str(pub)]})
    art = glob.glob(str(base / "repo" / "beta" / "beta-*.sqlite.zst.age"))[0]
    with open(art, "r+b") as f:
        f.seek(100)
        data = f.read(8)
        f.seek(100)
        f.write(bytes(b ^ 0xFF for b in data))
    return base


def test_each_tenant_is_verified_in_its_own_row(sqlite_repo):
    params = {"repository": str(sqlite_repo / "repo"), "identity_file": str(sqlite_repo / "id.txt"),
              "fail_on_error": False, "parallel": 2, "report": str(sqlite_repo / "report.json"),
              "tenants": [{"tenant": "alpha"}, {"tenant": "beta"}, {"tenant": "gamma", "record": False},
                          {"tenant": "nosuch", "artifact": "nosuch-20260101T000000Z.sqlite.zst.age"}]}
    result = verify.run(params)
    rows = result["rows"]
    assert [r["tenant"] for r in rows] == ["alpha", "beta", "gamma", "nosuch"]
    assert [r.get("status") for r in rows] == ["PASS", "FAIL", "PASS", None]
    # a FAIL verdict with fail_on_error false is a row with its verdict; an error is a failed row with its message
    assert [r["failed"] for r in rows] == [False, False, False, True]
    assert "checksum" in rows[1]["failed_checks"] and "not found" in rows[3]["msg"], rows
    assert all(r["started"] <= r["finished"] and r["seconds"] >= 0 for r in rows)
    # the record per tenant, as the single call writes it (gamma asked for none)
    assert [os.path.basename(os.path.dirname(p)) for p in result["records"]] == ["alpha", "beta"]
    assert len(glob.glob(str(sqlite_repo / "repo" / "*" / "*.verify.json"))) == 2
    assert [t["tenant"] for t in result["tenants"]] == ["alpha", "beta", "gamma"]
    assert result["status"] == "FAIL" and result["changed"] is True
    assert result["msg"].startswith("2 of 4 tenant(s) FAILED verification: beta: FAIL (checksum: "), result["msg"]
    assert "nosuch: artifact nosuch-20260101T000000Z.sqlite.zst.age not found" in result["msg"]
    assert "The others: 2 PASS; each row" in result["msg"], result["msg"]
    assert os.path.exists(result["report_path"])
    # fail_on_error (the default) makes a FAIL verdict a failed row; check mode writes no record
    result = verify.run(dict(params, fail_on_error=True, tenants=[{"tenant": "beta"}, {"tenant": "gamma"}]),
                        check_mode=True)
    assert [r["failed"] for r in result["rows"]] == [True, False] and result["rows"][1]["records"], result
    assert not glob.glob(str(sqlite_repo / "repo" / "gamma" / "*.verify.json"))
    result = verify.run(dict(params, tenants=[{"tenant": "alpha"}, {"tenant": "gamma"}], record=False))
    assert result["msg"] == "All 2 tenant(s) verified: 2 PASS." and result["status"] == "PASS", result["msg"]
