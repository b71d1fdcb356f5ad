"""pgarchive on the real pg_dump and pg_restore: one ``pg_dump -Fc -Z0 -n ...`` of every tenant of
a schema-per-tenant database (tests/saas.py: citext/hstore/pgcrypto in ``public``, ``public.plans``
referenced by every tenant, identity columns, sequences advanced past their data, a view, a
function and its trigger, indexes, a comment on the schema, grants to a role; plus names that
need quoting and an empty tenant), read from a pipe and split as it streams. Each split archive
is streamed straight into ``pg_restore`` reading stdin, and must:

- list the same entries as a plain ``pg_dump -Fc -Z0 -n <schema>`` (pg_restore --list, and the
  whole TOC including the entries pg_restore does not list);
- restore to the same rows, sequences and ``pg_dump -s -n`` schema as that plain dump;
- split the same from a dump written to a file (whose TOC records data offsets) and restore
  from a file;
- and a table of 200,000 rows splits with a bounded memory peak.
"""

import io
import re
import subprocess
import threading
import tracemalloc

import pytest

import lbtest
import saas
from lifeboat_engine import pgarchive

TENANTS = ("acme", "Big Co", "o'hara", 'We"ird', "empty_one")
SHARED_DB = "pga_shared"


def dump_argv(pg, db, schemas, *extra):
    return [pg.bin("pg_dump"), "--format=custom", "--compress=0", "--dbname=" + db] + list(extra) + \
        ["--schema=" + saas.ident(s).replace("*", "\\*").replace("?", "\\?") for s in schemas]


def restore_stdin(pg, db, chunks):
    """pg_restore reading stdin (a pipe, never seekable) from the iterable ``chunks``."""
    proc = subprocess.Popen([pg.bin("pg_restore"), "--exit-on-error", "--dbname=" + db], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=pg.env())
    errors = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))
    reader.start()
    for chunk in chunks:
        proc.stdin.write(chunk)
    proc.stdin.close()
    proc.wait()
    reader.join()
    assert proc.returncode == 0, errors[0].decode(errors="replace")


def pieces(reader, size=1 << 20):
    return iter(lambda: reader.read(size), b"")


def split_stream(raw, schemas, sink):
    """Split ``raw`` (a pipe) for ``schemas``; ``sink(schema, reader)`` consumes each archive."""
    head = pgarchive.read_head(raw)
    owner_of = pgarchive.owners(head.entries, schemas)
    assert pgarchive.interleaved(head.entries, owner_of) == set()
    splitter = pgarchive.Splitter(raw, head, owner_of, schemas)
    order = []
    for schema, reader in splitter.outputs():
        order.append(schema)
        sink(schema, reader)
    splitter.drain()
    return head, order


def toc_list(pg, path):
    """``pg_restore --list``: the entries it lists, without dump ids or the header's comments."""
    out = subprocess.run([pg.bin("pg_restore"), "--list", str(path)], capture_output=True, text=True, check=True).stdout
    return [re.sub(r"^\d+; ", "", line) for line in out.splitlines() if line and not line.startswith(";")]


def whole_toc(data):
    head = pgarchive.read_head(io.BytesIO(data))
    return [(e.desc, e.namespace, e.tag, e.has_data()) for e in head.entries]


def sequences(pg, db, schema):
    return pg.psql("SELECT sequencename || '=' || coalesce(last_value::text, 'null') FROM pg_sequences "
                   "WHERE schemaname = '%s' ORDER BY 1" % schema.replace("'", "''"), db=db)


