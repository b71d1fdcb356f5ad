# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pieces of a custom-format archive that ``pgarchive`` reads: its constants, its integers,
and the entries of its table of contents (layout: the docstring of pgarchive.py).

``fast_entry`` parses an entry straight from the read buffer; ``read_entry`` field by field,
reading on, for an entry that goes on past the buffer.
"""

import codecs
import struct

from ..errors import LifeboatError

MAGIC = b"PGDMP"
MIN_VERSION = (1, 12)
MAX_VERSION = (1, 16)
FORMAT_CUSTOM = 1
BLK_DATA = 1
BLK_BLOBS = 3
OFFSET_POS_NOT_SET = 1
OFFSET_POS_SET = 2
OFFSET_NO_DATA = 3
READ_SIZE = 1 << 20
MAX_STRING = 64 << 20
# Entries pg_dump writes into every archive, whatever -n says; their comment, ACL and
# security label (no namespace, a dependency on DATABASE) follow them.
COMMON = ("ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "DATABASE PROPERTIES")
_CODECS = {"UTF8": "utf-8", "SQL_ASCII": "latin-1", "MULE_INTERNAL": "latin-1", "KOI8R": "koi8_r", "KOI8U": "koi8_u"}


class ArchiveError(LifeboatError):
    """The stream is not an archive this module can split, or it broke off."""


def encode_int(value, int_size):
    """An archive integer: a sign byte, then ``int_size`` little-endian bytes of the magnitude."""
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def decode_int(raw):
    value = int.from_bytes(raw[1:], "little")
    return -value if raw[0] else value


def _truncated(what):
    return ArchiveError("The pg_dump archive ended %s (a truncated stream: did pg_dump fail or get killed?)." % what)


class Entry(object):
    """One TOC entry: what splitting needs, and ``raw``, its exact bytes in the archive."""

    __slots__ = ("dump_id", "had_dumper", "tag", "desc", "section", "namespace", "owner", "deps", "data_state",
                 "raw")

    def has_data(self):
        return self.data_state != OFFSET_NO_DATA

    def split_raw(self, off_size):
        """``raw`` for a split archive: a data offset pg_dump recorded (seekable output) no longer
        holds there, so it becomes "not set" and pg_restore finds the block by reading on."""
        if self.data_state != OFFSET_POS_SET:
            return self.raw
        return self.raw[:-(1 + off_size)] + bytes([OFFSET_POS_NOT_SET]) + bytes(off_size)


class _Fields(object):
    """The archive's integers and strings, each recorded as read into ``parts``."""

    def __init__(self, stream, int_size=4):
        self.s = stream
        self.int_size = int_size
        self.parts = []
        self.codec = "utf-8"

    def byte(self):
        self.parts.append(self.s.take(1))
        return self.parts[-1][0]

    def int(self):
        raw = self.s.take(1 + self.int_size)
        self.parts.append(raw)
        return decode_int(raw)

    def bytes(self):
        n = self.int()
        if n < 0:
            return None
        if n > MAX_STRING:
            raise ArchiveError("A string of %d bytes in the pg_dump archive's table of contents: not a valid archive, "
                               "or not one this module can split." % n)
        self.parts.append(self.s.take(n))
        return self.parts[-1]

    def str(self):
        raw = self.bytes()
        return None if raw is None else raw.decode(self.codec, "replace")

    def record(self):
        out = b"".join(self.parts)
        self.parts = []
        return out


