# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Split one ``pg_dump --format=custom --compress=0 -n s1 -n s2 ...`` stream into one archive per schema.

The custom format (PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c and pg_backup_custom.c)
is a header, a table of contents (TOC) and, written to a pipe, the data blocks in TOC order.
The archive of one schema is the same header, a TOC holding the entries of that schema and
the database-level entries every ``pg_dump -n`` writes (ENCODING, STDSTRINGS, SEARCHPATH,
DATABASE and its properties, comment and ACL), copied byte for byte in dump order, then the
data blocks of that schema, copied byte for byte: ``pg_restore`` reads it like the archive
of a ``pg_dump -Fc -Z0 -n <schema>``, from a file or a pipe. The input is read once, from a
pipe, through one buffer of ``READ_SIZE``: memory stays bounded whatever the data size
(the TOC itself is kept, as pg_restore keeps it).

Layout (versions 1.12 to 1.16, PostgreSQL 10 to 18). An integer is a sign byte and
``int_size`` little-endian bytes; a string an integer length (-1 for NULL) and the bytes.

- header: ``PGDMP``, version (3 bytes), int size, offset size, format (1 = custom), the
  compression (an integer level before 1.15, an algorithm byte from 1.15), the time stamp
  (7 integers), the database name, the server's and pg_dump's versions;
- TOC: a count, then per entry: dump id, has-dumper flag, table oid, oid, tag, desc,
  section, definition, drop statement, copy statement, namespace, tablespace, table access
  method (1.14+), relkind (an integer, 1.16+), owner, "false" (the old WITH OIDS), the
  dependencies (strings, ended by NULL), and the data offset (a state byte: 1 not set,
  2 set, 3 no data; then ``off_size`` bytes);
- data: per entry with data, in TOC order, a block type byte (1 table data, 3 large
  objects), the dump id, then chunks (length, bytes) ended by a zero length (large
  objects: per object its oid and its chunks, ended by oid 0). ``-Z0`` writes one chunk
  per COPY row: no chunk is read on its own, blocks go out in pieces of the read buffer.