@pytest.fixture(scope="module")
def tenants(pg, tmp_path_factory):
    """The tenants' database, one dump of all tenants split into pg_restore as it streams, and a
    plain pg_dump -n of each tenant restored beside it, both over the shared part."""
    d = tmp_path_factory.mktemp("pgarchive")
    db = saas.build(pg, db="pga_tenants", tenants=TENANTS[:4], rows=80)
    pg.psql("CREATE SCHEMA empty_one; COMMENT ON SCHEMA empty_one IS 'no tables yet'; "
            "GRANT USAGE ON SCHEMA empty_one TO saas_app; CREATE SCHEMA not_a_tenant; "
            "CREATE TABLE not_a_tenant.t AS SELECT g FROM generate_series(1, 500) g", db=db)
    pg.psql("CREATE DATABASE %s" % SHARED_DB)
    pg.psql(saas.SHARED, db=SHARED_DB)
    for target in ("pga_from_split", "pga_from_plain"):
        pg.psql("CREATE DATABASE %s TEMPLATE %s" % (target, SHARED_DB))

    # one pg_dump of every tenant (and a schema that is no tenant: its blocks are read past)
    files = {}
    proc = subprocess.Popen(dump_argv(pg, db, TENANTS + ("not_a_tenant",)), stdout=subprocess.PIPE, env=pg.env())

    def sink(schema, reader):
        path = d / ("split-%d.dump" % len(files))
        with open(str(path), "wb") as f:
            def tee():
                for chunk in pieces(reader):
                    f.write(chunk)
                    yield chunk
            restore_stdin(pg, "pga_from_split", tee())
        files[schema] = path

    head, order = split_stream(proc.stdout, TENANTS, sink)
    assert proc.wait() == 0

    plain = {}
    for n, schema in enumerate(TENANTS):
        path = d / ("plain-%d.dump" % n)
        subprocess.run(dump_argv(pg, db, [schema], "--file=" + str(path)), check=True, env=pg.env())
        restore_stdin(pg, "pga_from_plain", [path.read_bytes()])
        plain[schema] = path
    yield {"db": db, "split": files, "plain": plain, "head": head, "order": order, "dir": d}
    for name in (db, "pga_from_split", "pga_from_plain", SHARED_DB):
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % saas.ident(name))


def test_every_tenant_gets_an_archive_in_stream_order(tenants):
    assert sorted(tenants["order"]) == sorted(TENANTS)
    assert tenants["order"][0] == "empty_one"  # no data: it waits for no block
    assert tenants["head"].version[:2] == (1, 14) or tenants["head"].version[:2] >= (1, 15)


