# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Split one ``pg_dump --format=custom --compress=0`` stream into one archive per schema, as it streams.

The custom format (src/bin/pg_dump/pg_backup_archiver.c and pg_backup_custom.c) is a header,
a table of contents (TOC) and, written to a pipe, the data blocks in TOC order. An archive
for one schema is the same header, a TOC that holds the entries of that schema (and the
entries every archive has: ENCODING, STDSTRINGS, SEARCHPATH), copied byte for byte, and the
data blocks of those entries, copied byte for byte: ``pg_restore`` reads it exactly like a
``pg_dump -n <schema>`` archive, from a file or a pipe. Nothing is decoded beyond what
finding the boundaries needs, and memory stays bounded (one read buffer) whatever the size.

Layout (integers are a sign byte and ``int_size`` little-endian bytes; strings an integer
length, -1 for NULL, and the bytes):

- header: ``PGDMP``, version (3 bytes), int size, offset size, format (1 = custom), the
  compression (an integer before 1.15, an algorithm byte from 1.15), the time stamp (7
  integers), the database name, the server's and pg_dump's versions;
- TOC: a count, then per entry: dump id, has-data flag, table oid, oid, tag, description,
  section, definition, drop statement, copy statement, namespace, tablespace, table access
  method (1.14+), relkind (1.16+), owner, "false" (old WITH OIDS), the dependencies (strings,
  NULL-terminated), and the data offset (a flag byte and ``off_size`` bytes);
- data: per entry with data, a block type byte (1 data, 3 large objects), the dump id, then
  chunks (length, bytes) ending with a zero length (large objects: per object an oid and
  its chunks, ending with oid 0).
