"""S3-compatible stores as they are, without a server: a stubbed client answers as rclone, SeaweedFS or
another store without a feature would (issue 24). 501 NotImplemented is never retried and says the store
does not implement the call; housekeeping (listing and aborting stale uploads, reading versioning) is best
effort and ends as a warning naming the store's answer; the If-Match and If-None-Match probes; s3_lifecycle
per aspect; and a backup to moto whose every housekeeping call is refused still writes a complete,
verifiable artifact. The real stores are exercised in test_s3_compat_rclone.py and
test_s3_compat_seaweedfs.py."""

import datetime

import pytest
from botocore.exceptions import ConnectionClosedError

from lifeboat_engine import agefile, lifecycle, s3
from lifeboat_engine._s3 import probes
from lifeboat_engine.errors import LifeboatError
from s3stub import ScriptedClient, client_error


class StubClient(ScriptedClient):
    """A store that says the same again once its script runs out."""

    repeat_last = True


def repo_with(client, tmp_path, endpoint="http://127.0.0.1:9"):
    return s3.S3Repository("s3://bucket/pg", s3_endpoint_url=endpoint, client=client, retries=4, backoff=0,
                           lock_dir=str(tmp_path / "locks"))


@pytest.fixture(autouse=True)
def fresh_probe_cache():
    probes.forget_probes()
    yield
    probes.forget_probes()


# -- retries -------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [client_error("NotImplemented", 501), client_error("XNotImplemented", 501),
                                   client_error("Whatever", 501), client_error("NotImplemented", 400),
                                   client_error("Unsupported", 400)])
def test_not_implemented_is_not_transient(error):
    assert s3.is_transient(error) is False


@pytest.mark.parametrize("error", [client_error("InternalError", 500), client_error("Whatever", 502),
                                   client_error("SlowDown", 503), client_error("Throttling", 400),
                                   client_error("TooManyRequests", 429), ConnectionClosedError(endpoint_url="http://x")])
def test_what_can_succeed_on_retry_still_is_retried(error):
    assert s3.is_transient(error) is True


def test_a_501_is_tried_once_and_says_the_store_does_not_implement_the_call():
    sleeps, calls = [], []

    def fn():
        calls.append(1)
        raise client_error("NotImplemented", 501, "A header you provided implies functionality that is not "
                                                  "implemented")

    retry = s3.Retry(attempts=5, sleep=sleeps.append)
    with pytest.raises(LifeboatError) as e:
        retry.call(fn, "Writing the public access block of bucket b")
    msg = str(e.value)
    assert len(calls) == 1 and sleeps == []
    assert "NotImplemented" in msg and "HTTP 501" in msg and "does not implement this call" in msg, msg
    assert "try again later" not in msg and "attempts" not in msg and "retried" not in msg.replace("retrying", ""), msg
    assert e.value.details["http_status"] == 501 and "attempts" not in e.value.details


def test_a_500_that_keeps_failing_says_it_was_retried_and_gave_up():
    def fn():
        raise client_error("InternalError", 500)

    retry = s3.Retry(attempts=3, sleep=lambda s: None)
    with pytest.raises(LifeboatError) as e:
        retry.call(fn, "Listing x")
    msg = str(e.value)
    assert "retried and kept failing: try again later" in msg and "gave up after 3 attempts" in msg, msg


def test_a_500_tried_once_does_not_claim_retries():
    msg = str(s3.describe(client_error("InternalError", 500), "Listing x"))
    assert "retried" not in msg and "server-side error" in msg, msg


def test_no_such_upload_in_general_invents_no_abort():
    msg = str(s3.describe(client_error("NoSuchUpload", 404), "Listing the open uploads under s3://b/p/"))
    assert "aborted" not in msg and "NoSuchUpload" in msg and "no multipart upload of that id" in msg, msg


# -- best-effort housekeeping --------------------------------------------------------------

def test_listing_stale_uploads_that_fails_is_a_warning_naming_the_answer(tmp_path):
    client = StubClient(list_multipart_uploads=client_error("NoSuchUpload", 404))
    repo = repo_with(client, tmp_path)
    assert repo.remove_partials("acme") == []
    assert client.count("list_multipart_uploads") == 1  # a 404 is not retried
    assert len(repo.warnings) == 1
    warning = repo.warnings[0]
    assert "Listing the open uploads under s3://bucket/pg/acme/ failed: AWS error NoSuchUpload (HTTP 404" in warning
    assert "were not cleaned up" in warning and "went on" in warning and "aborted meanwhile" not in warning, warning
    repo.remove_partials("acme")
    assert len(repo.warnings) == 1  # said once