@pytest.mark.parametrize("schema", TENANTS)
def test_a_split_archive_lists_the_entries_of_a_plain_pg_dump_n(tenants, pg, schema):
    split, plain = tenants["split"][schema], tenants["plain"][schema]
    assert toc_list(pg, split) == toc_list(pg, plain)
    assert whole_toc(split.read_bytes()) == whole_toc(plain.read_bytes())  # ENCODING, DATABASE, ... too
    kinds = set(desc for desc, _nsp, _tag, _data in whole_toc(split.read_bytes()))
    assert {"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "SCHEMA", "COMMENT"} <= kinds
    if schema != "empty_one":
        assert {"TABLE", "TABLE DATA", "SEQUENCE SET", "VIEW", "FUNCTION", "TRIGGER", "INDEX", "FK CONSTRAINT",
                "ACL"} <= kinds


@pytest.mark.parametrize("schema", TENANTS)
def test_a_split_archive_restores_like_a_plain_pg_dump_n(tenants, pg, schema):
    db = tenants["db"]
    with pg.connect(db) as conn:
        source = lbtest.table_checksums(conn, schema)
    with pg.connect("pga_from_split") as conn:
        from_split = lbtest.table_checksums(conn, schema)
    with pg.connect("pga_from_plain") as conn:
        from_plain = lbtest.table_checksums(conn, schema)
    assert from_split == from_plain == source
    if schema != "empty_one":
        assert len(source) == 4 and all(rows > 0 for rows, _md5 in source.values())  # events' partitions too
    assert sequences(pg, "pga_from_split", schema) == sequences(pg, "pga_from_plain", schema) == \
        sequences(pg, db, schema)
    assert saas.schema_dump(pg, "pga_from_split", schema) == saas.schema_dump(pg, "pga_from_plain", schema)
    grants = "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'saas_app' " \
             "AND table_schema = '%s'" % schema.replace("'", "''")
    assert pg.psql(grants, db="pga_from_split") == pg.psql(grants, db=db)


def test_a_dump_written_to_a_file_splits_into_archives_that_restore_from_files(tenants, pg):
    """pg_dump writing a file records data offsets in the TOC: the split archives must not keep them."""
    d = tenants["dir"]
    whole = d / "whole.dump"
    subprocess.run(dump_argv(pg, tenants["db"], ["acme", "Big Co"], "--file=" + str(whole)), check=True, env=pg.env())
    assert any(e.data_state == pgarchive.OFFSET_POS_SET for e in pgarchive.read_head(io.BytesIO(whole.read_bytes()))
               .entries)
    out = {}

    def sink(schema, reader):
        out[schema] = d / ("fromfile-%s.dump" % schema.replace(" ", "_"))
        out[schema].write_bytes(b"".join(pieces(reader, 65536)))

    with open(str(whole), "rb") as raw:
        split_stream(raw, ["Big Co"], sink)
    assert list(out) == ["Big Co"]  # acme's blocks were read past
    pg.psql("CREATE DATABASE pga_from_file TEMPLATE %s" % SHARED_DB)
    try:
        subprocess.run([pg.bin("pg_restore"), "--exit-on-error", "--dbname=pga_from_file", str(out["Big Co"])],
                       check=True, env=pg.env(), capture_output=True)
        with pg.connect("pga_from_file") as conn:
            restored = lbtest.table_checksums(conn, "Big Co")
        with pg.connect(tenants["db"]) as conn:
            assert restored == lbtest.table_checksums(conn, "Big Co")
    finally:
        pg.psql("DROP DATABASE IF EXISTS pga_from_file WITH (FORCE)")


@pytest.mark.slow
def test_a_large_table_splits_in_bounded_memory(pg, tmp_path):
    db = "pga_bulk"
    pg.psql("CREATE DATABASE %s" % db)
    try:
        pg.psql("CREATE SCHEMA bulk; CREATE TABLE bulk.rows (id bigint PRIMARY KEY, note text, at timestamptz); "
                "INSERT INTO bulk.rows SELECT g, md5(g::text) || repeat(' row text', 8), "
                "timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, 200000) g; "
                "CREATE SCHEMA small; CREATE TABLE small.t AS SELECT g FROM generate_series(1, 10) g", db=db)
        proc = subprocess.Popen(dump_argv(pg, db, ["bulk", "small"]), stdout=subprocess.PIPE, env=pg.env())
        sizes = {}
        path = tmp_path / "bulk.dump"

        def sink(schema, reader):
            total = 0
            with open(str(path) if schema == "bulk" else "/dev/null", "wb") as f:
                for chunk in pieces(reader):
                    total += len(chunk)
                    f.write(chunk)
            sizes[schema] = total

        tracemalloc.start()
        try:
            split_stream(proc.stdout, ["bulk", "small"], sink)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert proc.wait() == 0
        assert sizes["bulk"] > 20 << 20, sizes
        assert peak < 16 << 20, "the splitter's peak was %d bytes for %d bytes of data" % (peak, sizes["bulk"])
        pg.psql("CREATE DATABASE pga_bulk_back")
        try:
            restore_stdin(pg, "pga_bulk_back", [path.read_bytes()])
            with pg.connect("pga_bulk_back") as conn:
                restored = lbtest.table_checksums(conn, "bulk")
            with pg.connect(db) as conn:
                assert restored == lbtest.table_checksums(conn, "bulk")
            assert restored["bulk.rows"][0] == 200000
        finally:
            pg.psql("DROP DATABASE IF EXISTS pga_bulk_back WITH (FORCE)")
    finally:
        pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
