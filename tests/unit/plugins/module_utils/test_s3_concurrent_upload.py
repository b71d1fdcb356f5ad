"""Concurrent part uploads of S3Writer: parts complete and in order, bounded memory, failures and aborts that
leave nothing behind and no thread running. An in-memory fake S3 client (thread-safe) for the logic, and one
round trip through a real moto server on 127.0.0.1 (tests/s3server.py)."""

import random
import tempfile
import threading
import time
import types

import pytest
from botocore.exceptions import ClientError

import s3server
from lifeboat_engine import s3
from lifeboat_engine._s3 import upload as s3_upload
from lifeboat_engine.errors import LifeboatError

MiB = 1 << 20
PART = s3.S3_MIN_PART  # 5 MiB parts keep the data of these tests small
NAME = "acme-20260101T000000Z.sqlite"


def client_error(code, status, op="UploadPart"):
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def upload_threads():
    return [t for t in threading.enumerate() if t.name.startswith("lifeboat-s3-upload")]


class FakeS3(object):
    """Multipart uploads in memory. ``on_part(number, attempt)`` may sleep, block or raise; records concurrency."""

    def __init__(self, on_part=None):
        self.meta = types.SimpleNamespace(config=types.SimpleNamespace(request_checksum_calculation="when_required"))
        self.on_part = on_part
        self.lock = threading.Lock()
        self.objects = {}
        self.uploads = {}
        self.calls = []
        self.attempts = {}
        self.running = 0
        self.max_running = 0
        self.part_threads = set()

    def _record(self, op, **kw):
        with self.lock:
            self.calls.append((op, kw))

    def create_multipart_upload(self, Bucket, Key, **kw):
        self._record("create_multipart_upload", Key=Key, **kw)
        with self.lock:
            upload_id = "up%d" % (len(self.uploads) + 1)
            self.uploads[upload_id] = {"key": Key, "parts": {}, "open": True}
        return {"UploadId": upload_id}

    def upload_part(self, Bucket, Key, UploadId, PartNumber, Body):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            attempt = self.attempts[PartNumber] = self.attempts.get(PartNumber, 0) + 1
            self.part_threads.add(threading.current_thread().name)
        try:
            self._record("upload_part", PartNumber=PartNumber)
            chunks = []
            for chunk in iter(lambda: Body.read(256 * 1024), b""):
                chunks.append(bytes(chunk))
            data = b"".join(chunks)
            if self.on_part is not None:
                self.on_part(PartNumber, attempt)
            with self.lock:
                up = self.uploads[UploadId]
                if not up["open"]:
                    raise client_error("NoSuchUpload", 404)
                etag = '"etag-%d-%d"' % (PartNumber, len(data))
                up["parts"][PartNumber] = (etag, data)
            return {"ETag": etag}
        finally:
            with self.lock:
                self.running -= 1

    def complete_multipart_upload(self, Bucket, Key, UploadId, MultipartUpload, **kw):
        self._record("complete_multipart_upload", Key=Key, Parts=MultipartUpload["Parts"], **kw)
        with self.lock:
            up = self.uploads[UploadId]
            numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
            assert numbers == list(range(1, len(numbers) + 1)), numbers  # S3 wants them ascending
            data = []
            for p in MultipartUpload["Parts"]:
                etag, chunk = up["parts"][p["PartNumber"]]
                assert p["ETag"] == etag
                data.append(chunk)
            up["open"] = False
            self.objects[Key] = b"".join(data)
        return {}

    def abort_multipart_upload(self, Bucket, Key, UploadId):
        self._record("abort_multipart_upload", Key=Key)
        with self.lock:
            self.uploads[UploadId]["open"] = False
        return {}

    def put_object(self, Bucket, Key, Body, **kw):
        self._record("put_object", Key=Key, **kw)
        data = b"".join(bytes(c) for c in iter(lambda: Body.read(MiB), b""))
        with self.lock:
            self.objects[Key] = data
        return {}

    def head_object(self, Bucket, Key):
        with self.lock:
            if Key not in self.objects:
                raise client_error("404", 404, "HeadObject")
            return {"ContentLength": len(self.objects[Key]), "Metadata": {}}

    def ops(self, op):
        return [kw for name, kw in self.calls if name == op]


def make_repo(client, tmp_path, concurrency=3, **kw):
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0)
    return s3.S3Repository("s3://bucket/p", client=client, lock_dir=str(tmp_path / "locks"), part_size=PART,
                           upload_concurrency=concurrency, **kw)