"""

from .errors import LifeboatError

MAGIC = b"PGDMP"
MIN_VERSION = (1, 12)
MAX_VERSION = (1, 16)
FORMAT_CUSTOM = 1
BLK_DATA = 1
BLK_BLOBS = 3
OFFSET_NO_DATA = 3
READ_SIZE = 1 << 20
COMMON = ("ENCODING", "STDSTRINGS", "SEARCHPATH")


class ArchiveError(LifeboatError):
    pass


class _Stream(object):
    """Buffered reads from a raw pipe, with a count of what was consumed."""

    def __init__(self, raw):
        self.raw = raw
        self.buf = bytearray()
        self.pos = 0

    def _fill(self, n):
        while len(self.buf) - self.pos < n:
            data = self.raw.read(READ_SIZE)
            if not data:
                return False
            if self.pos:
                del self.buf[:self.pos]
                self.pos = 0
            self.buf += data
        return True

    def take(self, n):
        if not self._fill(n):
            raise ArchiveError("The pg_dump archive ended in the middle of a record (truncated stream: did pg_dump "
                               "fail?).")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def at_eof(self):
        return not self._fill(1)

    def pass_through(self, n):
        """Up to ``n`` bytes as they are (at least 1), for copying chunk data in big pieces."""
        if not self._fill(1):
            raise ArchiveError("The pg_dump archive ended inside a data block (truncated stream).")
        n = min(n, len(self.buf) - self.pos)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out


class Entry(object):
    __slots__ = ("dump_id", "had_dumper", "tag", "desc", "section", "namespace", "owner", "deps", "data_state",
                 "raw")

    def has_data(self):
        return self.data_state != OFFSET_NO_DATA


class Head(object):
    def __init__(self):
        self.version = None
        self.int_size = None
        self.off_size = None
        self.raw = b""
        self.entries = []
        self.dbname = None


class _Reader(object):
    """Integers and strings of the archive, recording the raw bytes read."""

    def __init__(self, stream, int_size=4):
        self.s = stream
        self.int_size = int_size
        self.record = None

    def byte(self):
        b = self.s.take(1)
        if self.record is not None:
            self.record.append(b)
        return b[0]

    def int(self):
        raw = self.s.take(1 + self.int_size)
        if self.record is not None:
            self.record.append(raw)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str(self):
        n = self.int()
        if n < 0:
            return None
        if n > (64 << 20):
            raise ArchiveError("A string of %d bytes in the pg_dump archive's table of contents: not a valid archive."
                               % n)
        raw = self.s.take(n)
        if self.record is not None:
            self.record.append(raw)
        return raw.decode("utf-8", "replace")


def encode_int(value, int_size):
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def read_head(raw):
    """Read the header and the table of contents of a custom-format archive from ``raw`` (a pipe)."""
    stream = raw if isinstance(raw, _Stream) else _Stream(raw)
    r = _Reader(stream)
    head = Head()
    head.stream = stream
    r.record = parts = []
    magic = stream.take(5)
    parts.append(magic)
    if magic != MAGIC:
        raise ArchiveError("The stream is not a pg_dump custom-format archive (it starts with %r, not PGDMP)." % magic)
    version = (r.byte(), r.byte(), r.byte())
    head.version = version
    if version[:2] < MIN_VERSION or version[:2] > MAX_VERSION:
        raise ArchiveError("pg_dump archive version %d.%d is not supported here (%d.%d to %d.%d): use a pg_dump of "
                           "PostgreSQL 10 to 18." % ((version[0], version[1]) + MIN_VERSION + MAX_VERSION))
    head.int_size = r.int_size = r.byte()
    head.off_size = r.byte()
    if not 1 <= head.int_size <= 8 or not 1 <= head.off_size <= 8:
        raise ArchiveError("The pg_dump archive's integer sizes (%d, %d) are not valid." % (head.int_size, head.off_size))
    fmt = r.byte()
    if fmt != FORMAT_CUSTOM:
        raise ArchiveError("The pg_dump archive is not in the custom format (format %d): use --format=custom." % fmt)
    compression = r.byte() if version[:2] >= (1, 15) else r.int()
    if compression != 0:
        raise ArchiveError("The pg_dump archive is compressed (%r): only an archive dumped with --compress=0 can be "
                           "split (lifeboat compresses with zstd afterwards)." % compression)
    for _field in range(7):  # the time stamp
        r.int()
    head.dbname = r.str()
    r.str()
    r.str()
    head.raw = b"".join(parts)
    count = r.int()
    if count < 0 or count > 10000000:
        raise ArchiveError("The pg_dump archive's table of contents claims %d entries: not a valid archive." % count)
    for _i in range(count):
        r.record = parts = []
        e = Entry()
        e.dump_id = r.int()
        e.had_dumper = bool(r.int())
        r.str()  # table oid
        r.str()  # oid
        e.tag = r.str()
        e.desc = r.str()
        e.section = r.int()
        r.str()  # definition
        r.str()  # drop statement
        r.str()  # copy statement
        e.namespace = r.str()
        r.str()  # tablespace
        if version[:2] >= (1, 14):
            r.str()  # table access method
        if version[:2] >= (1, 16):
            r.int()  # relkind
        e.owner = r.str()
        r.str()  # "false": the old WITH OIDS flag
        e.deps = []
        while True:
            dep = r.str()
            if dep is None:
                break
            try:
                e.deps.append(int(dep))
            except ValueError:
                raise ArchiveError("A dependency %r in the pg_dump archive is not a number." % dep)
        e.data_state = r.byte()
        parts.append(stream.take(head.off_size))  # the offset itself: not set when written to a pipe
        e.raw = b"".join(parts)
        head.entries.append(e)
    r.record = None
    return head


def owners(entries, schemas):
    """{dump_id: schema, or "" for the entries every archive has, or None}: where each entry goes."""
    schemas = set(schemas)
    out = {}
    for e in entries:
        if e.desc in COMMON:
            out[e.dump_id] = ""
        elif e.namespace:
            out[e.dump_id] = e.namespace if e.namespace in schemas else None
        elif e.desc == "SCHEMA":
            out[e.dump_id] = e.tag if e.tag in schemas else None
        else:
            # COMMENT, ACL, SECURITY LABEL on a schema and the like: they follow what they depend on
            found = [out.get(d) for d in e.deps if out.get(d)]
            out[e.dump_id] = found[0] if found and len(set(found)) == 1 else None
    return out


def interleaved(entries, owner_of):
    """Schemas whose data blocks are not contiguous in the stream (data comes in TOC order)."""
    spans = {}
    order = [e for e in entries if e.has_data()]
    for i, e in enumerate(order):
        schema = owner_of.get(e.dump_id)
        if schema:
            first, _last = spans.get(schema, (i, i))
            spans[schema] = (first, i)
    out = set()
    for i, e in enumerate(order):
        schema = owner_of.get(e.dump_id)
        for other, (first, last) in spans.items():
            if other != schema and first < i < last:
                out.add(other)
                if schema:
                    out.add(schema)
    return out


class Splitter(object):
    """One pull reader per wanted schema, in stream order; each must be read to its end before the next."""

    def __init__(self, raw, head, owner_of, wanted):
        self.stream = head.stream
        self.head = head
        self.owner_of = owner_of
        self.wanted = list(wanted)
        self.r = _Reader(self.stream, head.int_size)
        self.current = None

    def archive_prefix(self, schema):
        picked = [e for e in self.head.entries if self.owner_of.get(e.dump_id) in ("", schema)]
        return b"".join([self.head.raw, encode_int(len(picked), self.head.int_size)] + [e.raw for e in picked])

    def outputs(self):
        data_order = [e for e in self.head.entries if e.has_data()]
        first_block = {}
        for i, e in enumerate(data_order):
            schema = self.owner_of.get(e.dump_id)
            if schema in self.wanted and schema not in first_block:
                first_block[schema] = i
        order = sorted(self.wanted, key=lambda s: first_block.get(s, -1))
        for schema in order:
            if self.current is not None and not self.current.done:
                raise ArchiveError("The archive of schema %r was not read to its end before the next one was asked "
                                   "for." % self.current.schema)
            ids = [e.dump_id for e in data_order if self.owner_of.get(e.dump_id) == schema]
            self.current = _Output(self, schema, self.archive_prefix(schema), ids)
            yield schema, self.current

    def block_header(self):
        """(type, dump id, raw bytes) of the next data block, or None at the end of the archive."""
        if self.stream.at_eof():
            return None
        self.r.record = parts = []
        kind = self.r.byte()
        dump_id = self.r.int()
        self.r.record = None
        if kind not in (BLK_DATA, BLK_BLOBS):
            raise ArchiveError("Unknown data block type %d in the pg_dump archive (dump id %d)." % (kind, dump_id))
        return kind, dump_id, b"".join(parts)

    def skip_block(self, kind):
        for _piece in self.block_pieces(kind):
            pass

    def block_pieces(self, kind):
        """The bytes of a block's body after its header, in pieces, up to and including its end marker."""
        if kind == BLK_DATA:
            return self._data_pieces()
        return self._generic_pieces(kind)

    def _data_pieces(self):
        """A data block's chunks, walked in the read buffer: every complete chunk buffered goes out in
        one piece (pg_dump -Z0 writes one chunk per row, so a per-chunk loop would cost per row)."""
        st = self.stream
        hs = 1 + self.head.int_size
        while True:
            if not st._fill(hs):
                raise ArchiveError("The pg_dump archive ended inside a data block (truncated stream).")
            buf, p = st.buf, st.pos
            start, end = p, len(buf)
            while p + hs <= end:
                if buf[p]:
                    raise ArchiveError("A negative chunk length in the pg_dump archive.")
                n = int.from_bytes(buf[p + 1:p + hs], "little")
                if n == 0:
                    st.pos = p + hs
                    yield bytes(buf[start:p + hs])
                    return
                if p + hs + n > end:
                    break
                p += hs + n
            if p > start:
                st.pos = p
                yield bytes(buf[start:p])
                continue
            # one chunk larger than the buffer holds: its header, then its bytes as they come
            header = st.take(hs)
            yield header
            n = int.from_bytes(header[1:], "little")
            if header[0]:
                raise ArchiveError("A negative chunk length in the pg_dump archive.")
            if n == 0:  # the end marker, split across two reads
                return
            while n:
                piece = st.pass_through(n)
                n -= len(piece)
                yield piece

    def _generic_pieces(self, kind):
        int_size = self.head.int_size
        while True:
            if kind == BLK_BLOBS:
                oid_raw = self.stream.take(1 + int_size)
                yield oid_raw
                if int.from_bytes(oid_raw[1:], "little") == 0:
                    return
            while True:
                len_raw = self.stream.take(1 + int_size)
                yield len_raw
                n = int.from_bytes(len_raw[1:], "little")
                if len_raw[0]:
                    raise ArchiveError("A negative chunk length in the pg_dump archive.")
                if n == 0:
                    break
                while n:
                    piece = self.stream.pass_through(n)
                    n -= len(piece)
                    yield piece
            if kind == BLK_DATA:
                return

    def drain(self):
        """Read what is left of the archive (blocks of no wanted schema) to its end."""
        while True:
            header = self.block_header()
            if header is None:
                return
            self.skip_block(header[0])


