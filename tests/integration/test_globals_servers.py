"""Two servers that answer to the same host name and port (pods of one StatefulSet on one S3
prefix, a host rebuilt under its old name) write the same ``_globals_<host>`` pseudo-tenant.

Two real PostgreSQL clusters; the second one's globals are published under the first one's
globals name, as such a pair writes them. Each artifact records its server's system
identifier (``pg_control_system()``), so that:

- ``backup_restore`` with ``globals_artifact: latest`` restores the roles of the tenant's own
  server, not the newest of the pair, and refuses when there are none of its server;
- a globals artifact named explicitly is restored, with a warning;
- ``backup_prune`` applies its rules per server: ``keep_last: 1`` keeps the newest of each.
"""

import json
import os
import shutil
import time

import pytest

import lbtest
from lifeboat_engine import backup, naming, prune, restore
from lifeboat_engine.errors import LifeboatError


@pytest.fixture(scope="module")
def twin():
    cluster = lbtest.PgCluster(tag="twin").start()
    yield cluster
    cluster.drop()


def republish(repo, src, dst):
    """Every artifact of pseudo-tenant ``src`` moved to ``dst`` (names and manifests), as a same-named server writes it."""
    os.makedirs(os.path.join(repo, dst), mode=0o700, exist_ok=True)
    for name in sorted(os.listdir(os.path.join(repo, src))):
        if not name.startswith(src + "-"):
            continue
        new = dst + name[len(src):]
        with open(os.path.join(repo, src, name), "rb") as f:
            data = f.read()
        if name.endswith(".manifest.json"):
            doc = json.loads(data)
            doc["tenant"], doc["artifact"] = dst, dst + doc["artifact"][len(src):]
            data = json.dumps(doc).encode()
        with open(os.path.join(repo, dst, new), "wb") as f:
            f.write(data)
    shutil.rmtree(os.path.join(repo, src))  # under one name only, as the pair writes them


def globals_names(repo, tenant):
    return sorted(n for n in os.listdir(os.path.join(repo, tenant)) if n.endswith(".globals.zst.age"))


@pytest.fixture()
def pair(pg, twin, keys, tmp_path):
    """A tenant of ``pg`` with the globals of ``pg`` and then (newer) of ``twin`` under one name."""
    repo = str(tmp_path / "repo")
    pg.psql("DROP DATABASE IF EXISTS gtenant WITH (FORCE)")
    pg.psql("CREATE DATABASE gtenant")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)", db="gtenant")
    pg.psql("DROP ROLE IF EXISTS own_app; CREATE ROLE own_app")
    twin.psql("DROP ROLE IF EXISTS twin_app; CREATE ROLE twin_app")
    res = backup.run(dict(pg.login, tenant="gtenant", globals=True, repository=repo, recipients=[keys["public"]]))
    own = [a for a in res["artifacts"] if a["format"] == "globals"][0]
    name = own["artifact"].split("/")[-2]
    time.sleep(1.1)  # stamps are per second: the pair's artifacts must not share one
    twin_res = backup.run(dict(twin.login, globals=True, repository=repo, recipients=[keys["public"]]))
    twin_tenant = twin_res["artifacts"][0]["artifact"].split("/")[-2]
    republish(repo, twin_tenant, name)
    return {"repo": repo, "globals": name, "own": os.path.basename(own["artifact"]),
            "twin": os.path.basename(twin_res["artifacts"][0]["artifact"]).replace(twin_tenant, name)}


def restore_params(pg, keys, pair, **extra):
    params = dict(pg.login, tenant="gtenant", repository=pair["repo"], identity_file=keys["identity"],
                  target_database="gtenant_copy", globals_artifact="latest")
    params.update(extra)
    return params


def test_each_artifact_names_the_server_it_was_taken_on(pg, twin, pair):
    folder = os.path.join(pair["repo"], pair["globals"])
    ids = set()
    for name in os.listdir(folder):
        if name.endswith(".manifest.json"):
            with open(os.path.join(folder, name)) as f:
                ids.add(json.load(f)["source"]["system_identifier"])
    with pg.connect("postgres") as conn:
        mine = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
    assert mine in ids and len(ids) == 2


def test_latest_globals_are_those_of_the_tenants_own_server(pg, keys, pair):
    assert globals_names(pair["repo"], pair["globals"])[-1] == pair["twin"]  # the twin's are the newest
    res = restore.run(restore_params(pg, keys, pair), check_mode=True)
    assert os.path.basename(res["globals"]["artifact"]) == pair["own"], res["globals"]
    assert "own_app" in res["globals"]["roles_existing"] + res["globals"]["roles_created"]
    assert any("another server" in w and pair["own"] in w for w in res["warnings"]), res["warnings"]


def test_no_globals_of_the_tenants_server_is_refused(pg, keys, pair):
    folder = os.path.join(pair["repo"], pair["globals"])
    stamp = naming.parse_artifact_name(pair["own"])["stamp"]
    for name in os.listdir(folder):
        if stamp in name:
            os.unlink(os.path.join(folder, name))
    with pytest.raises(LifeboatError) as e:
        restore.run(restore_params(pg, keys, pair), check_mode=True)
    assert e.value.option == "globals_artifact" and "Nothing was changed" in str(e.value)
    assert "same host name" in str(e.value)
    # named explicitly, it is restored (an operator's choice), with a warning
    res = restore.run(restore_params(pg, keys, pair, globals_artifact=pair["twin"]), check_mode=True)
    assert os.path.basename(res["globals"]["artifact"]) == pair["twin"]
    assert any("another server" in w and "you named it" in w for w in res["warnings"]), res["warnings"]


def test_prune_keeps_the_newest_globals_of_each_server(pg, keys, pair):
    time.sleep(1.1)
    backup.run(dict(pg.login, tenant="gtenant", globals=True, repository=pair["repo"], recipients=[keys["public"]]))
    before = globals_names(pair["repo"], pair["globals"])
    assert len(before) == 3  # own, twin, own again
    out = prune.run(dict(repository=pair["repo"], tenant=pair["globals"], keep_last=1))
    after = globals_names(pair["repo"], pair["globals"])
    assert pair["twin"] in after, out["report"]  # the only globals of the other server
    assert pair["own"] not in after and len(after) == 2, out["report"]