def write_in_chunks(writer, data, rng):
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 4096, 65536, 1 << 20, 3 * MiB + 5])
        assert writer.write(view[pos:pos + n]) == len(view[pos:pos + n])
        pos += n


# -- parts complete and in order -------------------------------------------------------------

def throw(error):
    """Raise ``error`` from inside a lambda."""
    raise error


@pytest.mark.parametrize("concurrency", [1, 2, 3])
@pytest.mark.parametrize("size", [PART - 1, PART, PART + 1, 2 * PART, 3 * PART - 1, 4 * PART + 12345, 7 * PART + 1])
def test_the_reassembled_object_equals_the_data(tmp_path, concurrency, size):
    rng = random.Random(size * 10 + concurrency)
    # parts finish out of order: later ones are often faster
    client = FakeS3(on_part=lambda number, attempt: time.sleep(rng.random() * 0.02))
    repo = make_repo(client, tmp_path, concurrency)
    data = rng.randbytes(size)
    writer = repo.new_writer("acme", NAME)
    write_in_chunks(writer, data, random.Random(size))
    assert writer.commit() == "s3://bucket/p/acme/" + NAME
    assert client.objects["p/acme/" + NAME] == data
    if size < PART:
        assert [name for name, _kw in client.calls] == ["put_object"]  # one PutObject, as before
        assert client.ops("put_object")[0]["IfNoneMatch"] == "*"
    else:
        parts = client.ops("complete_multipart_upload")[0]["Parts"]
        assert [p["PartNumber"] for p in parts] == list(range(1, -(-size // PART) + 1))
        assert client.ops("complete_multipart_upload")[0]["IfNoneMatch"] == "*"
        assert len(writer._parts) == len(parts)
    assert upload_threads() == [], "a part upload thread outlived commit"


def test_the_replacing_writer_keeps_its_conditions_with_concurrent_parts(tmp_path):
    client = FakeS3()
    repo = make_repo(client, tmp_path, 3)
    data = random.Random(3).randbytes(3 * PART + 10)
    writer = repo.new_replacing_writer("acme", NAME, if_match='"old"', metadata={"lifeboat-rekey-of": "abc"})
    writer.write(data)
    writer.commit()
    create = client.ops("create_multipart_upload")[0]
    assert create["Metadata"]["lifeboat-rekey-of"] == "abc" and len(create["Metadata"]["lifeboat-upload"]) == 32
    complete = client.ops("complete_multipart_upload")[0]
    assert complete["IfMatch"] == '"old"' and "IfNoneMatch" not in complete
    assert client.objects["p/acme/" + NAME] == data


def test_concurrency_one_uploads_in_the_callers_thread_without_any_pool(tmp_path, monkeypatch):
    def no_pool(*a, **kw):
        raise AssertionError("a thread pool was created with upload_concurrency 1")
    monkeypatch.setattr(s3_upload, "ThreadPoolExecutor", no_pool)
    client = FakeS3()
    repo = make_repo(client, tmp_path, 1)
    data = random.Random(4).randbytes(4 * PART + 3)
    writer = repo.new_writer("acme", NAME)
    before = threading.active_count()
    write_in_chunks(writer, data, random.Random(4))
    assert threading.active_count() == before
    writer.commit()
    assert client.part_threads == {threading.current_thread().name}
    assert client.max_running == 1 and writer.buffers_allocated == 1 and writer.peak_buffered == PART
    assert client.objects["p/acme/" + NAME] == data


@pytest.mark.parametrize("value", [0, 17, True, "2", 2.0, None])
def test_bad_upload_concurrency_is_refused(tmp_path, value):
    with pytest.raises(LifeboatError) as e:
        make_repo(FakeS3(), tmp_path, value)
    assert "upload_concurrency" in str(e.value)


# -- memory -------------------------------------------------------------------------------------

def test_memory_stays_bounded_while_uploads_are_blocked(tmp_path):
    gate = threading.Event()
    client = FakeS3(on_part=lambda number, attempt: gate.wait(30))
    repo = make_repo(client, tmp_path, 3)
    repo.upload_budget = 4 * PART  # three parts uploading plus the one being filled
    data = random.Random(5).randbytes(20 * PART + 1)
    writer = repo.new_writer("acme", NAME)
    producer = threading.Thread(target=lambda: (writer.write(data), writer.commit()))
    producer.start()
    try:
        deadline = time.monotonic() + 10
        while len(client.ops("upload_part")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert producer.is_alive(), "the writer did not wait for room"
        assert len(client.ops("upload_part")) == 3  # no fourth part started while three are in flight
        assert writer.buffers_allocated == 4 and writer.peak_buffered == 4 * PART
    finally:
        gate.set()
        producer.join(30)
    assert not producer.is_alive()
    assert client.objects["p/acme/" + NAME] == data
    assert client.max_running == 3
    assert writer.buffers_allocated == 4 and writer.peak_buffered <= repo.upload_budget  # 21 parts, 4 buffers
    assert upload_threads() == []


@pytest.mark.parametrize("budget,running,buffers", [
    (3 * PART, 2, 3),  # two parts uploading and one filled
    (2 * PART, 1, 2),  # one uploading, one filled
    (2 * PART - 1, 1, 1),  # not even two parts fit: one after the other, as with concurrency 1
])
def test_large_parts_fall_back_towards_one_at_a_time(tmp_path, budget, running, buffers):
    client = FakeS3(on_part=lambda number, attempt: time.sleep(0.01))
    repo = make_repo(client, tmp_path, 3)
    repo.upload_budget = budget
    data = random.Random(6).randbytes(8 * PART + 5)
    writer = repo.new_writer("acme", NAME)
    writer.write(data)
    writer.commit()
    assert client.objects["p/acme/" + NAME] == data
    assert client.max_running == running and writer.buffers_allocated == buffers
    assert writer.peak_buffered <= max(budget, PART)
    if buffers == 1:
        assert client.part_threads == {threading.current_thread().name}


def test_after_a_retried_part_one_part_uploads_at_a_time(tmp_path):
    state = {"after": []}

    def on_part(number, attempt):
        if number == 2 and attempt == 1:
            time.sleep(0.05)
            raise client_error("SlowDown", 503)
        if number > 4:
            state["after"].append(client.running)
        time.sleep(0.01)
    client = FakeS3(on_part=on_part)
    repo = make_repo(client, tmp_path, 3)
    data = random.Random(7).randbytes(12 * PART)
    writer = repo.new_writer("acme", NAME)
    writer.write(data)
    writer.commit()
    assert client.objects["p/acme/" + NAME] == data
    assert client.attempts[2] == 2
    assert state["after"] and max(state["after"]) == 1, state


# -- failures and aborts -------------------------------------------------------------------------

def assert_nothing_left(client, writer):
    assert client.objects == {}, "an object became visible"
    assert len(client.ops("abort_multipart_upload")) == 1
    assert client.ops("complete_multipart_upload") == []
    assert all(not up["open"] for up in client.uploads.values())
    assert upload_threads() == [], "a part upload thread outlived abort"
    assert writer.closed


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_part_failing_for_good_aborts_and_names_the_part(tmp_path, concurrency):
    def on_part(number, attempt):
        if number == 4:
            raise client_error("AccessDenied", 403)
        time.sleep(0.01)
    client = FakeS3(on_part=on_part)
    writer = make_repo(client, tmp_path, concurrency).new_writer("acme", NAME)
    with pytest.raises(LifeboatError) as e:
        write_in_chunks(writer, random.Random(8).randbytes(9 * PART), random.Random(8))
        writer.commit()
    msg = str(e.value)
    assert "Uploading part 4 (%d bytes) of s3://bucket/p/acme/%s failed: AWS error AccessDenied" % (PART, NAME) in msg
    assert e.value.details["aws_error_code"] == "AccessDenied" and writer.failure is e.value
    assert client.attempts[4] == 1  # permanent errors are not retried
    assert_nothing_left(client, writer)
    assert max(client.attempts) <= 4 + concurrency  # the writer stopped soon after


def test_a_transient_failure_gives_up_after_the_retries_and_the_first_failure_is_reported(tmp_path):
    def on_part(number, attempt):
        if number == 2:
            time.sleep(0.3)
            raise client_error("NoSuchUpload", 404)
        if number == 3:
            raise client_error("InternalError", 500)
    client = FakeS3(on_part=on_part)
    writer = make_repo(client, tmp_path, 3).new_writer("acme", NAME)
    with pytest.raises(LifeboatError) as e:
        writer.write(random.Random(9).randbytes(4 * PART))
        writer.commit()
    msg = str(e.value)
    assert msg.startswith("Uploading part 3 (%d bytes)" % PART) and "AWS error InternalError" in msg, msg
    assert "gave up after 3 attempts" in msg and client.attempts[3] == 3
    assert_nothing_left(client, writer)


def test_the_last_part_waits_for_the_others_so_a_failing_first_part_is_tried_alone(tmp_path):
    client = FakeS3(on_part=lambda number, attempt: throw(client_error("InternalError", 500)))
    writer = make_repo(client, tmp_path, 3).new_writer("acme", NAME)
    writer.write(random.Random(10).randbytes(PART + PART // 2))
    with pytest.raises(LifeboatError) as e:
        writer.commit()
    assert "Uploading part 1" in str(e.value) and client.attempts == {1: 3}
    assert_nothing_left(client, writer)


def test_abort_while_parts_are_in_flight_waits_for_them_then_aborts(tmp_path):
    gate = threading.Event()
    client = FakeS3(on_part=lambda number, attempt: gate.wait(30))
    writer = make_repo(client, tmp_path, 3).new_writer("acme", NAME)
    writer.write(random.Random(11).randbytes(3 * PART + 1))
    deadline = time.monotonic() + 10
    while client.running < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.running == 3 and len(upload_threads()) == 3
    threading.Timer(0.2, gate.set).start()
    writer.abort()
    assert client.running == 0  # the parts in flight ended before the upload was aborted
    assert [name for name, _kw in client.calls][-1] == "abort_multipart_upload"
    assert_nothing_left(client, writer)
    writer.abort()  # twice is fine
    with pytest.raises(ValueError):
        writer.write(b"x")


def test_abort_cuts_the_backoff_of_a_retrying_part_short(tmp_path):
    client = FakeS3(on_part=lambda number, attempt: throw(client_error("SlowDown", 503)))
    repo = make_repo(client, tmp_path, 3, retries=5, backoff=30)
    repo.retry.delay = lambda attempt: 30.0  # a long sleep between attempts
    writer = repo.new_writer("acme", NAME)
    writer.write(random.Random(12).randbytes(PART + 1))
    deadline = time.monotonic() + 10
    while not client.attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    t0 = time.monotonic()
    writer.abort()
    assert time.monotonic() - t0 < 5, "abort waited for the backoff"
    assert client.attempts == {1: 1}
    assert_nothing_left(client, writer)


def test_a_caller_failure_aborts_with_parts_in_flight(tmp_path):
    gate = threading.Event()
    client = FakeS3(on_part=lambda number, attempt: gate.wait(30))
    writer = make_repo(client, tmp_path, 3).new_writer("acme", NAME)
    with pytest.raises(RuntimeError):
        try:
            writer.write(random.Random(13).randbytes(2 * PART + 1))
            raise RuntimeError("the dump failed")
        except BaseException:
            threading.Timer(0.1, gate.set).start()
            writer.abort()
            raise
    assert_nothing_left(client, writer)


# -- through a real server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto():
    server = s3server.MotoServer(tempfile.mkdtemp(prefix="lbtest-moto-")).start()
    yield server
    server.stop()


def test_round_trip_through_moto_with_concurrent_parts(moto, tmp_path):
    client = moto.client()
    client.create_bucket(Bucket="concurrent")
    repo = s3.S3Repository("s3://concurrent/p", s3_endpoint_url=moto.endpoint, s3_region=s3server.REGION,
                           s3_access_key=s3server.ACCESS_KEY, s3_secret_key=s3server.SECRET_KEY, part_size=PART,
                           lock_dir=str(tmp_path / "locks"), upload_concurrency=3)
    rng = random.Random(14)
    for i, size in enumerate([4 * PART - 1, 4 * PART, 4 * PART + 1, 6 * PART + rng.randrange(PART)]):
        data = rng.randbytes(size)
        name = "acme-20260101T00000%dZ.sqlite" % i
        writer = repo.new_writer("acme", name)
        write_in_chunks(writer, data, rng)
        writer.commit()
        assert client.get_object(Bucket="concurrent", Key="p/acme/" + name)["Body"].read() == data
        assert client.head_object(Bucket="concurrent", Key="p/acme/" + name)["ETag"].endswith('-%d"' % -(-size // PART))
    assert client.list_multipart_uploads(Bucket="concurrent").get("Uploads", []) == []
    assert upload_threads() == []
