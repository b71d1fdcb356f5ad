"""pgarchive on archives built byte by byte from the documented layout (versions 1.12 to 1.16),
read through a pipe-like object that hands out a few bytes at a time. Real pg_dump output is
split and restored in tests/integration/test_multitenant.py."""

import io
import tracemalloc

import pytest

from lifeboat_engine import pgarchive
from lifeboat_engine.errors import LifeboatError


def i(v, size=4):
    return pgarchive.encode_int(v, size)


def s(text):
    if text is None:
        return i(-1)
    raw = text.encode()
    return i(len(raw)) + raw


def entry(version, dump_id, desc, tag, namespace="", deps=(), data=False):
    out = i(dump_id) + i(1 if data else 0) + s("0") + s("0") + s(tag) + s(desc) + i(1)
    out += s("-- " + desc) + s("") + s("") + s(namespace) + s("")
    if version >= (1, 14):
        out += s("heap")
    if version >= (1, 16):
        out += i(114)
    out += s("owner") + s("false") + b"".join(s(str(d)) for d in deps) + s(None)
    out += bytes([1 if data else 3]) + b"\0" * 8
    return out


def block(dump_id, rows):
    return b"".join([bytes([pgarchive.BLK_DATA]), i(dump_id)] + [i(len(row)) + row for row in rows] + [i(0)])


ENTRIES = [  # (id, desc, tag, namespace, deps, data)
    (1, "ENCODING", "ENCODING", "", (), False),
    (2, "SCHEMA", "a", "", (), False),
    (3, "COMMENT", "SCHEMA a", "", (2,), False),
    (4, "TABLE", "t", "a", (2,), False),
    (5, "SCHEMA", "b", "", (), False),
    (6, "TABLE", "u", "b", (5,), False),
    (7, "TABLE DATA", "t", "a", (4,), True),
    (8, "TABLE DATA", "u", "b", (6,), True),
    (9, "SCHEMA", "other", "", (), False),
]


def archive(version=(1, 14, 0), entries=None, blocks=None, compression=0):
    entries = ENTRIES if entries is None else entries
    head = pgarchive.MAGIC + bytes(version) + bytes([4, 8, 1])
    head += bytes([compression]) if version[:2] >= (1, 15) else i(compression)
    head += b"".join(i(n) for n in (0, 0, 3, 1, 0, 126, 0)) + s("shop") + s("15.18") + s("15.18")
    toc = i(len(entries)) + b"".join(entry(version[:2], *e) for e in entries)
    if blocks is None:
        blocks = block(7, [b"1\tx\n", b"2\ty\n"]) + block(8, [b"3\tz\n" * 1000])
    return head, toc, blocks


