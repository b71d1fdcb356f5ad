"""backup_restore's tenants list (restore_batch.py): the list is checked whole before anything runs, and
the restores are ordered so that the tenants of one database never race on its shared part (the first
one restores it; the others start once one of them succeeded). The ordering is proven with real worker
processes (batch.py) around a stand-in for the single restore that records when each one ran: the real
restores are in tests/integration/test_restore_list.py."""

import json
import os
import signal
import time

import pytest

from lifeboat_engine import restore, restore_batch
from lifeboat_engine.errors import LifeboatError


@pytest.mark.parametrize("extra, option, words", [
    ({"tenant": "acme"}, "tenant", "mutually exclusive"),
    ({"database": "saas"}, "database", "one tenant's source or target"),
    ({"target_path": "/x.db"}, "target_path", "mutually exclusive"),
    ({"globals_artifact": "latest"}, "globals_artifact", "call of their own"),
    ({"artifact": "acme-20260101T000000Z.pgdump.zst.age"}, "artifact", "latest or latest_verified"),
    ({"tenants": []}, "tenants", "empty"),
    ({"parallel": 0}, "parallel", "1 to 64"),
    ({"tenants": [{"tenant": "acme", "scheme": "x"}]}, "tenants[0].scheme", "unknown key"),
    ({"tenants": [{"tenant": "acme"}, {"tenant": "acme"}]}, "tenants[1].tenant", "again"),
    ({"tenants": [{"tenant": "acme"}, {"tenant": "globex", "jobs": 0}]}, "tenants[1].jobs", "globex"),
    ({"tenants": [{"tenant": "acme", "engine": "sqlite"}]}, "tenants[0].target_path", "needs target_path"),
    ({"tenants": [{"tenant": "acme", "engine": "sqlite", "path": "/a.db"},
                  {"tenant": "globex", "engine": "sqlite", "target_path": "/a.db"}]}, "tenants[1].tenant", "one target"),
    ({"tenants": [{"tenant": "acme", "database": "saas", "schema": "s"},
                  {"tenant": "globex", "target_database": "saas", "schema": "s"}]}, "tenants[1].tenant", "one target"),
    ({"tenants": [{"tenant": "acme"}], "jobs": 99}, "jobs", "fix jobs"),
])
def test_a_bad_list_is_refused_before_anything_runs(tmp_path, extra, option, words):
    params = dict({"repository": str(tmp_path / "missing"), "tenants": [{"tenant": "acme"}]}, **extra)
    with pytest.raises(LifeboatError) as e:
        restore.run(params)
    assert e.value.option == option and words in str(e.value), str(e.value)
    assert "Nothing was done" in str(e.value)
    assert not os.path.exists(str(tmp_path / "missing"))


def test_entries_inherit_the_shared_options_and_sqlite_ones_not_postgresql_only_ones():
    work = restore_batch.jobs({"repository": "/r", "force": True, "privileges": True, "owners": True, "parallel": 3,
                               "identity": "AGE-SECRET-KEY-1X", "engine": "postgresql", "tenants": [
                                   {"tenant": "acme", "database": "acme", "force": False},
                                   {"tenant": "lite", "engine": "sqlite", "path": "/srv/lite.db"},
                                   {"tenant": "own", "database": "own", "identity_file": "/k/own.txt"}]},
                              restore.RestoreRequest)
    single = dict(work)
    assert [pair[0] for pair in work] == ["acme", "lite", "own"]
    assert single["acme"]["force"] is False and single["acme"]["privileges"] is True
    assert single["acme"]["repository"] == "/r" and "tenants" not in single["acme"] and "parallel" not in single["acme"]
    assert "privileges" not in single["lite"] and "owners" not in single["lite"] and single["lite"]["force"] is True
    assert single["own"]["identity_file"] == "/k/own.txt" and "identity" not in single["own"]


def test_waves_put_the_first_tenant_of_each_shared_database_first_and_a_failed_one_hands_over():
    # 0, 3: database tenants; 1, 2, 4: schema tenants of saas; 5, 6: of shop; 7: SQLite
    waves = restore_batch.Waves(["acme", "saas", "saas", "bank", "saas", "shop", "shop", None])
    assert waves.next() == [0, 1, 3, 5, 7]
    for i in (0, 3, 7):
        waves.done(i, True)
    waves.done(1, False)  # saas's first one failed: the next one goes alone
    waves.done(5, True)
    assert waves.next() == [2, 6]
    waves.done(2, True)
    waves.done(6, True)
    assert waves.next() == [4]
    assert waves.next() == []