class _Output(object):
    """The archive of one schema, read like a file."""

    def __init__(self, splitter, schema, prefix, ids):
        self.splitter = splitter
        self.schema = schema
        self.pending = bytearray(prefix)
        self.ids = list(ids)
        self.pieces = None
        self.done = not ids and not prefix

    def _next_block(self):
        sp = self.splitter
        while self.ids:
            header = sp.block_header()
            if header is None:
                raise ArchiveError("The pg_dump archive ended before the data of schema %r (dump id %d)."
                                   % (self.schema, self.ids[0]))
            kind, dump_id, raw = header
            if dump_id == self.ids[0]:
                self.ids.pop(0)
                self.pending += raw
                self.pieces = sp.block_pieces(kind)
                return True
            if sp.owner_of.get(dump_id) == self.schema:
                raise ArchiveError("The data of schema %r came out of order in the pg_dump archive (dump id %d)."
                                   % (self.schema, dump_id))
            sp.skip_block(kind)
        return False

    def read(self, size=-1):
        size = READ_SIZE if size is None or size < 0 else size
        while len(self.pending) < size:
            if self.pieces is not None:
                for piece in self.pieces:
                    self.pending += piece
                    if len(self.pending) >= size:
                        break
                else:
                    self.pieces = None
                continue
            if not self._next_block():
                break
        out = bytes(self.pending[:size])
        del self.pending[:size]
        if not out:
            self.done = True
        return out

    def readable(self):
        return True
