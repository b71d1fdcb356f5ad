"""Client tool lookup: each binary is asked for its version once per process (and its forks)."""

import os

from lifeboat_engine import postgres


def fake_tool(folder, name, version):
    path = folder / name
    calls = folder / (name + ".calls")
    path.write_text("#!/bin/sh\necho x >> %s\necho '%s (PostgreSQL) %s'\n" % (calls, name, version))
    os.chmod(str(path), 0o755)
    return str(path), calls


def calls_of(calls):
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_a_tools_version_is_asked_once_until_the_file_changes(tmp_path):
    path, calls = fake_tool(tmp_path, "pg_dump", "15.4")
    assert postgres.tool_version(path) == "15.4"
    assert postgres.tool_version(path) == "15.4"
    assert calls_of(calls) == 1
    # an upgrade replaces the file: asked again
    path2, calls2 = fake_tool(tmp_path, "pg_dump", "16.2 (Debian 16.2-1)")
    assert (path2, calls2) == (path, calls)
    assert postgres.tool_version(path) == "16.2"
    assert calls_of(calls) == 2


def test_warming_asks_every_tool_in_the_folder_so_that_forked_workers_do_not(tmp_path):
    dump, dump_calls = fake_tool(tmp_path, "pg_dump", "17.1")
    dumpall, dumpall_calls = fake_tool(tmp_path, "pg_dumpall", "17.1")
    postgres.warm_tool_versions(bin_dir=str(tmp_path))
    assert (calls_of(dump_calls), calls_of(dumpall_calls)) == (1, 1)
    assert postgres.find_binary("pg_dump", str(tmp_path), 15) == (dump, "17.1")
    assert postgres.find_binary("pg_dumpall", str(tmp_path), 17) == (dumpall, "17.1")
    assert (calls_of(dump_calls), calls_of(dumpall_calls)) == (1, 1)


def test_warming_a_host_without_the_tools_is_harmless(tmp_path):
    postgres.warm_tool_versions(bin_dir=str(tmp_path / "missing"))
