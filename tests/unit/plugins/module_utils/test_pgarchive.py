"""pgarchive on custom-format archives built here byte by byte from the layout in PostgreSQL's
pg_backup_archiver.c / pg_backup_custom.c (versions 1.12 to 1.16, integer and offset sizes
from the header), read through pipes that hand out a few bytes at a time. The encoder below
is the test's own, not the module's, so a wrong decoder cannot agree with itself. Archives
of the real pg_dump are split in tests/integration/test_pgarchive_split.py."""

import io
import random

import pytest

from lifeboat_engine import pgarchive
from lifeboat_engine.errors import LifeboatError

VERSIONS = [(1, 12, 0), (1, 13, 0), (1, 14, 0), (1, 15, 0), (1, 16, 0)]


class Layout(object):
    """Writes archive bytes for one version, integer size and offset size."""

    def __init__(self, version=(1, 14, 0), int_size=4, off_size=8):
        self.version, self.int_size, self.off_size = version, int_size, off_size

    def i(self, value):
        return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(self.int_size, "little")

    def s(self, text):
        if text is None:
            return self.i(-1)
        raw = text.encode("utf-8") if isinstance(text, str) else text
        return self.i(len(raw)) + raw

    def head(self, compression=0, fmt=1, dbname="shop"):
        out = b"PGDMP" + bytes(self.version) + bytes([self.int_size, self.off_size, fmt])
        out += bytes([compression]) if self.version[:2] >= (1, 15) else self.i(compression)
        out += b"".join(self.i(n) for n in (7, 30, 12, 5, 11, 126, 0))  # a struct tm
        return out + self.s(dbname) + self.s("15.18") + self.s("15.18")

    def entry(self, dump_id, desc, tag, namespace=None, deps=(), data=False, state=None, offset=0, defn=None):
        out = self.i(dump_id) + self.i(1 if data else 0) + self.s("1259") + self.s(str(16000 + dump_id))
        out += self.s(tag) + self.s(desc) + self.i(3 if data else 2)
        out += self.s(defn if defn is not None else "-- %s %s;\n" % (desc, tag)) + self.s("") + self.s("")
        out += self.s(namespace) + self.s("")
        if self.version[:2] >= (1, 14):
            out += self.s("heap" if desc == "TABLE" else None)
        if self.version[:2] >= (1, 16):
            out += self.i(ord("r") if desc == "TABLE" else 0)
        out += self.s("postgres") + self.s("false") + b"".join(self.s(str(d)) for d in deps) + self.s(None)
        state = state if state is not None else (1 if data else 3)
        return out + bytes([state]) + offset.to_bytes(self.off_size, "little")

    def toc(self, entries):
        return self.i(len(entries)) + b"".join(self.entry(*e) if isinstance(e, tuple) else self.entry(**e)
                                               for e in entries)

    def block(self, dump_id, rows, kind=1):
        return b"".join([bytes([kind]), self.i(dump_id)] + [self.i(len(r)) + r for r in rows] + [self.i(0)])

    def blobs(self, dump_id, objects):
        out = bytes([3]) + self.i(dump_id)
        for oid, chunks in objects:
            out += self.i(oid) + b"".join(self.i(len(c)) + c for c in chunks) + self.i(0)
        return out + self.i(0)