@pytest.mark.parametrize("error", [client_error("AccessDenied", 403), client_error("NotImplemented", 501),
                                   client_error("InternalError", 500)])
def test_any_failure_of_the_listing_is_best_effort(tmp_path, error):
    repo = repo_with(StubClient(list_multipart_uploads=error), tmp_path)
    assert repo.remove_partials("acme") == []
    assert repo.warnings and error.response["Error"]["Code"] in repo.warnings[0]


def test_an_abort_that_fails_is_a_warning_and_the_other_uploads_are_still_aborted(tmp_path):
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    page = {"Uploads": [{"Key": "pg/acme/a", "UploadId": "u1", "Initiated": old},
                        {"Key": "pg/acme/b", "UploadId": "u2", "Initiated": old}], "IsTruncated": False}
    client = StubClient(list_multipart_uploads=page,
                        abort_multipart_upload=[client_error("AccessDenied", 403), {}])
    repo = repo_with(client, tmp_path)
    removed = repo.remove_partials("acme")
    assert [r.split(" ")[0] for r in removed] == ["b"]
    assert len(repo.warnings) == 1 and "Aborting the upload of s3://bucket/pg/acme/a failed: AWS error " \
                                       "AccessDenied" in repo.warnings[0]


def test_a_store_without_versioning_calls_reads_as_never_versioned_with_a_warning(tmp_path):
    repo = repo_with(StubClient(get_bucket_versioning=client_error("NotImplemented", 501)), tmp_path)
    assert repo.versioning() is None
    assert len(repo.warnings) == 1 and "NotImplemented" in repo.warnings[0]


def test_a_rekey_without_purge_says_nothing_about_a_store_without_versioning(tmp_path):
    """Without purge_old_versions the rekey reads versioning only to warn about old ciphertext kept in versions."""
    repo = repo_with(StubClient(get_bucket_versioning=client_error("NotImplemented", 501)), tmp_path)
    assert agefile._versioning(repo, purge=False) is None and repo.warnings == []
    assert agefile._versioning(repo, purge=True) is None and len(repo.warnings) == 1


def test_other_failures_of_reading_versioning_are_still_raised(tmp_path):
    repo = repo_with(StubClient(get_bucket_versioning=client_error("AccessDenied", 403)), tmp_path)
    with pytest.raises(LifeboatError):
        repo.versioning()


def test_our_own_upload_gone_at_completion_says_it_was_aborted_meanwhile(tmp_path):
    client = StubClient(create_multipart_upload={"UploadId": "up-123456789012345"},
                        upload_part={"ETag": '"e"'},
                        complete_multipart_upload=client_error("NoSuchUpload", 404))
    repo = repo_with(client, tmp_path)
    repo.part_size = s3.S3_MIN_PART
    repo.upload_concurrency = 1
    w = repo.new_writer("acme", "acme-20260101T000000Z.sqlite.zst.age")
    w.write(b"x" * (s3.S3_MIN_PART + 10))
    with pytest.raises(LifeboatError) as e:
        w.commit()
    assert "aborted meanwhile" in str(e.value) and "upload up-123456789" in str(e.value), str(e.value)


# -- the If-Match probe --------------------------------------------------------------------

def test_a_store_that_ignores_if_match_is_said_once_and_cached_per_endpoint(tmp_path):
    client = StubClient(put_object={"ETag": '"x"'})
    repo = repo_with(client, tmp_path)
    name = "acme-20260101T000000Z.sqlite.zst.age"
    repo.new_replacing_writer("acme", name, if_match='"abc"').abort()
    repo.new_replacing_writer("acme", name, if_match='"abc"').abort()
    assert client.count("put_object") == 2 and client.count("delete_object") == 1  # probed once, cleaned up
    probe_key = client.calls[0][1]["Key"]
    assert probe_key.startswith("pg/.lifeboat-probe-") and client.calls[1][1]["IfMatch"]
    assert len(repo.warnings) == 1 and "does not honour conditional writes" in repo.warnings[0]
    other = repo_with(StubClient(), tmp_path)
    assert other.conditional_writes() is False and other.client.calls == []  # cached for the process