class Trickle(io.RawIOBase):
    """A pipe that returns at most 7 bytes per read."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def read(self, n=-1):
        out = self.data[self.pos:self.pos + min(7, n if n and n > 0 else 7)]
        self.pos += len(out)
        return out


def split(data, wanted):
    head = pgarchive.read_head(Trickle(data))
    own = pgarchive.owners(head.entries, wanted)
    sp = pgarchive.Splitter(None, head, own, wanted)
    out = {}
    for schema, reader in sp.outputs():
        parts = []
        while True:
            chunk = reader.read(5)
            if not chunk:
                break
            parts.append(chunk)
        out[schema] = b"".join(parts)
    sp.drain()
    return head, out


@pytest.mark.parametrize("version", [(1, 12, 0), (1, 13, 0), (1, 14, 0), (1, 15, 0), (1, 16, 0)])
def test_each_schema_gets_its_entries_and_blocks_byte_for_byte(version):
    head_raw, toc, blocks = archive(version)
    head, out = split(head_raw + toc + blocks, ["a", "b"])
    assert head.version == version and head.dbname == "shop"
    entries = dict((e[0], entry(version[:2], *e)) for e in ENTRIES)
    assert out["a"] == head_raw + i(5) + entries[1] + entries[2] + entries[3] + entries[4] + entries[7] + \
        block(7, [b"1\tx\n", b"2\ty\n"])
    assert out["b"] == head_raw + i(4) + entries[1] + entries[5] + entries[6] + entries[8] + block(8, [b"3\tz\n" * 1000])
    # a split archive is itself a valid archive that reads back to the same entries
    again = pgarchive.read_head(io.BytesIO(out["b"]))
    assert [e.dump_id for e in again.entries] == [1, 5, 6, 8]


def test_comments_follow_their_schema_and_other_schemas_are_left_out():
    head_raw, toc, blocks = archive()
    head = pgarchive.read_head(io.BytesIO(head_raw + toc + blocks))
    own = pgarchive.owners(head.entries, ["a", "b"])
    assert own == {1: "", 2: "a", 3: "a", 4: "a", 5: "b", 6: "b", 7: "a", 8: "b", 9: None}


def test_interleaved_data_is_detected_before_any_data_is_read():
    entries = ENTRIES[:6] + [(7, "TABLE DATA", "t", "a", (4,), True), (8, "TABLE DATA", "u", "b", (6,), True),
                             (10, "TABLE DATA", "t2", "a", (4,), True)]
    head_raw, toc, _blocks = archive(entries=entries)
    head = pgarchive.read_head(io.BytesIO(head_raw + toc))
    own = pgarchive.owners(head.entries, ["a", "b"])
    assert pgarchive.interleaved(head.entries, own) == {"a", "b"}
    assert pgarchive.interleaved(pgarchive.read_head(io.BytesIO(b"".join(archive()[:2]))).entries, own) == set()


def test_an_output_must_be_read_to_its_end_before_the_next():
    head_raw, toc, blocks = archive()
    head = pgarchive.read_head(io.BytesIO(head_raw + toc + blocks))
    sp = pgarchive.Splitter(None, head, pgarchive.owners(head.entries, ["a", "b"]), ["a", "b"])
    outputs = sp.outputs()
    _schema, reader = next(outputs)
    reader.read(3)
    with pytest.raises(LifeboatError) as e:
        next(outputs)
    assert "read to its end" in str(e.value)


def test_unwanted_blocks_are_skipped_and_large_object_blocks_parsed():
    blobs = bytes([pgarchive.BLK_BLOBS]) + i(8) + i(16384) + i(3) + b"abc" + i(0) + i(0)
    head_raw, toc, _b = archive()
    data = head_raw + toc + block(7, [b"row\n"]) + blobs
    _head, out = split(data, ["a"])
    assert out["a"].endswith(block(7, [b"row\n"]))


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: b"XXXXX" + d[5:], "not a pg_dump custom-format archive"),
    (lambda d: d[:5] + bytes([1, 9, 0]) + d[8:], "not supported"),
    (lambda d: d[:10] + bytes([3]) + d[11:], "not in the custom format"),
    (lambda d: d[:60], "ended"),
])
def test_bad_streams_are_clear_errors(mutate, fragment):
    head_raw, toc, blocks = archive()
    with pytest.raises(LifeboatError) as e:
        split(mutate(head_raw + toc + blocks), ["a"])
    assert fragment in str(e.value)


def test_a_compressed_archive_is_refused():
    head_raw, toc, blocks = archive(compression=6)
    with pytest.raises(LifeboatError) as e:
        split(head_raw + toc + blocks, ["a"])
    assert "--compress=0" in str(e.value)
    head_raw, toc, blocks = archive(version=(1, 15, 0), compression=1)
    with pytest.raises(LifeboatError):
        split(head_raw + toc + blocks, ["a"])


def test_a_truncated_data_block_is_an_error_not_a_short_archive():
    head_raw, toc, blocks = archive()
    with pytest.raises(LifeboatError) as e:
        split(head_raw + toc + blocks[:-9], ["a", "b"])
    assert "ended" in str(e.value)


def test_memory_stays_bounded_for_a_large_table():
    rows = [b"%08d\tsome text of a row\n" % n for n in range(200000)]  # about 5 MB in 200,000 chunks
    head_raw, toc, _b = archive()
    data = head_raw + toc + block(7, rows) + block(8, rows)

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.pos = 0

        def read(self, n=-1):
            out = data[self.pos:self.pos + 65536]
            self.pos += len(out)
            return out

    tracemalloc.start()
    head = pgarchive.read_head(Pipe())
    sp = pgarchive.Splitter(None, head, pgarchive.owners(head.entries, ["a", "b"]), ["a", "b"])
    total = 0
    for _schema, reader in sp.outputs():
        while True:
            chunk = reader.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    _now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 2 * 5000000
    assert peak < 8 << 20, peak