# (dump id, desc, tag, namespace, deps, has data)
ENTRIES = [
    (1, "ENCODING", "ENCODING", None, (), False),
    (2, "STDSTRINGS", "STDSTRINGS", None, (), False),
    (3, "SEARCHPATH", "SEARCHPATH", None, (), False),
    (4, "DATABASE", "shop", None, (), False),
    (5, "COMMENT", "DATABASE shop", None, (4,), False),
    (10, "SCHEMA", "a", None, (), False),
    (11, "COMMENT", "SCHEMA a", None, (10,), False),
    (12, "ACL", "SCHEMA a", None, (10,), False),
    (20, "SCHEMA", "B b", None, (), False),
    (21, "TABLE", "t", "a", (10,), False),
    (22, "TABLE", "u", "B b", (20,), False),
    (23, "TABLE", "v", "a", (10,), False),
    (30, "TABLE DATA", "t", "a", (21,), True),
    (31, "TABLE DATA", "v", "a", (23,), True),
    (32, "TABLE DATA", "u", "B b", (22,), True),
    (40, "SCHEMA", "empty", None, (), False),
    (41, "SCHEMA", "other", None, (), False),
    (42, "TABLE", "w", "other", (41,), False),
    (43, "TABLE DATA", "w", "other", (42,), True),
    (50, "INDEX", "t_idx", "a", (21,), False),
]
ROWS = {30: [b"1\tx\n", b"2\ty\n"], 31: [b"%d\tvee\n" % n for n in range(300)], 32: [b"3\tz\n" * 100],
        43: [b"9\tnot wanted\n"]}
WANTED = ["a", "B b", "empty"]


def build(layout=None, entries=None, rows=None, **head):
    layout, entries, rows = layout or Layout(), entries or ENTRIES, rows or ROWS
    blocks = b"".join(layout.block(e[0], rows[e[0]]) for e in entries if e[5])
    return layout, layout.head(**head), layout.toc(entries), blocks


class Pipe(io.RawIOBase):
    """A pipe that hands out at most ``step`` bytes per read (never seekable)."""

    def __init__(self, data, step=7):
        self.data, self.pos, self.step = data, 0, step

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.step if n is None or n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def splitter(reader, wanted=None):
    """A Splitter over the archive ``reader`` gives, for ``wanted`` (default WANTED)."""
    wanted = wanted or WANTED
    head = pgarchive.read_head(reader)
    return head, pgarchive.Splitter(None, head, pgarchive.owners(head.entries, wanted), wanted)


def split(data, wanted=None, step=7, size=5):
    head, sp = splitter(Pipe(data, step), wanted)
    out = {}
    for schema, reader in sp.outputs():
        out[schema] = b"".join(iter(lambda r=reader: r.read(size), b""))
    sp.drain()
    return head, out


def expected(layout, head_raw, ids, rows=None):
    rows = rows or ROWS
    by_id = dict((e[0], e) for e in ENTRIES)
    toc = layout.i(len(ids)) + b"".join(layout.entry(*by_id[n]) for n in ids)
    return head_raw + toc + b"".join(layout.block(n, rows[n]) for n in ids if by_id[n][5])


# -- integers, strings, headers ---------------------------------------------------------------

@pytest.mark.parametrize("size, value", [(size, value) for size in (1, 2, 3, 4, 8)
                                         for value in (0, 1, 255, -1, -200, 65535, 1 << 31) if abs(value) < 1 << 8 * size])
def test_integers_round_trip_in_each_size(size, value):
    raw = Layout(int_size=size).i(value)
    assert pgarchive.encode_int(value, size) == raw
    assert pgarchive.decode_int(raw) == value


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("int_size, off_size", [(4, 8), (8, 8), (4, 4)])
def test_header_and_toc_of_each_version_are_read(version, int_size, off_size):
    layout, head_raw, toc, blocks = build(Layout(version, int_size, off_size))
    head = pgarchive.read_head(Pipe(head_raw + toc + blocks))
    assert head.version == version and (head.int_size, head.off_size) == (int_size, off_size)
    assert head.raw == head_raw and head.compression == 0
    assert (head.dbname, head.server_version, head.dump_version) == ("shop", "15.18", "15.18")
    assert [(e.dump_id, e.desc, e.tag, e.namespace, tuple(e.deps), e.has_data()) for e in head.entries] == ENTRIES
    by_id = dict((e[0], e) for e in ENTRIES)
    for e in head.entries:
        assert e.raw == layout.entry(*by_id[e.dump_id])  # byte for byte, offset included
        assert e.owner == "postgres" and e.had_dumper == e.has_data()
    assert [e.dump_id for e in head.data_entries()] == [30, 31, 32, 43]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("int_size, off_size", [(4, 8), (8, 8), (4, 4)])