def test_a_probe_that_keeps_failing_is_said_once_and_not_repeated_by_the_next_writers(tmp_path):
    client = StubClient(put_object=client_error("InternalError", 500))
    repo = repo_with(client, tmp_path)
    assert repo.conditional_writes() is None
    calls = len(client.calls)
    assert calls >= 1 and len(repo.warnings) == 1 and "unknown" in repo.warnings[0], repo.warnings
    assert repo.conditional_writes() is None and len(client.calls) == calls  # not probed again
    other = repo_with(StubClient(), tmp_path)
    assert other.conditional_writes() is None and other.client.calls == []


def test_a_store_that_honours_if_match_gives_no_warning(tmp_path):
    client = StubClient(put_object=[{"ETag": '"x"'}, client_error("PreconditionFailed", 412)])
    repo = repo_with(client, tmp_path)
    assert repo.conditional_writes() is True and repo.warnings == []
    assert client.count("delete_object") == 1


def test_a_store_that_ignores_if_none_match_is_said_once_and_the_upload_goes_on(tmp_path):
    client = StubClient(put_object={"ETag": '"x"'}, head_object={"ContentLength": 3})
    repo = repo_with(client, tmp_path)
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        w = repo.new_writer("acme", "acme-%s.sqlite.zst.age" % stamp)
        w.write(b"abc")
        w.commit()
    probe = [c[1] for c in client.calls if c[0] == "put_object" and ".lifeboat-probe-" in c[1]["Key"]]
    assert len(probe) == 2 and probe[1]["IfNoneMatch"] == "*"  # probed once: a write, then one that must fail
    assert [c[1]["Key"] for c in client.calls if c[0] == "delete_object"] == [probe[0]["Key"]]
    assert len(repo.warnings) == 1 and "(If-None-Match)" in repo.warnings[0], repo.warnings
    assert "http://127.0.0.1:9" in repo.warnings[0] and "The backup went on" in repo.warnings[0]


@pytest.mark.parametrize("answer, honoured", [(client_error("PreconditionFailed", 412), True),
                                              (client_error("NotImplemented", 501), False)])
def test_if_none_match_honoured_or_not_implemented(tmp_path, answer, honoured):
    repo = repo_with(StubClient(put_object=[{"ETag": '"x"'}, answer]), tmp_path)
    assert repo.conditional_writes("If-None-Match") is honoured
    repo.check_conditional_writes("If-None-Match")
    assert len(repo.warnings) == (0 if honoured else 1), repo.warnings


def test_probe_versions_that_object_lock_keeps_are_hidden_behind_a_delete_marker(tmp_path):
    client = StubClient(put_object=[{"VersionId": "v1"}, client_error("PreconditionFailed", 412)],
                        delete_object=[client_error("AccessDenied", 403), {}])
    repo = repo_with(client, tmp_path)
    assert repo.conditional_writes("If-None-Match") is True and repo.warnings == []
    deletes = [c[1] for c in client.calls if c[0] == "delete_object"]
    assert deletes[0]["VersionId"] == "v1" and "VersionId" not in deletes[1], deletes


def test_aws_itself_is_not_probed(tmp_path):
    client = StubClient()
    repo = s3.S3Repository("s3://bucket/pg", client=client, lock_dir=str(tmp_path / "locks"))
    assert repo.conditional_writes() is True and client.calls == []


# -- s3_lifecycle per aspect ---------------------------------------------------------------

def lifecycle_run(client, **params):
    p = {"bucket": "bkt", "s3_endpoint_url": "http://127.0.0.1:9"}
    p.update(params)
    return lifecycle.run(p, client=client, retry=s3.Retry(attempts=3, sleep=lambda s: None))


def seaweed_like(**extra):
    """A store whose public access block calls answer 501, as SeaweedFS 4.48 does."""
    script = dict(head_bucket={}, get_bucket_versioning={},
                  get_public_access_block=client_error("NotImplemented", 501),
                  put_public_access_block=client_error("NotImplemented", 501),
                  get_bucket_lifecycle_configuration=client_error("NoSuchLifecycleConfiguration", 404))
    script.update(extra)
    return StubClient(**script)


def test_the_default_public_access_block_on_a_store_without_it_is_a_warning(tmp_path):
    client = seaweed_like()
    result = lifecycle_run(client, versioning=True)
    assert result["changes"] == ["versioning"] and client.count("put_bucket_versioning") == 1
    assert result["unsupported"] == ["public_access_block"]
    assert client.count("get_public_access_block") == 1  # not retried
    assert any("public access block" in w and "NotImplemented" in w and "public_access_block: unmanaged" in w
               for w in result["warnings"]), result["warnings"]


