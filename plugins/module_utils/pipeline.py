# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming pipelines: source -> zstd -> age -> sink, and back.

Memory is bounded whatever the size: data moves in chunks of at most a few
MiB. The store path runs in one Python thread: pyrage pulls its 8 KiB reads
from zstandard's C reader (no Python code per read), zstd compresses in its
own worker threads (no GIL), and the source is a separate process (pg_dump),
so compression and encryption overlap with the dump. See TESTING.md on why
no other busy Python thread may run beside pyrage.
"""

import hashlib
import shutil

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

from .crypto import decrypt_stream, encrypt_stream
from .errors import LifeboatError, optional_import, required

zstandard, ZSTD_IMPORT_ERROR = optional_import("zstandard")

CHUNK = 1 << 20
ZSTD_JOB_SIZE = 2 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # Linux


def grow_pipe(fileobj, size=PIPE_SIZE):
    """Give a pipe (a file object or a descriptor) to or from a child (pg_dump, pg_restore, the age
    worker) ``size`` bytes instead of 64 KiB.

    With 64 KiB, pg_dump stops as soon as this process is busy compressing or
    encrypting for a moment, and pg_restore waits on every hand-over: on a
    busy machine each stop costs a scheduling delay. A megabyte lets both
    sides run ahead (docs/PERFORMANCE.md). Best effort: not every system
    allows it, and nothing depends on it.
    """
    if fcntl is None:
        return
    try:
        fcntl.fcntl(fileobj if isinstance(fileobj, int) else fileobj.fileno(), F_SETPIPE_SZ, size)
    except (OSError, ValueError, AttributeError):
        pass


def require_zstandard():
    """zstandard, or MissingDependency: the engine's one check for it."""
    return required(zstandard, "zstandard", "zstandard", ZSTD_IMPORT_ERROR)


def zstd_compressor(level, threads=0):
    """The engine's zstd compressor: checksummed frames at ``level``, ``threads`` workers (0: none).

    Jobs of 2 MiB, not zstd's default of 4 windows (8 MiB at level 3): each worker holds a job's
    input and output, so the default cost ~58 MB of RSS with 2 threads; 2 MiB jobs cost ~16 MB,
    compress to the same size and use less CPU (docs/PERFORMANCE.md).
    """
    zstd = require_zstandard()
    params = zstd.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True,
                                                       job_size=ZSTD_JOB_SIZE if threads else 0)
    return zstd.ZstdCompressor(compression_params=params)


def zstd_decompressor():
    """The engine's zstd decompressor (every reader of a zstd stream gets it here)."""
    return require_zstandard().ZstdDecompressor()


class CountingReader(object):
    """Counts the bytes read from ``raw`` and reports progress."""

    def __init__(self, raw, progress=None, every=CHUNK):
        self.raw = raw
        self.count = 0
        self.progress = progress
        self.every = every
        self._next = every

    def read(self, size=-1):
        data = self.raw.read(size)
        if data:
            self.count += len(data)
            if self.progress is not None and self.count >= self._next:
                self._next = self.count + self.every
                self.progress(self.count)
        return data

    def readable(self):
        return True


class HashingWriter(object):
    """Writes everything to ``sink`` (or drops it when None) while counting and hashing it (unless not ``hashing``)."""

    def __init__(self, sink=None, hashing=True):
        self.sink = sink
        self.count = 0
        self.sha256 = hashlib.sha256() if hashing else None
        self.error = None

    def write(self, data):
        view = memoryview(data)
        if self.sha256 is not None:
            self.sha256.update(view)
        total = len(view)
        while view and self.sink is not None:
            try:
                n = self.sink.write(view)
            except OSError as e:
                self.error = e  # pyrage turns it into a bare message: keep the real one
                raise
            if n is None:
                n = len(view)
            view = view[n:]
        self.count += total
        return total

    def flush(self):
        flush = getattr(self.sink, "flush", None)
        if flush:
            flush()

    def writable(self):
        return True

    def hexdigest(self):
        return self.sha256.hexdigest()


def store(source, sink, recipients=None, compression_level=3, threads=0, progress=None, armored=False):
    """Copy ``source`` to ``sink`` through zstd (unless level is None) and age.

    Returns raw and stored sizes and the SHA-256 of the stored bytes.
    """
    counting = CountingReader(source, progress)
    reader = counting
    if compression_level is not None:
        cctx = zstd_compressor(compression_level, threads)
        reader = cctx.stream_reader(counting, read_size=CHUNK, closefd=False)
    out = HashingWriter(sink)
    if recipients:
        try:
            encrypt_stream(reader, out, recipients, armored=armored)
        except LifeboatError:
            if out.error is not None:
                raise out.error  # e.g. ENOSPC, which the caller explains
            failure = getattr(sink, "failure", None)  # e.g. an S3 upload's own error, with its option
            if failure is not None:
                raise failure
            raise
    else:
        shutil.copyfileobj(reader, out, CHUNK)
    out.flush()
    return {"raw": counting.count, "stored": out.count, "sha256": out.sha256.hexdigest()}


def load(source, sink, identities=None, compressed=True, progress=None):
    """Reverse of store(): ``source`` (stored bytes) -> plaintext into ``sink``.

    Returns the stored size and SHA-256 read, and the plaintext size written.
    On any error ``sink`` holds garbage: callers write into something they can
    throw away (a temp file, a fresh database, a transaction).
    """
    hashed = HashingReader(source, progress)
    plain = CountingWriter(sink)
    target = DecompressingWriter(plain) if compressed else plain
    if identities:
        decrypt_stream(hashed, target, identities)
    else:
        shutil.copyfileobj(hashed, target, CHUNK)
    if compressed:
        target.finish()
    return {"stored": hashed.count, "sha256": hashed.sha256.hexdigest(), "raw": plain.count}


class HashingReader(CountingReader):
    """Counts and (unless not ``hashing``) hashes what is read from ``raw``."""

    def __init__(self, raw, progress=None, hashing=True):
        super(HashingReader, self).__init__(raw, progress)
        self.sha256 = hashlib.sha256() if hashing else None

    def read(self, size=-1):
        data = super(HashingReader, self).read(size)
        if data and self.sha256 is not None:
            self.sha256.update(data)
        return data


class CountingWriter(HashingWriter):
    pass


class DecompressingWriter(object):
    """A writer that zstd-decompresses into ``sink`` and notices truncation."""

    def __init__(self, sink):
        self.sink = sink
        self._obj = zstd_decompressor().decompressobj()

    def write(self, data):
        if self._obj.eof:
            if len(data):
                raise StoredDataError("unexpected data after the end of the zstd frame")
            return 0
        try:
            out = self._obj.decompress(bytes(data))
        except zstandard.ZstdError as e:
            raise StoredDataError("zstd decompression failed (%s)" % e)
        if out:
            self.sink.write(out)
        return len(data)

    def flush(self):
        pass

    def finish(self):
        if not self._obj.eof:
            raise StoredDataError("the zstd stream ends before its end marker: the artifact is truncated")


class StoredDataError(LifeboatError):
    def __init__(self, what):
        super(StoredDataError, self).__init__(
            "The artifact's data is damaged: %s. Do not use this artifact; take another one." % what
        )