def test_the_fast_toc_reader_reads_what_the_field_by_field_one_reads(monkeypatch, version, int_size, off_size):
    layout = Layout(version, int_size, off_size)
    entries = [dict(dump_id=1, desc="ENCODING", tag="ENCODING", defn="SET client_encoding = 'LATIN1';\n"),
               dict(dump_id=2, desc="SCHEMA", tag="caf\xe9".encode("latin-1"))]
    _layout, head_raw, toc, blocks = build(layout)
    datas = [head_raw + toc + blocks, layout.head() + layout.toc(entries)]
    fast = [pgarchive.read_head(io.BytesIO(d)) for d in datas]
    monkeypatch.setattr(pgarchive, "_fast_entry", lambda stream, v, i, o, codec: (None, codec))
    slow = [pgarchive.read_head(io.BytesIO(d)) for d in datas]
    for a, b in zip(fast, slow):
        assert a.stream.pos == b.stream.pos and len(a.entries) == len(b.entries)
        for x, y in zip(a.entries, b.entries):
            assert [getattr(x, k) for k in pgarchive.Entry.__slots__] == [getattr(y, k) for k in pgarchive.Entry.__slots__]
    assert fast[1].entries[1].tag == "caf\xe9"


def test_strings_null_empty_and_in_the_archive_encoding():
    layout = Layout()
    entries = [dict(dump_id=1, desc="ENCODING", tag="ENCODING", defn="SET client_encoding = 'LATIN1';\n"),
               dict(dump_id=2, desc="SCHEMA", tag="caf\xe9".encode("latin-1")),
               dict(dump_id=3, desc="TABLE", tag="", namespace="caf\xe9".encode("latin-1"), deps=(2,))]
    head = pgarchive.read_head(io.BytesIO(layout.head() + layout.toc(entries)))
    assert [e.tag for e in head.entries] == ["ENCODING", "caf\xe9", ""]
    assert head.entries[0].namespace is None and head.entries[2].namespace == "caf\xe9"
    assert pgarchive.owners(head.entries, ["caf\xe9"]) == {1: "", 2: "caf\xe9", 3: "caf\xe9"}