def test_a_default_block_that_fails_only_when_written_is_a_warning_too(tmp_path):
    client = seaweed_like(get_public_access_block={"PublicAccessBlockConfiguration": {}})
    result = lifecycle_run(client, versioning=True)
    assert client.count("put_public_access_block") == 1 and result["unsupported"] == ["public_access_block"]
    assert "public_access_block" not in result["changes"] and result["changes"] == ["versioning"]


def test_an_aspect_asked_for_explicitly_that_the_store_lacks_fails_naming_it(tmp_path):
    client = seaweed_like(get_bucket_versioning=client_error("NotImplemented", 501))
    with pytest.raises(LifeboatError) as e:
        lifecycle_run(client, versioning=True)
    msg = str(e.value)
    assert e.value.option == "versioning" and "does not implement" in msg and "leave versioning unset" in msg, msg
    assert client.count("put_bucket_versioning") == 0


def test_unset_aspects_the_store_lacks_are_only_reported(tmp_path):
    client = seaweed_like(get_bucket_versioning=client_error("NotImplemented", 501))
    result = lifecycle_run(client, public_access_block="unmanaged")
    assert result["changed"] is False and result["unsupported"] == ["versioning"]
    assert result["warnings"]


def test_warnings_are_told_apart_by_tenant(tmp_path):
    """A backup pass reports each tenant's own housekeeping warnings, and those of the whole store to all."""
    repo = repo_with(StubClient(list_multipart_uploads=client_error("NoSuchUpload", 404)), tmp_path)
    assert repo.remove_partials("acme") == [] and repo.remove_partials("globex") == []
    repo.warn("The store says something about every tenant.")
    acme, globex = repo.warnings_for("acme"), repo.warnings_for("globex")
    assert len(repo.warnings) == 3 and len(acme) == 2 and len(globex) == 2, repo.warnings
    assert "s3://bucket/pg/acme/" in acme[0] and "s3://bucket/pg/globex/" in globex[0]
    assert acme[1] == globex[1] == "The store says something about every tenant."


class RefusingHousekeeping(object):
    """moto's real client, except that every housekeeping call is refused (403): no store here refuses them all,
    so this wrapper stands for one; the data path (uploads, reads, listing objects) is moto's own."""

    REFUSED = ("list_multipart_uploads", "abort_multipart_upload", "get_bucket_versioning", "list_object_versions")

    def __init__(self, real):
        self.real = real
        self.meta = real.meta
        self.refused = []

    def __getattr__(self, op):
        call = getattr(self.real, op)

        def refusing(**kwargs):
            if op in self.REFUSED or ".lifeboat-probe-" in kwargs.get("Key", ""):
                self.refused.append(op)
                raise client_error("AccessDenied", 403, op=op)
            return call(**kwargs)
        return refusing


def test_a_store_that_refuses_every_housekeeping_call_gets_a_complete_verifiable_artifact(
        s3, keys, tmp_path, monkeypatch):
    from lifeboat_engine import backup, verify
    from lifeboat_engine._s3 import repository as s3repo
    import lbtest

    clients, real_make_client = [], s3repo.make_client

    def make_client(*args, **kwargs):
        clients.append(RefusingHousekeeping(real_make_client(*args, **kwargs)))
        return clients[-1]
    monkeypatch.setattr(s3repo, "make_client", make_client)
    db = lbtest.sqlite_guests(tmp_path / "refused.db", 500)
    res = backup.run(dict(tenant="refused", engine="sqlite", path=db, repository=s3.url("lb"),
                          recipients=[keys["public"]], **s3.options()))
    assert res["changed"] is True and {"list_multipart_uploads", "put_object"} <= set(clients[0].refused), res
    said = " ".join(res["warnings"])
    assert "Listing the open uploads under s3://%s/lb/refused/ failed: AWS error AccessDenied" % s3.bucket in said
    assert "Whether the store honours If-None-Match is unknown" in said and len(res["warnings"]) == 2, said
    assert s3.keys("lb/") == sorted("lb/refused/" + u.rsplit("/", 1)[1] for u in (res["artifact"], res["manifest"]))
    out = verify.run(dict(repository=s3.url("lb"), tenant="refused", identity_file=keys["identity"],
                          fail_on_error=False, **s3.options()))
    assert out["status"] == "PASS", out