def _codec(defn):
    """The Python codec of an ENCODING entry (``SET client_encoding = 'LATIN1';``); names are in it."""
    name = (defn.split("'")[1] if defn and defn.count("'") >= 2 else "UTF8").upper()
    name = _CODECS.get(name, "cp" + name[3:] if name.startswith("WIN") else name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


_SIGNED_INT4 = struct.Struct("<BI")  # an archive integer of 4 bytes: sign byte, magnitude


class _Short(Exception):
    """The entry goes on past what is buffered."""


def fast_entry(stream, version, int_size, off_size, codec):
    """(the next TOC entry, the codec of the entries after it), parsed straight from the stream's
    buffer; (None, codec) with nothing consumed when the entry does not end within it. The same fields and checks as ``_read_entry``, without a copy per field:
    a group's table of contents has thousands of entries, read while the next pg_dump waits."""
    buf, start, end = stream.buf, stream.pos, len(stream.buf)
    isz = 1 + int_size
    fields = []  # (value) of every integer and string, in order; strings as bytes or None

    unpack = _SIGNED_INT4.unpack_from if int_size == 4 else None

    def num(p):
        q = p + isz
        if q > end:
            raise _Short()
        if unpack is not None:
            sign, value = unpack(buf, p)
        else:
            sign, value = buf[p], int.from_bytes(buf[p + 1:q], "little")
        return (-value if sign else value), q

    def string(p):
        n, p = num(p)
        if n < 0:
            return None, p
        if n > MAX_STRING:
            raise ArchiveError("A string of %d bytes in the pg_dump archive's table of contents: not a valid archive, "
                               "or not one this module can split." % n)
        if p + n > end:
            raise _Short()
        return buf[p:p + n], p + n

    try:
        p = start
        dump_id, p = num(p)
        had_dumper, p = num(p)
        for _field in range(2):  # table oid, oid
            _skip, p = string(p)
        for _field in range(2):  # tag, desc
            value, p = string(p)
            fields.append(value)
        section, p = num(p)
        for _field in range(4):  # definition, drop and copy statements, namespace
            value, p = string(p)
            fields.append(value)
        _skip, p = string(p)  # tablespace
        if version[:2] >= (1, 14):
            _skip, p = string(p)  # table access method
        if version[:2] >= (1, 16):
            _skip, p = num(p)  # relkind
        owner, p = string(p)
        _skip, p = string(p)  # "false": WITH OIDS, long gone
        deps = []
        while True:
            dep, p = string(p)
            if dep is None:
                break
            deps.append(dep)
        if p + 1 + off_size > end:
            raise _Short()
        data_state = buf[p]
        p += 1 + off_size
    except _Short:
        return None, codec
    tag, desc, defn, _drop, _copy, namespace = fields
    e = Entry()
    e.dump_id, e.had_dumper, e.section, e.data_state = dump_id, bool(had_dumper), section, data_state
    e.tag = None if tag is None else tag.decode(codec, "replace")
    e.desc = None if desc is None else desc.decode(codec, "replace")
    e.namespace = None if namespace is None else namespace.decode(codec, "replace")
    e.owner = None if owner is None else owner.decode(codec, "replace")
    e.deps = []
    for dep in deps:
        try:
            e.deps.append(int(dep))
        except ValueError:
            raise ArchiveError("A dependency %r of dump id %d in the pg_dump archive is not a number: a corrupt "
                               "archive." % (dep, e.dump_id))
    if e.data_state not in (OFFSET_POS_NOT_SET, OFFSET_POS_SET, OFFSET_NO_DATA):
        raise ArchiveError("Dump id %d has data state %d in the pg_dump archive: a corrupt archive."
                           % (e.dump_id, e.data_state))
    e.raw = buf[start:p]
    stream.pos = p
    if e.desc == "ENCODING":
        codec = _codec(None if defn is None else defn.decode(codec, "replace"))
    return e, codec


def read_entry(f, version, off_size, stream):
    e = Entry()
    e.dump_id = f.int()
    e.had_dumper = bool(f.int())
    f.bytes()  # table oid
    f.bytes()  # oid
    e.tag = f.str()
    e.desc = f.str()
    e.section = f.int()
    defn = f.str()
    f.bytes()  # drop statement
    f.bytes()  # copy statement
    e.namespace = f.str()
    f.bytes()  # tablespace
    if version[:2] >= (1, 14):
        f.bytes()  # table access method
    if version[:2] >= (1, 16):
        f.int()  # relkind
    e.owner = f.str()
    f.bytes()  # "false": WITH OIDS, long gone
    e.deps = []
    while True:
        dep = f.bytes()
        if dep is None:
            break
        try:
            e.deps.append(int(dep))
        except ValueError:
            raise ArchiveError("A dependency %r of dump id %d in the pg_dump archive is not a number: a corrupt "
                               "archive." % (dep, e.dump_id))
    e.data_state = f.byte()
    if e.data_state not in (OFFSET_POS_NOT_SET, OFFSET_POS_SET, OFFSET_NO_DATA):
        raise ArchiveError("Dump id %d has data state %d in the pg_dump archive: a corrupt archive."
                           % (e.dump_id, e.data_state))
    f.parts.append(stream.take(off_size))
    e.raw = f.record()
    if e.desc == "ENCODING":
        f.codec = _codec(defn)
    return e
