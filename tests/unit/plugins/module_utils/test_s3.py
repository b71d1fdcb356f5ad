"""Pure logic of S3 repositories: part sizes, URLs, error descriptions, the retry policy,
options and the private lock folder. The server itself is exercised in tests/integration."""

import os

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, NoCredentialsError

from lifeboat_engine import repository, s3
from lifeboat_engine.errors import LifeboatError

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


# -- parts -------------------------------------------------------------------------------

def parts_for(size, minimum=s3.MIN_PART_SIZE):
    """(number of parts, largest part) the writer uses for an artifact of ``size`` bytes."""
    n, left, largest = 0, size, 0
    while left > 0:
        n += 1
        part = s3.part_size_for(n, minimum)
        largest = max(largest, min(part, left))
        left -= part
    return n, largest


def test_ten_thousand_parts_hold_five_tebibytes():
    sizes = [s3.part_size_for(n) for n in range(1, s3.S3_MAX_PARTS + 1)]
    assert sum(sizes) == s3.schedule_capacity() >= s3.S3_MAX_OBJECT
    assert sizes == sorted(sizes) and sizes[0] == 8 * MiB and max(sizes) <= s3.S3_MAX_PART
    assert all(size >= s3.S3_MIN_PART for size in sizes)
    # with the smallest part S3 allows the schedule still reaches 5 TiB
    assert s3.schedule_capacity(s3.S3_MIN_PART) >= s3.S3_MAX_OBJECT


@pytest.mark.parametrize("size,max_parts,max_part", [
    (10 * MiB, 2, 8 * MiB),
    (700 * MiB, 88, 8 * MiB),
    (1 * 10 ** 9, 109, 19 * MiB),
    (100 * 10 ** 9, 1295, 140 * MiB),
    (1 * 10 ** 12, 4142, 459 * MiB),
    (5 * TiB, 9741, 1075 * MiB),
])
def test_small_artifacts_use_small_parts(size, max_parts, max_part):
    n, largest = parts_for(size)
    assert n <= max_parts and largest <= max_part, (n, largest / MiB)


# -- URLs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,bucket,prefix", [
    ("s3://backups", "backups", ""),
    ("s3://backups/", "backups", ""),
    ("s3://backups/lifeboat", "backups", "lifeboat/"),
    ("s3://backups//team/lifeboat/", "backups", "team/lifeboat/"),
    ("s3://my.bucket-1/a", "my.bucket-1", "a/"),
])
def test_urls(spec, bucket, prefix):
    assert s3.parse_url(spec) == (bucket, prefix)


@pytest.mark.parametrize("spec", ["s3://", "s3://Backups/x", "s3://ab/x", "s3://a..b/x", "s3://bucket/../x",
                                  "s3://bucket/a/./b", "s3://under_score/x", "s3://bucket/" + "p" * 600])
def test_bad_urls_name_the_repository_option(spec):
    with pytest.raises(LifeboatError) as e:
        s3.parse_url(spec)
    assert e.value.option == "repository"


# -- errors --------------------------------------------------------------------------------

def client_error(code, status, message="msg", headers=None):
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "PutObject")


@pytest.mark.parametrize("error,option,words", [
    (client_error("NoSuchBucket", 404), "repository", "NoSuchBucket"),
    (client_error("AccessDenied", 403), "s3_access_key", "s3:PutObject"),
    (client_error("InvalidAccessKeyId", 403), "s3_access_key", "InvalidAccessKeyId"),
    (client_error("SignatureDoesNotMatch", 403), "s3_secret_key", "SignatureDoesNotMatch"),
    (client_error("ExpiredToken", 400), "s3_session_token", "ExpiredToken"),
    (client_error("InvalidStorageClass", 400), "storage_class", "InvalidStorageClass"),
    (client_error("KMS.NotFoundException", 400), "sse_kms_key_id", "KMS.NotFoundException"),
    (client_error("KMS.SomethingNew", 400), "sse_kms_key_id", "KMS.SomethingNew"),
    (client_error("301", 301, headers={"x-amz-bucket-region": "eu-west-3"}), "s3_region", "s3_region: eu-west-3"),
    (client_error("SlowDown", 503), None, "throttling"),
    (NoCredentialsError(), "s3_access_key", "credential chain"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "s3_endpoint_url", "cannot connect"),
    (ConnectionClosedError(endpoint_url="http://x"), "s3_endpoint_url", "broke or timed out"),
])
def test_errors_name_the_aws_code_and_the_option(error, option, words):
    err = s3.describe(error, "Uploading s3://b/k", "http://127.0.0.1:9")
    assert err.option == option and words in str(err) and str(err).startswith("Uploading s3://b/k failed"), str(err)


@pytest.mark.parametrize("error,transient", [
    (client_error("SlowDown", 503), True),
    (client_error("InternalError", 500), True),
    (client_error("RequestTimeout", 400), True),
    (client_error("Whatever", 502), True),
    (client_error("TooManyRequests", 429), True),
    (client_error("AccessDenied", 403), False),
    (client_error("NoSuchUpload", 404), False),
    (client_error("PreconditionFailed", 412), False),
    (ConnectionClosedError(endpoint_url="http://x"), True),
    (EndpointConnectionError(endpoint_url="http://x"), True),
    (NoCredentialsError(), False),
    (ValueError("x"), False),
])
def test_transient_errors(error, transient):
    assert s3.is_transient(error) is transient


