"""Variants of the backup pipeline, to find where its time goes.

Each variant streams ``pg_dump -Fc -Z0`` of a database into a file the way
``pipeline.store`` does, changing one thing:

- ``encrypt: inline``: exactly ``pipeline.store`` (zstd stream_reader with
  ``threads`` workers, pyrage ``encrypt_io`` pulling from it in this thread);
- ``encrypt: process``: zstd in this process, pyrage in a forked child fed
  through a pipe (encryption gets a process, and a GIL, of its own);
- ``encrypt: none``: zstd only (what compression alone costs);
- ``encrypt: buffered``: as inline, with a 1 MiB ``io.BufferedReader`` between zstd and pyrage;
- ``level: null``: no compression (what encryption alone costs).
"""

import os
import subprocess


def _pg_dump(p):
    env = dict(os.environ)
    env.update(p["env"])
    return subprocess.Popen([p["pg_dump"], "-Fc", "-Z0", "-d", p["dbname"]], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, bufsize=0)


def run(E, p):
    from lifeboat_engine import crypto, pipeline

    recipients, _texts = crypto.load_recipients([p["recipient"]]) if p.get("encrypt", "inline") != "none" else ([], [])
    level = p.get("level")
    threads = p.get("threads", 2)
    dump = _pg_dump(p)
    try:
        with open(p["out"], "wb", buffering=0) as sink:
            if p.get("encrypt", "inline") in ("inline", "none"):
                sizes = pipeline.store(dump.stdout, sink, recipients or None, level, threads)
            elif p["encrypt"] == "buffered":
                sizes = _store_buffered(pipeline, dump.stdout, sink, recipients, level, threads)
            else:
                sizes = _store_encrypt_process(pipeline, dump.stdout, sink, recipients, level, threads)
        if dump.wait() != 0:
            raise SystemExit("pg_dump failed")
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    return {"size_raw": sizes["raw"], "size_stored": sizes["stored"]}


def _store_buffered(pipeline, source, sink, recipients, level, threads):
    """As pipeline.store, with a 1 MiB io.BufferedReader between zstd and pyrage: pyrage's 8 KiB reads
    are served from the buffer (C code, no Python), zstd is asked for 1 MiB at a time."""
    import io

    import pyrage
    import zstandard

    counting = pipeline.CountingReader(source)
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True,
                                                            job_size=pipeline.ZSTD_JOB_SIZE if threads else 0)
    reader = zstandard.ZstdCompressor(compression_params=params).stream_reader(
        counting, read_size=pipeline.CHUNK, closefd=False)
    buffered = io.BufferedReader(reader, buffer_size=pipeline.CHUNK)
    out = pipeline.HashingWriter(sink)
    pyrage.encrypt_io(buffered, out, recipients)
    return {"raw": counting.count, "stored": out.count, "sha256": out.sha256.hexdigest()}


def _store_encrypt_process(pipeline, source, sink, recipients, level, threads):
    """zstd here, age in a forked child reading a pipe; the child writes the sink and reports size and hash."""
    import hashlib
    import json

    import pyrage

    r, w = os.pipe()
    rr, rw = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: encrypt the pipe into the sink
        code = 1
        try:
            os.close(w)
            os.close(rr)
            out = pipeline.HashingWriter(sink)
            with os.fdopen(r, "rb", buffering=1 << 20) as src:
                pyrage.encrypt_io(src, out, recipients)
            os.write(rw, json.dumps({"stored": out.count, "sha256": out.sha256.hexdigest()}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(r)
    os.close(rw)
    counting = pipeline.CountingReader(source)
    reader = counting
    if level is not None:
        import zstandard

        reader = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True).stream_reader(
            counting, read_size=pipeline.CHUNK, closefd=False)
    with os.fdopen(w, "wb", buffering=0) as pipe:
        while True:
            chunk = reader.read(pipeline.CHUNK)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[pipe.write(view):]
    _pid, status = os.waitpid(pid, 0)
    report = b""
    while True:
        part = os.read(rr, 4096)
        if not part:
            break
        report += part
    os.close(rr)
    if status != 0:
        raise SystemExit("the encrypting child failed")
    sizes = json.loads(report.decode())
    sizes["raw"] = counting.count
    hashlib  # noqa: B018 (hash computed in the child)
    return sizes