@pytest.mark.parametrize("encoding, codec, name", [
    ("UTF8", "utf-8", "caf\xe9 \u4e2d"), ("LATIN1", "latin-1", "caf\xe9"), ("WIN1251", "cp1251", "\u0448\u043a\u043e\u043b\u0430"),
    ("KOI8R", "koi8_r", "\u0448\u043a\u043e\u043b\u0430"), ("EUC_JP", "euc_jp", "\u5b66\u6821"), ("SQL_ASCII", "latin-1", "caf\xe9"),
])
def test_names_are_decoded_in_the_encoding_of_the_archive(encoding, codec, name):
    layout = Layout()
    entries = [dict(dump_id=1, desc="ENCODING", tag="ENCODING", defn="SET client_encoding = '%s';\n" % encoding),
               dict(dump_id=2, desc="SCHEMA", tag=name.encode(codec))]
    head = pgarchive.read_head(io.BytesIO(layout.head() + layout.toc(entries)))
    assert head.entries[1].tag == name


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("data, fragment", [
    (b"", "empty stream"),
    (b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n", "not a pg_dump custom-format archive"),
    (b"toc.dat\0" + bytes(504), "not a pg_dump custom-format archive"),  # a tar archive
    (bytes(random.Random(7).getrandbits(8) for _n in range(4096)), "not a pg_dump custom-format archive"),
    (b"PGDMP" + bytes([1, 11, 0]), "version 1.11 is not supported"),
    (b"PGDMP" + bytes([1, 17, 0]), "version 1.17 is not supported"),
    (b"PGDMP" + bytes([1, 14, 0, 0, 8, 1]), "sizes"),
    (b"PGDMP" + bytes([1, 14, 0, 4, 8, 3]), "not in the custom format"),
])
def test_what_is_not_a_splittable_archive_is_a_clear_error(data, fragment):
    with pytest.raises(LifeboatError) as e:
        pgarchive.read_head(Pipe(data))
    assert fragment in str(e.value)


@pytest.mark.parametrize("version, compression", [((1, 14, 0), -1), ((1, 14, 0), 6), ((1, 12, 0), 1),
                                                  ((1, 15, 0), 1), ((1, 15, 0), 2), ((1, 16, 0), 3)])
def test_a_compressed_archive_is_refused(version, compression):
    _layout, head_raw, toc, blocks = build(Layout(version), compression=compression)
    with pytest.raises(LifeboatError) as e:
        pgarchive.read_head(Pipe(head_raw + toc + blocks))
    assert "--compress=0" in str(e.value)


def test_a_stream_cut_anywhere_is_an_error_never_a_short_archive():
    _layout, head_raw, toc, blocks = build()
    data = head_raw + toc + blocks
    for cut in range(len(data)):
        with pytest.raises(LifeboatError) as e:
            split(data[:cut], step=4096, size=4096)
        assert "ended" in str(e.value) or "PGDMP" in str(e.value) or cut < 6, cut


LAST_BLOBS = ENTRIES + [(60, "BLOBS", "BLOBS", None, (), True)]  # walked chunk by chunk, as is any block but
# TABLE DATA, whose COPY text has no zero byte: its end marker is searched for


def with_blobs(tail=b"", step=7, objects=((16400, [b"\0" * 40, b"abc"]), (16401, []))):
    layout = Layout()
    data = layout.head() + layout.toc(LAST_BLOBS) + b"".join(layout.block(e[0], ROWS[e[0]]) for e in ENTRIES if e[5])
    return split(data + layout.blobs(60, objects) + tail, step=step)


@pytest.mark.parametrize("tail, fragment", [
    (b"\x01", "ended"),  # half a block header after the last block
    (b"\x02\0\1\0\0\0\0", "Unknown data block type 2"),
    (b"\x01\0\x1e\0\0\0\0\0\0\0\0", "not in the order of its table of contents"),  # dump id 30 again
])
def test_what_follows_the_last_block_is_checked(tail, fragment):
    with pytest.raises(LifeboatError) as e:
        with_blobs(tail)
    assert fragment in str(e.value)
    _layout, head_raw, toc, blocks = build()  # the last block is TABLE DATA
    with pytest.raises(LifeboatError) as e:
        split(head_raw + toc + blocks + tail)
    assert "bytes after the archive's end" in str(e.value)


@pytest.mark.parametrize("rows", [
    [b"a\0b\n"],  # zero bytes where COPY text has none: still found
    [b"\0" * 5 + b"\n", b"\0" * 12],  # what looks like an end marker, not followed by the next block
])
def test_table_data_with_zero_bytes_is_still_split_right(rows):
    table = dict(ROWS)
    table[30] = [b"1\tx\n"] + rows + [b"2\ty\n"]
    layout, head_raw, toc, blocks = build(rows=table)
    for step in (1, 5, 4096):
        assert split(head_raw + toc + blocks, step=step)[1]["a"] == \
            expected(layout, head_raw, [1, 2, 3, 4, 5, 10, 11, 12, 21, 23, 30, 31, 50], rows=table)


def test_zero_bytes_in_the_last_block_are_an_error_never_a_guess():
    table = dict(ROWS)
    table[43] = [b"1\tx\n", b"\0" * 5 + b"\n"]
    _layout, head_raw, toc, blocks = build(rows=table)
    with pytest.raises(LifeboatError) as e:
        split(head_raw + toc + blocks)
    assert "not COPY text" in str(e.value)


def test_blocks_out_of_toc_order_are_an_error():
    layout, head_raw, toc, _blocks = build()
    blocks = b"".join(layout.block(n, ROWS[n]) for n in (31, 30, 32, 43))
    with pytest.raises(LifeboatError) as e:
        split(head_raw + toc + blocks)
    assert "dump id 30 was expected" in str(e.value)


def test_a_negative_chunk_length_is_an_error():
    layout = Layout()
    bad = layout.blobs(60, [(16400, [b"abcd"])]).replace(layout.i(4) + b"abcd", layout.i(-4) + b"abcd")
    data = layout.head() + layout.toc(LAST_BLOBS) + b"".join(layout.block(e[0], ROWS[e[0]]) for e in ENTRIES if e[5])
    with pytest.raises(LifeboatError) as e:
        split(data + bad)
    assert "negative chunk length" in str(e.value)


# -- where entries go -------------------------------------------------------------------------

OWNERS = [  # (entry, wanted, expected owner)
    ((1, "ENCODING", "ENCODING", None, ()), ["a"], ""),
    ((2, "STDSTRINGS", "STDSTRINGS", None, ()), ["a"], ""),
    ((3, "SEARCHPATH", "SEARCHPATH", None, ()), [], ""),
    ((4, "DATABASE", "shop", None, ()), ["a"], ""),
    ((6, "DATABASE PROPERTIES", "shop", None, ()), ["a"], ""),
    ((5, "COMMENT", "DATABASE shop", None, (4,)), ["a"], ""),
    ((7, "ACL", "DATABASE shop", "", (4,)), ["a"], ""),
    ((10, "SCHEMA", "a", None, ()), ["a"], "a"),
    ((10, "SCHEMA", "a", None, ()), ["b"], None),
    ((11, "COMMENT", "SCHEMA a", None, (10,)), ["a"], "a"),
    ((12, "ACL", "SCHEMA a", "", (10,)), ["a"], "a"),
    ((13, "SECURITY LABEL", "SCHEMA a", None, (10,)), ["a"], "a"),
    ((14, "COMMENT", "SCHEMA a", None, (10,)), ["a"], "a"),  # depends on an entry that comes later
    ((15, "COMMENT", "SCHEMA x", None, (98,)), ["a"], None),  # on something not in the archive
    ((16, "ACL", "odd", None, (10, 20)), ["a", "b"], None),  # two schemas: nowhere
    ((17, "COMMENT", "chain", None, (99,)), ["a"], "a"),  # through another entry with no namespace
    ((21, "TABLE", "t", "a", (10,)), ["a"], "a"),
    ((22, "TABLE", "t", "a", (20,)), ["b"], None),  # its namespace decides, not its dependencies
    ((23, "DEFAULT ACL", "DEFAULT PRIVILEGES FOR TABLES", "a", (10,)), ["a"], "a"),
    ((24, "BLOB", "16400", None, ()), ["a"], None),
    ((25, "BLOBS", "BLOBS", None, ()), ["a"], None),
    ((26, "SCHEMA", "it's \"odd\"", None, ()), ["it's \"odd\""], "it's \"odd\""),
]
CONTEXT = [pgarchive.Entry() for _n in range(4)]
for _e, (_id, _tag, _deps) in zip(CONTEXT, [(4, "shop", ()), (10, "a", ()), (20, "b", ()), (99, "x", (10,))]):
    _e.dump_id, _e.desc, _e.tag, _e.namespace, _e.deps = _id, "DATABASE" if _id == 4 else "SCHEMA", _tag, None, _deps
CONTEXT[3].desc, CONTEXT[3].namespace = "TYPE", None


@pytest.mark.parametrize("fields, wanted, owner", OWNERS)
def test_owner_of_each_kind_of_entry(fields, wanted, owner):
    e = pgarchive.Entry()
    e.dump_id, e.desc, e.tag, e.namespace, e.deps = fields[0], fields[1], fields[2], fields[3], list(fields[4])
    entries = [e] + [c for c in CONTEXT if c.dump_id != e.dump_id]  # what it depends on comes later
    assert pgarchive.owners(entries, wanted)[e.dump_id] == owner


# -- interleaving -----------------------------------------------------------------------------

@pytest.mark.parametrize("order, wanted, mixed", [
    ("aabbcc", None, ""),
    ("aabba", None, "ab"),
    ("abab", None, "ab"),
    ("axxa", None, ""),  # blocks of no wanted schema in between are skipped
    ("abba", None, "ab"),
    ("abac", None, "ab"),
    ("aabcbdd", None, "bc"),
    ("abcab", None, "abc"),
    ("abab", ["a"], ""),
    ("abcacb", ["a", "c"], "ac"),
    ("", None, ""),
])
def test_interleaved_schemas_are_known_from_the_toc(order, wanted, mixed):
    entries, owner_of = [], {}
    for n, schema in enumerate(order):
        e = pgarchive.Entry()
        e.dump_id, e.data_state = 100 + n, 1
        entries.append(e)
        owner_of[e.dump_id] = None if schema == "x" else schema
    nodata = pgarchive.Entry()
    nodata.dump_id, nodata.data_state = 1, pgarchive.OFFSET_NO_DATA
    owner_of[1] = "z"
    assert pgarchive.interleaved([nodata] + entries, owner_of, wanted) == set(mixed)


def test_the_splitter_refuses_interleaved_schemas_before_reading_data():
    entries = ENTRIES[:13] + [(32, "TABLE DATA", "u", "B b", (22,), True), (31, "TABLE DATA", "v", "a", (23,), True),
                              (40, "SCHEMA", "empty", None, (), False)]
    _layout, head_raw, toc, blocks = build(entries=entries)
    pipe = Pipe(head_raw + toc + blocks, step=1)
    head = pgarchive.read_head(pipe)
    owner_of = pgarchive.owners(head.entries, WANTED)
    assert pgarchive.interleaved(head.entries, owner_of) == {"a", "B b"}
    before = pipe.pos
    with pytest.raises(LifeboatError) as e:
        pgarchive.Splitter(pipe, head, owner_of, WANTED)
    assert "interleave" in str(e.value) and pipe.pos == before
    # left out, their blocks are read past
    sp = pgarchive.Splitter(pipe, head, owner_of, ["empty"])
    assert [s for s, r in sp.outputs() if r.skip() is None] == ["empty"]
    sp.drain()
    assert pipe.pos == len(pipe.data)


# -- splitting --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("int_size, off_size", [(4, 8), (8, 4)])
def test_each_schema_gets_its_entries_and_blocks_byte_for_byte(version, int_size, off_size):
    layout, head_raw, toc, blocks = build(Layout(version, int_size, off_size))
    _head, out = split(head_raw + toc + blocks)
    assert list(out) == ["empty", "a", "B b"]  # stream order; no data first
    common = [1, 2, 3, 4, 5]
    assert out["a"] == expected(layout, head_raw, common + [10, 11, 12, 21, 23, 30, 31, 50])
    assert out["B b"] == expected(layout, head_raw, common + [20, 22, 32])
    assert out["empty"] == expected(layout, head_raw, common + [40])
    again = pgarchive.read_head(io.BytesIO(out["a"]))
    assert again.raw == head_raw and [e.dump_id for e in again.entries] == common + [10, 11, 12, 21, 23, 30, 31, 50]


@pytest.mark.parametrize("read_size", [1, 2, 5, 6, 7, 13, 64, 4096])
@pytest.mark.parametrize("step", [1, 3, 64, 100000])
def test_buffer_boundaries_anywhere_change_nothing(monkeypatch, read_size, step):
    rows = dict(ROWS)
    rows[31] = [b"x" * 300, b"y"] + rows[31]  # a chunk longer than the buffer, a short one
    layout, head_raw, toc, blocks = build(rows=rows)
    monkeypatch.setattr(pgarchive, "READ_SIZE", read_size)
    _head, out = split(head_raw + toc + blocks, step=step, size=read_size + 3)
    assert out["a"] == expected(layout, head_raw, [1, 2, 3, 4, 5, 10, 11, 12, 21, 23, 30, 31, 50], rows=rows)


def test_reads_of_any_size():
    _layout, head_raw, toc, blocks = build()
    _head, sp = splitter(io.BytesIO(head_raw + toc + blocks))
    outputs = sp.outputs()
    _schema, empty = next(outputs)
    whole = empty.read()
    assert whole.startswith(head_raw) and empty.read(10) == b"" and empty.read() == b""
    _schema, a = next(outputs)
    assert a.read(0) == b"" and len(a.read(1)) == 1 and len(a.read(len(head_raw))) == len(head_raw)
    a.skip()
    assert a.read(10) == b""


def test_the_offsets_of_a_dump_written_to_a_file_are_reset():
    layout = Layout()
    entries = [dict(zip(("dump_id", "desc", "tag", "namespace", "deps", "data"), e)) for e in ENTRIES]
    for e in entries:
        if e["data"]:
            e.update(state=2, offset=123456 + e["dump_id"])
    data = layout.head() + layout.toc(entries) + b"".join(layout.block(e[0], ROWS[e[0]]) for e in ENTRIES if e[5])
    _head, out = split(data)
    again = pgarchive.read_head(io.BytesIO(out["a"]))
    assert [e.data_state for e in again.entries if e.has_data()] == [1, 1]
    assert all(e.raw.endswith(bytes([1]) + bytes(8)) for e in again.entries if e.has_data())
    assert out["a"].endswith(layout.block(31, ROWS[31]))


def test_large_object_blocks_are_read_past():
    for step in (1, 3, 1000):
        _head, out = with_blobs(step=step)
        assert out["B b"].endswith(Layout().block(32, ROWS[32]))
    layout = Layout()
    data = layout.head() + layout.toc(LAST_BLOBS) + b"".join(layout.block(e[0], ROWS[e[0]]) for e in ENTRIES if e[5])
    with pytest.raises(LifeboatError):
        split(data + layout.blobs(60, [(16400, [b"\0" * 40])])[:-3])


def test_each_archive_is_read_in_turn_and_to_its_end():
    _layout, head_raw, toc, blocks = build()
    _head, sp = splitter(io.BytesIO(head_raw + toc + blocks))
    outputs = sp.outputs()
    _schema, empty = next(outputs)
    empty.read(3)
    with pytest.raises(LifeboatError) as e:
        next(outputs)
    assert "not read to its end" in str(e.value)
    with pytest.raises(LifeboatError):
        sp.drain()
    empty.skip()
    _schema, a = next(outputs)
    with pytest.raises(LifeboatError) as e:
        empty.read(1)
    assert "after the next one" in str(e.value)
    a.read(10)
    with pytest.raises(LifeboatError):
        sp.drain()
    a.skip()
    schema, b = next(outputs)
    assert schema == "B b" and b.read().endswith(b"\0" * 5)
    sp.drain()


def test_a_schema_that_is_not_in_the_archive_is_an_error():
    _layout, head_raw, toc, blocks = build()
    head = pgarchive.read_head(io.BytesIO(head_raw + toc + blocks))
    with pytest.raises(LifeboatError) as e:
        pgarchive.Splitter(None, head, pgarchive.owners(head.entries, ["a", "gone"]), ["a", "gone"])
    assert "'gone'" in str(e.value)


def test_the_splitter_goes_on_with_the_stream_read_head_read():
    _layout, head_raw, toc, blocks = build()
    pipe = io.BytesIO(head_raw + toc + blocks)
    head = pgarchive.read_head(pipe)
    with pytest.raises(LifeboatError):
        pgarchive.Splitter(io.BytesIO(b""), head, pgarchive.owners(head.entries, ["a"]), ["a"])
    sp = pgarchive.Splitter(pipe, head, pgarchive.owners(head.entries, ["a"]))
    assert [s for s, r in sp.outputs() if r.skip() is None] == ["a"]  # wanted: every schema owners found
    sp.drain()