def recorder(folder):
    """A stand-in for restore.run that records when it ran, and fails for tenants named fail*."""
    def single(params, check_mode=False):
        began = time.time()
        time.sleep(0.3)
        with open(os.path.join(folder, params["tenant"]), "w") as f:
            json.dump([began, time.time()], f)
        if params["tenant"].startswith("fail"):
            raise LifeboatError("%s cannot be restored here" % params["tenant"], option="artifact")
        return {"tenant": params["tenant"], "changed": not check_mode, "seconds": 0.3}
    return single


def test_the_tenants_of_one_database_start_after_its_first_one_succeeded(tmp_path):
    tenants = [{"tenant": "failfirst", "database": "saas", "schema": "failfirst"},
               {"tenant": "acme", "database": "saas", "schema": "acme"},
               {"tenant": "globex", "database": "saas", "schema": "globex"},
               {"tenant": "initech", "database": "saas", "schema": "initech"},
               {"tenant": "solo", "database": "solo"},
               {"tenant": "other", "database": "other"}]
    result = restore_batch.run(recorder(str(tmp_path)), restore.RestoreRequest, None,
                               {"repository": "/r", "tenants": tenants, "parallel": 4})
    ran = dict((t["tenant"], json.load(open(str(tmp_path / t["tenant"])))) for t in tenants)
    assert [r["tenant"] for r in result["rows"]] == [t["tenant"] for t in tenants]
    assert [r["failed"] for r in result["rows"]] == [True, False, False, False, False, False]
    assert result["rows"][0]["msg"] == "failfirst cannot be restored here" and result["rows"][0]["option"] == "artifact"
    # the first of saas failed, so acme went alone next; globex and initech only after acme succeeded, together
    assert ran["failfirst"][1] <= ran["acme"][0] and ran["acme"][1] <= min(ran["globex"][0], ran["initech"][0])
    assert abs(ran["globex"][0] - ran["initech"][0]) < 0.25
    # the tenants of other databases ran beside the first one
    assert ran["solo"][0] < ran["failfirst"][1] and ran["other"][0] < ran["failfirst"][1]
    assert result["waves"] == 3 and result["restored"] == 5 and result["failed_tenants"] == ["failfirst"]
    assert result["msg"].startswith("1 of 6 tenant(s) FAILED: failfirst: failfirst cannot be restored here.")
    # check mode changes nothing: every tenant is checked at once
    checked = restore_batch.run(recorder(str(tmp_path)), restore.RestoreRequest, None,
                                {"repository": "/r", "tenants": tenants, "parallel": 6}, check_mode=True)
    assert checked["waves"] == 1 and checked["msg"].startswith("Check mode, nothing changed: 1 of 6 tenant(s) would FAIL")


def test_the_database_of_an_entry_that_does_not_say_it_comes_from_its_artifact():
    class Art(object):
        def __init__(self, source):
            self.source = source

    arts = {"acme": Art({"database": "saas", "schema": "acme"}), "solo": Art({"database": "solo_src"})}

    def find(single):
        if single["tenant"] not in arts:
            raise LifeboatError("No pgdump artifact of tenant %s" % single["tenant"], option="artifact")
        return arts[single["tenant"]]
    assert restore_batch.database_of({"tenant": "acme", "engine": "postgresql"}, find) == "saas"
    assert restore_batch.database_of({"tenant": "solo", "engine": "postgresql"}, find) == "solo"
    assert restore_batch.database_of({"tenant": "gone", "engine": "postgresql"}, find) is None
    assert restore_batch.database_of({"tenant": "x", "engine": "postgresql", "target_database": "t"}, find) == "t"
    assert restore_batch.database_of({"tenant": "x", "engine": "sqlite", "path": "/x.db"}, find) is None


def test_a_stopped_run_starts_no_more_waves(tmp_path):
    """SIGTERM (systemctl stop, an operator's kill) while the first wave runs: its restores are told to stop
    (each rolls back or finishes, as the single restore does), and the tenants that waited are not started."""
    def single(params, check_mode=False):
        if params["tenant"] == "first":
            os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(1)
        return {"tenant": params["tenant"], "changed": True}
    tenants = [{"tenant": "first", "database": "saas", "schema": "first"},
               {"tenant": "second", "database": "saas", "schema": "second"}]
    result = restore_batch.run(single, restore.RestoreRequest, None, {"repository": "/r", "tenants": tenants})
    assert result["waves"] == 1 and result["failed_tenants"] == ["first", "second"], result
    assert result["rows"][0]["msg"] == "interrupted (the run was stopped)"
    assert result["rows"][1]["msg"] == restore_batch.STOPPED == "not started: the run was stopped"
    assert signal.getsignal(signal.SIGTERM) is not None  # the Runner gave the handler back