class Flaky(object):
    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_retry_backs_off_with_jitter_then_succeeds():
    sleeps = []
    retry = s3.Retry(attempts=4, base=0.5, cap=20, sleep=sleeps.append)
    fn = Flaky([ConnectionClosedError(endpoint_url="http://x"), client_error("SlowDown", 503)])
    assert retry.call(fn, "Doing") == "done" and fn.calls == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_retry_gives_up_with_the_count_and_does_not_retry_permanent_errors():
    retry = s3.Retry(attempts=3, sleep=lambda s: None)
    fn = Flaky([client_error("SlowDown", 503)] * 5)
    with pytest.raises(LifeboatError) as e:
        retry.call(fn, "Uploading part 1")
    assert fn.calls == 3 and "gave up after 3 attempts" in str(e.value) and "SlowDown" in str(e.value)
    assert e.value.details["attempts"] == 3 and e.value.details["aws_error_code"] == "SlowDown"
    fn = Flaky([client_error("AccessDenied", 403)])
    with pytest.raises(LifeboatError) as e:
        retry.call(fn, "Uploading")
    assert fn.calls == 1 and "gave up" not in str(e.value)


def test_backoff_is_capped():
    retry = s3.Retry(base=1, cap=3)
    assert all(0 <= retry.delay(n) <= 3 for n in range(20))


# -- options -----------------------------------------------------------------------------------

def open_s3(**kw):
    kw.setdefault("s3_endpoint_url", "http://127.0.0.1:9")
    return repository.open_repository("s3://bucket/pre", **kw)


@pytest.mark.parametrize("kw,option", [
    (dict(storage_class="GLACIER"), "storage_class"),
    (dict(sse="aws:kms2"), "sse"),
    (dict(sse="AES256", sse_kms_key_id="k"), "sse"),
    (dict(s3_access_key="AKIA"), "s3_secret_key"),
    (dict(s3_secret_key="x"), "s3_access_key"),
    (dict(s3_access_key="a", s3_secret_key="b", s3_endpoint_url="127.0.0.1:9000"), "s3_endpoint_url"),
])
def test_bad_options_are_refused_before_any_request(kw, option):
    with pytest.raises(LifeboatError) as e:
        open_s3(**kw)
    assert e.value.option == option, str(e.value)


def test_unknown_options_are_refused():
    with pytest.raises(TypeError):
        open_s3(s3_bucket="x")


def test_names_and_upload_arguments():
    repo = open_s3(storage_class="STANDARD_IA", sse="aws:kms", sse_kms_key_id="alias/k")
    assert str(repo) == "s3://bucket/pre" and repo.kind == "s3"
    assert repo.location("acme", "acme-20260101T000000Z.sqlite") == "s3://bucket/pre/acme/acme-20260101T000000Z.sqlite"
    assert repo.put_args("acme-20260101T000000Z.pgdump.zst.age") == {
        "StorageClass": "STANDARD_IA", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}
    assert repo.put_args("acme-20260101T000000Z.manifest.json") == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}
    for tenant, name in (("../x", "n"), ("Acme", "n"), ("acme", "a/b"), ("acme", ".."), ("acme", "")):
        with pytest.raises(LifeboatError):
            repo.key(tenant, name)


def test_locks_are_per_endpoint_bucket_prefix_and_tenant(tmp_path):
    a = open_s3(lock_dir=str(tmp_path))
    assert a.lock_path("acme") != a.lock_path("beta")
    assert a.lock_path("acme") != open_s3(lock_dir=str(tmp_path), s3_endpoint_url="http://127.0.0.1:10").lock_path("acme")
    other_prefix = repository.open_repository("s3://bucket/other", s3_endpoint_url="http://127.0.0.1:9",
                                              lock_dir=str(tmp_path))
    assert a.lock_path("acme") != other_prefix.lock_path("acme")
    with a.lock("acme", "backup of tenant acme"):
        assert a.lock_holder("acme")["operation"] == "backup of tenant acme"
    assert a.lock_holder("acme") is None


@pytest.mark.parametrize("setup,words", [
    (lambda p: os.symlink("/tmp", p), "not a plain folder"),
    (lambda p: os.mkdir(p, 0o755), "private (0700)"),
])
def test_the_lock_folder_must_be_private(tmp_path, setup, words):
    path = str(tmp_path / "locks")
    setup(path)
    with pytest.raises(LifeboatError) as e:
        open_s3(lock_dir=path).lock("acme", "backup")
    assert words in str(e.value)


def test_the_lock_folder_is_created_private(tmp_path):
    path = tmp_path / "new" / "locks"
    with open_s3(lock_dir=str(path)).lock("acme", "backup"):
        assert (path.stat().st_mode & 0o777) == 0o700
