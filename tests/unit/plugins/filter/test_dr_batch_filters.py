"""dr_restore.yml's chunks (plugins/filter/dr_batch.py): a database's schema tenants in one chunk, each
chunk labelled for the progress line, and one result per tenant from the calls looped over the chunks."""

import sys

import lbtest

sys.path.insert(0, str(lbtest.COLLECTIONS))

from ansible_collections.lifeboat.backup.plugins.filter import dr_batch  # noqa: E402  pylint: disable=wrong-import-position


def test_chunks_keep_a_databases_schema_tenants_together_and_say_where_they_are():
    tenants = [{"name": "a"}, {"name": "s1", "database": "d", "schema": "s1"}, {"name": "b"},
               {"name": "s2", "database": "d", "schema": "s2"}, {"name": "c"}, {"name": "e", "database": "e"}]
    chunks = dr_batch.dr_chunks(tenants, 2)
    assert [(c["label"], [t["name"] for t in c["tenants"]]) for c in chunks] == [
        ("tenants 1-1 of 6", ["a"]), ("tenants 2-3 of 6", ["s1", "s2"]), ("tenants 4-5 of 6", ["b", "c"]),
        ("tenants 6-6 of 6", ["e"])]
    assert [len(c["tenants"]) for c in dr_batch.dr_chunks(tenants * 1, 50)] == [6]
    assert dr_batch.dr_chunks([], 50) == []


def test_entries_carry_the_chosen_artifact_and_the_tenants_keys():
    choice = {"a": {"artifact": "a-20260101T000000Z.pgdump.zst.age"}, "l": {"artifact": "l-x.sqlite.zst.age"}}
    assert dr_batch.dr_entries([{"name": "a", "database": "a", "engine": "postgresql", "rpo": "1h"},
                                {"name": "l", "engine": "sqlite", "path": "/srv/l.db", "schema": ""}], choice) == [
        {"tenant": "a", "artifact": "a-20260101T000000Z.pgdump.zst.age", "engine": "postgresql", "database": "a"},
        {"tenant": "l", "artifact": "l-x.sqlite.zst.age", "engine": "sqlite", "path": "/srv/l.db"}]


def test_results_are_one_per_tenant_and_a_chunk_that_failed_whole_fails_each_of_its_tenants():
    registered = {"results": [
        {"item": {"tenants": [{"name": "x"}, {"name": "y"}]}, "failed": True, "msg": "Cannot read identity_file"},
        {"item": {"tenants": [{"name": "z"}]}, "rows": [{"tenant": "z", "failed": False, "seconds": 1.5}]},
        {"skipped": True}]}
    assert dr_batch.dr_batch_results(registered)["results"] == [
        {"item": {"name": "x"}, "tenant": "x", "failed": True, "msg": "Cannot read identity_file"},
        {"item": {"name": "y"}, "tenant": "y", "failed": True, "msg": "Cannot read identity_file"},
        {"item": {"name": "z"}, "tenant": "z", "failed": False, "seconds": 1.5}]
    assert dr_batch.dr_batch_results({"skipped": True, "results": []}) == {"skipped": True, "results": []}
    assert dr_batch.dr_batch_results({}) == {"results": []}