"""

# The archive's pieces live in _pgarchive/toc.py; this module's names of before stay importable from here.
# pylint: disable=unused-import
from ._pgarchive.toc import (BLK_BLOBS, BLK_DATA, COMMON, FORMAT_CUSTOM, MAGIC, MAX_STRING,  # noqa: F401
                             MAX_VERSION, MIN_VERSION, OFFSET_NO_DATA, OFFSET_POS_NOT_SET, OFFSET_POS_SET, READ_SIZE,
                             ArchiveError, Entry, _Fields, _truncated, decode_int, encode_int)
from ._pgarchive.toc import fast_entry as _fast_entry, read_entry as _read_entry
# pylint: enable=unused-import


class _Stream(object):
    """Buffered reads from a pipe: ``buf[pos:]`` is read but not consumed yet."""

    def __init__(self, raw):
        self.raw = raw
        self.buf = b""
        self.pos = 0

    def fill(self):
        """Read more after what is buffered; False at the end of the stream."""
        data = self.raw.read(READ_SIZE)
        if not data:
            return False
        rest = self.buf[self.pos:]
        self.buf = rest + data if rest else data
        self.pos = 0
        return True

    def take(self, n, what="in the middle of a record"):
        pos = self.pos
        if pos + n <= len(self.buf):
            self.pos = pos + n
            return self.buf[pos:pos + n]
        parts = [self.buf[pos:]]
        have = len(parts[0])
        while have < n:
            data = self.raw.read(max(READ_SIZE, n - have))
            if not data:
                raise _truncated(what)
            parts.append(data)
            have += len(data)
        self.buf = b"".join(parts)
        self.pos = n
        return self.buf[:n]

    def at_eof(self):
        return self.pos >= len(self.buf) and not self.fill()


class Head(object):
    """The header and TOC of an archive; ``stream`` goes on with its data blocks."""

    def __init__(self):
        self.version = self.int_size = self.off_size = self.compression = None
        self.dbname = self.server_version = self.dump_version = None
        self.raw = b""
        self.entries = []
        self.stream = None

    def data_entries(self):
        """The entries whose data blocks follow the TOC, in stream order (TOC order)."""
        return [e for e in self.entries if e.has_data()]


def read_head(reader):
    """Read the header and the TOC of a custom-format archive from ``reader`` (a pipe: only ``read(n)``).

    Reads ahead: what follows the TOC stays buffered in ``head.stream``, which a ``Splitter``
    goes on with.
    """
    stream = _Stream(reader)
    head = Head()
    head.stream = stream
    f = _Fields(stream)
    magic = stream.take(len(MAGIC), "before its header (an empty stream: did pg_dump fail?)")
    f.parts.append(magic)
    if magic != MAGIC:
        raise ArchiveError("The stream is not a pg_dump custom-format archive (it starts with %r, not PGDMP): "
                           "use pg_dump --format=custom." % magic)
    version = (f.byte(), f.byte(), f.byte())
    head.version = version
    if not MIN_VERSION <= version[:2] <= MAX_VERSION:
        raise ArchiveError("pg_dump archive version %d.%d is not supported here (%d.%d to %d.%d): use a pg_dump of "
                           "PostgreSQL 10 to 18." % (version[:2] + MIN_VERSION + MAX_VERSION))
    head.int_size = f.int_size = f.byte()
    head.off_size = f.byte()
    if not 1 <= head.int_size <= 32 or not 1 <= head.off_size <= 32:
        raise ArchiveError("The pg_dump archive's integer and offset sizes (%d, %d) are not valid."
                           % (head.int_size, head.off_size))
    fmt = f.byte()
    if fmt != FORMAT_CUSTOM:
        raise ArchiveError("The pg_dump archive is not in the custom format (format %d): use --format=custom." % fmt)
    head.compression = f.byte() if version[:2] >= (1, 15) else f.int()
    if head.compression != 0:
        raise ArchiveError("The pg_dump archive is compressed (%s %d): only an archive dumped with --compress=0 can be "
                           "split (lifeboat compresses each split archive with zstd afterwards)."
                           % ("algorithm" if version[:2] >= (1, 15) else "level", head.compression))
    for _field in range(7):  # the time stamp
        f.int()
    head.dbname = f.str()
    head.server_version = f.str()
    head.dump_version = f.str()
    head.raw = f.record()
    count = f.int()
    f.record()
    if not 0 <= count <= 50000000:
        raise ArchiveError("The pg_dump archive's table of contents claims %d entries: not a valid archive." % count)
    seen = set()
    for _index in range(count):
        e, f.codec = _fast_entry(stream, version, head.int_size, head.off_size, f.codec)
        if e is None:  # it does not end in what is buffered: field by field, reading on
            e = _read_entry(f, version, head.off_size, stream)
        if e.dump_id in seen or e.dump_id <= 0:
            raise ArchiveError("Dump id %d appears twice (or is not positive) in the pg_dump archive's table of "
                               "contents: a corrupt archive." % e.dump_id)
        seen.add(e.dump_id)
        head.entries.append(e)
    return head


def owners(entries, schemas):
    """{dump_id: the schema of ``schemas`` the entry belongs to, "" for an entry every split archive
    holds, or None}.

    An entry with a namespace belongs to it; a SCHEMA entry to its tag; ENCODING, STDSTRINGS,
    SEARCHPATH, DATABASE and DATABASE PROPERTIES are common (""); an entry with no namespace
    (the COMMENT, ACL, SECURITY LABEL of a schema or of the database) goes where the entries it
    depends on go.
    """
    schemas = set(schemas)
    by_id = dict((e.dump_id, e) for e in entries)
    out = {}
    for e in entries:
        if e.desc in COMMON:
            out[e.dump_id] = ""
        elif e.namespace:
            out[e.dump_id] = e.namespace if e.namespace in schemas else None
        elif e.desc == "SCHEMA":
            out[e.dump_id] = e.tag if e.tag in schemas else None

    def follow(dump_id, path):
        if dump_id in out:
            return out[dump_id]
        e = by_id.get(dump_id)
        if e is None or dump_id in path:
            return None
        path.add(dump_id)
        found = set(follow(d, path) for d in e.deps) - set([None])
        named = found - set([""])
        out[dump_id] = named.pop() if len(named) == 1 else ("" if found == set([""]) else None)
        return out[dump_id]

    for e in entries:
        follow(e.dump_id, set())
    return out


def interleaved(entries, owner_of, wanted=None):
    """The schemas (of ``wanted``, or all) whose data blocks are not contiguous in the stream
    relative to each other's: data blocks come in TOC order, so this is known before any data is
    read. Blocks of no wanted schema between them do not count: they are skipped."""
    spans = {}
    for index, e in enumerate(e for e in entries if e.has_data()):
        schema = owner_of.get(e.dump_id)
        if schema and (wanted is None or schema in wanted):
            spans[schema] = (spans[schema][0], index) if schema in spans else (index, index)
    out = set()
    holder, reach = None, -1  # the span seen so far that reaches furthest
    for schema, (first, last) in sorted(spans.items(), key=lambda item: item[1]):
        if first < reach:
            out.update((schema, holder))
        if last > reach:
            holder, reach = schema, last
    return out


def split_prefix(head, by_owner, schema):
    """The header and TOC of the archive of ``schema``: its entries and the common ones, in dump order.

    ``by_owner`` is ``entries_by_owner``'s index, made once per archive: no walk over every entry
    for each schema, which a group of hundreds of schemas would pay hundreds of times.
    """
    picked = [e for _i, e in sorted(by_owner.get("", []) + by_owner.get(schema, []), key=lambda ie: ie[0])]
    return b"".join([head.raw, encode_int(len(picked), head.int_size)]
                    + [e.split_raw(head.off_size) for e in picked])


def entries_by_owner(entries, owner_of):
    """{owner: [(position in the TOC, entry)]}, owner "" for the entries every split archive holds."""
    out = {}
    for i, e in enumerate(entries):
        out.setdefault(owner_of.get(e.dump_id), []).append((i, e))
    return out


class Splitter(object):
    """One pull reader per wanted schema, in stream order, from the stream ``read_head`` read.

    ``outputs()`` yields ``(schema, reader)``; each reader's ``read(n)`` gives the schema's
    archive (header and TOC, then its data blocks as they stream past) and ``b""`` at its end,
    and must be read to that end (or ``skip()``-ed) before the next is asked for. ``drain()``
    then reads the rest of the stream (blocks of no wanted schema) and checks it ended well.
    """

    def __init__(self, reader, head, owner_of, wanted=None):
        if reader is not None and reader is not head.stream.raw:
            raise ArchiveError("The splitter must go on with the stream read_head read (it read ahead).")
        self.head = head
        self.stream = head.stream
        self.owner_of = owner_of
        if wanted is None:
            wanted = sorted(set(v for v in owner_of.values() if v))
        self.wanted = list(wanted)
        self.hs = 1 + head.int_size
        self._data = head.data_entries()
        self._by_owner = entries_by_owner(head.entries, owner_of)
        self._next = 0  # index in self._data of the next block in the stream
        self._kind = None  # the type and entry of the block being read
        self._entry = None
        self.current = None
        self._order = []
        present = set(owner_of.get(e.dump_id) for e in head.entries)
        missing = [s for s in self.wanted if s not in present]
        if missing:
            raise ArchiveError("Schema(s) %s are not in the pg_dump archive (was the dump made with -n for them?)."
                               % ", ".join(repr(s) for s in missing))
        mixed = interleaved(head.entries, owner_of, set(self.wanted))
        if mixed:
            raise ArchiveError("The data blocks of schemas %s interleave in the pg_dump stream: back them up "
                               "separately (pgarchive.interleaved tells which before any data is read)."
                               % ", ".join(repr(s) for s in sorted(mixed)))

    def outputs(self):
        """An iterator of (schema, reader) in stream order (schemas with no data first); it refuses to
        go on, and stays usable, while the current archive is not read to its end."""
        first = {}
        for index, e in enumerate(self._data):
            first.setdefault(self.owner_of.get(e.dump_id), index)
        self._order = sorted(self.wanted, key=lambda s: first.get(s, -1))
        return self

    def __iter__(self):
        return self

    def __next__(self):
        self._check_done()
        if not self._order:
            raise StopIteration
        schema = self._order[0]
        count = sum(1 for _i, e in self._by_owner.get(schema, []) if e.has_data())
        self.current = _Output(schema, self._pieces(schema, count), self)
        self._order.pop(0)
        return schema, self.current

    def drain(self):
        """Read the rest of the stream (blocks of no wanted schema) and check that it ended where it should."""
        self._check_done()
        while self._block_header(at_end_ok=True) is not None:
            for _piece in self._block_body():
                pass

    def _check_done(self):
        if self.current is not None and not self.current.at_end():
            raise ArchiveError("The archive of schema %r was not read to its end before the next one was asked for "
                               "(read each split archive until read() returns b'', or skip() it)."
                               % self.current.schema)

    def _pieces(self, schema, count):
        yield split_prefix(self.head, self._by_owner, schema)
        while count:
            e, header = self._block_header()
            if self.owner_of.get(e.dump_id) == schema:
                count -= 1
                yield header
                yield from self._block_body()
            else:
                for _piece in self._block_body():
                    pass

    def _block_header(self, at_end_ok=False):
        """(entry, raw bytes) of the next data block, which must be the next entry with data in TOC order."""
        st = self.stream
        expected = self._data[self._next] if self._next < len(self._data) else None
        if st.at_eof():
            if expected is None and at_end_ok:
                return None
            raise _truncated("before the data of dump id %d" % expected.dump_id if expected else "early")
        raw = st.take(self.hs + 1, "inside a data block header")
        kind, dump_id = raw[0], decode_int(raw[1:])
        if kind not in (BLK_DATA, BLK_BLOBS):
            raise ArchiveError("Unknown data block type %d (dump id %d) in the pg_dump archive: a corrupt archive, or "
                               "a format this module does not know." % (kind, dump_id))
        if expected is None or dump_id != expected.dump_id:
            raise ArchiveError("The pg_dump archive holds a data block for dump id %d where %s: its blocks are not in "
                               "the order of its table of contents (a parallel or edited dump?)."
                               % (dump_id, "the data ended" if expected is None else
                                  "dump id %d was expected" % expected.dump_id))
        self._next += 1
        self._kind, self._entry = kind, expected
        return expected, raw

    def _block_body(self):
        """The rest of the block whose header was just read, in pieces, up to and including its end marker."""
        if self._kind == BLK_DATA:
            yield from self._text_chunks() if self._entry.desc == "TABLE DATA" else self._chunks()
            return
        while True:  # large objects: (oid, chunks) until oid 0
            oid = self.stream.take(self.hs, "inside a large object block")
            yield oid
            if decode_int(oid) == 0:
                return
            yield from self._chunks()

    def _text_chunks(self):
        """The chunks of a TABLE DATA block, found by searching for its end instead of walking them.

        Their bytes are COPY text (or INSERT statements): never a zero byte. A chunk header has a
        non-zero length, so ``hs`` zero bytes in a row are in no chunk header and, with no zero
        byte in the chunks around them, nowhere but in the zero-length end marker: the first
        such run from the block's first chunk header is its end. It is checked: the next block's
        header (type and dump id) must follow, or for the last block the end of the stream; a
        run that is not followed by the next block's header is data after all.
        """
        st, hs = self.stream, self.hs
        following = self._data[self._next] if self._next < len(self._data) else None
        marker = bytes(hs)
        next_id = None if following is None else encode_int(following.dump_id, self.head.int_size)
        search = st.pos
        while True:
            buf, start = st.buf, st.pos
            q = buf.find(marker, search)
            after = q + hs
            if q < 0:
                cut = len(buf)
                while cut > start and cut > len(buf) - hs + 1 and not buf[cut - 1]:
                    cut -= 1  # keep the zero bytes a marker may start with
            elif following is None:
                if len(buf) > after:
                    e = self._entry
                    raise ArchiveError("The pg_dump archive goes on after the end of its last data block (dump id "
                                       "%d, %s %s.%s): bytes after the archive's end, or zero bytes in that block "
                                       "(not COPY text); not an archive this module can split."
                                       % (e.dump_id, e.desc, e.namespace, e.tag))
                cut = q
            elif len(buf) - after < 1 + hs:
                cut = q  # the marker is buffered, not yet what follows it
            elif buf[after] in (BLK_DATA, BLK_BLOBS) and buf[after + 1:after + 1 + hs] == next_id:
                st.pos = after
                yield memoryview(buf)[start:after]
                return
            else:
                search = q + 1  # zero bytes in the data after all: look further
                continue
            if cut > start:
                st.pos = cut
                yield memoryview(buf)[start:cut]
            if not st.fill():
                if q < 0 or following is not None:
                    raise _truncated("inside the data block of dump id %d" % self._entry.dump_id)
                st.pos = len(buf)
                yield memoryview(buf)[q:]
                return
            search = 0

    def _chunks(self):
        """Chunks (length, bytes) up to and including their zero-length end marker, walked in the read
        buffer: every complete piece goes out at once, a chunk longer than the buffer as it arrives."""
        st, hs = self.stream, self.hs
        left = 0  # bytes of a chunk still to come
        while True:
            buf, start = st.buf, st.pos
            end = len(buf)
            p = min(end, start + left)
            left -= p - start
            while not left and p + hs <= end:
                n = decode_int(buf[p:p + hs])
                if n <= 0:
                    if n < 0:
                        raise ArchiveError("A negative chunk length in a data block of the pg_dump archive: a corrupt "
                                           "archive.")
                    st.pos = p + hs
                    yield memoryview(buf)[start:p + hs]
                    return
                p += hs + n
                if p > end:
                    left, p = p - end, end
            if p > start:
                st.pos = p
                yield memoryview(buf)[start:p]
            if not st.fill():
                raise _truncated("inside a data block")


class _Output(object):
    """The archive of one schema, read like a file (``read(n)``); ``b""`` at its end."""

    def __init__(self, schema, pieces, splitter):
        self.schema = schema
        self._pieces = pieces
        self._piece = b""
        self._off = 0
        self._splitter = splitter

    def readable(self):
        return True

    def _advance(self):
        """False at the end: no byte left in this archive."""
        while self._off >= len(self._piece):
            if self._pieces is None:
                return False
            try:
                self._piece, self._off = next(self._pieces), 0
            except StopIteration:
                self._pieces, self._piece, self._off = None, b"", 0
                return False
        return True

    def at_end(self):
        return not self._advance()

    def read(self, size=-1):
        if self._splitter.current is not self:
            raise ArchiveError("The archive of schema %r was read after the next one was asked for: read each split "
                               "archive in turn." % self.schema)
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_SIZE), b""))
        if not size or not self._advance():
            return b""
        piece, off = self._piece, self._off
        if not off and size >= len(piece) and isinstance(piece, bytes):
            out = piece
        else:
            out = bytes(piece[off:off + size])
        self._off = off + len(out)
        return out

    def skip(self):
        """Read this archive to its end without handing it out (blocks are still checked)."""
        while self._advance():
            self._off = len(self._piece)
