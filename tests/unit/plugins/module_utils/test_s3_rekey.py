"""Rekeying in S3 repositories, the logic without a server: which versions a purge may delete, how refusals
are reported, the conditions the replacing writer sends, and the recognition of its own upload after a lost
answer. The server itself is exercised in tests/integration/test_age_encrypt_s3_rekey.py."""

import pytest

from lifeboat_engine import agefile, s3
from lifeboat_engine.errors import LifeboatError
from s3stub import ScriptedClient, client_error

KEY = "p/acme/acme-20260101T000000Z.sqlite.zst.age"
MANIFEST = "p/acme/acme-20260101T000000Z.manifest.json"


FakeClient = ScriptedClient  # answers {} once a script runs out


def repo_with(client, tmp_path):
    return s3.S3Repository("s3://bucket/p", client=client, retries=3, backoff=0, lock_dir=str(tmp_path / "locks"))


def versions_page(versions=(), markers=(), truncated=False, **extra):
    page = {"Versions": [{"Key": k, "VersionId": v, "IsLatest": latest} for k, v, latest in versions],
            "DeleteMarkers": [{"Key": k, "VersionId": v, "IsLatest": latest} for k, v, latest in markers],
            "IsTruncated": truncated}
    page.update(extra)
    return page


def test_old_versions_never_include_the_current_one_nor_other_keys(tmp_path):
    client = FakeClient(list_object_versions=[
        versions_page(versions=[(KEY, "v3", True), (KEY, "v2", False), (KEY + ".other", "x1", False)],
                      truncated=True, NextKeyMarker=KEY, NextVersionIdMarker="v2"),
        versions_page(versions=[(KEY, "null", False)], markers=[(KEY, "m1", False)]),
    ])
    found = repo_with(client, tmp_path).old_versions("acme", KEY.rsplit("/", 1)[1])
    assert found == [{"key": KEY, "version_id": "v2", "delete_marker": False},
                     {"key": KEY, "version_id": "null", "delete_marker": False},
                     {"key": KEY, "version_id": "m1", "delete_marker": True}]
    assert client.calls[1][1]["KeyMarker"] == KEY and client.calls[1][1]["VersionIdMarker"] == "v2"


def test_purge_deletes_artifact_and_manifest_versions_and_reports_refusals_by_key_and_code(tmp_path):
    client = FakeClient(
        list_object_versions=[versions_page(versions=[(KEY, "new", True), (KEY, "old", False), (KEY, "older", False)]),
                              versions_page(versions=[(MANIFEST, "mnew", True), (MANIFEST, "mold", False)])],
        delete_object=[client_error("AccessDenied", 403, op="DeleteObject"), {}, {}],
    )
    with pytest.raises(s3.PurgeError) as e:
        repo_with(client, tmp_path).purge_old_versions("acme", KEY.rsplit("/", 1)[1])
    deleted = [(c[1]["Key"], c[1]["VersionId"]) for c in client.calls if c[0] == "delete_object"]
    assert deleted == [(KEY, "old"), (KEY, "older"), (MANIFEST, "mold")]  # a refusal does not stop the others
    assert [(d["key"], d["version_id"]) for d in e.value.deleted] == [(KEY, "older"), (MANIFEST, "mold")]
    assert e.value.details["refused_versions"] == [{"key": KEY, "version_id": "old", "aws_error_code": "AccessDenied"}]
    assert "s3://bucket/%s version old (AWS error AccessDenied)" % KEY in str(e.value)
    assert "object-lock" in str(e.value)


def test_purge_retries_transient_failures_and_ignores_versions_gone_meanwhile(tmp_path):
    client = FakeClient(
        list_object_versions=[versions_page(versions=[(KEY, "old", False)]), versions_page()],
        delete_object=[client_error("SlowDown", 503), client_error("NoSuchVersion", 404)],
    )
    found = repo_with(client, tmp_path).purge_old_versions("acme", KEY.rsplit("/", 1)[1])
    assert found == [{"key": KEY, "version_id": "old", "delete_marker": False}]
    assert [c[0] for c in client.calls].count("delete_object") == 2


def test_small_replacing_upload_is_conditional_on_the_etag_read_and_carries_the_marker(tmp_path):
    client = FakeClient(head_object=[{"ContentLength": 5}])
    repo = repo_with(client, tmp_path)
    w = repo.new_replacing_writer("acme", KEY.rsplit("/", 1)[1], if_match='"abc"',
                                  metadata={"lifeboat-rekey-of": "a" * 64})
    w.write(b"hello")
    assert w.commit() == "s3://bucket/" + KEY
    op, kwargs = client.calls[0]
    assert op == "put_object" and kwargs["IfMatch"] == '"abc"' and "IfNoneMatch" not in kwargs
    assert kwargs["Metadata"]["lifeboat-rekey-of"] == "a" * 64 and len(kwargs["Metadata"]["lifeboat-upload"]) == 32


def test_new_artifacts_still_refuse_to_replace(tmp_path):
    client = FakeClient(put_object=[client_error("PreconditionFailed", 412, op="PutObject")])
    w = repo_with(client, tmp_path).new_writer("acme", KEY.rsplit("/", 1)[1])
    w.write(b"hello")
    with pytest.raises(LifeboatError) as e:
        w.commit()
    assert "Refusing to replace" in str(e.value)
    assert client.calls[0][1]["IfNoneMatch"] == "*" and "Metadata" not in client.calls[0][1]


def test_replacing_upload_recognises_its_own_object_after_a_lost_answer(tmp_path):
    token = {}

    def remember(**kwargs):
        token["value"] = kwargs["Metadata"]["lifeboat-upload"]
        return client_error("InternalError", 500, op="PutObject")  # the write happened, the answer was lost

    def ours(**kwargs):
        return {"ContentLength": 5, "Metadata": {"lifeboat-upload": token["value"]}}

    client = FakeClient(put_object=[remember, client_error("PreconditionFailed", 412, op="PutObject")],
                        head_object=[ours, {"ContentLength": 5}])
    w = repo_with(client, tmp_path).new_replacing_writer("acme", KEY.rsplit("/", 1)[1], if_match='"abc"')
    w.write(b"hello")
    w.commit()
    assert [c[0] for c in client.calls] == ["put_object", "put_object", "head_object", "head_object"]


def test_replacing_upload_refuses_when_someone_else_replaced_the_object(tmp_path):
    client = FakeClient(put_object=[client_error("PreconditionFailed", 412, op="PutObject")])
    w = repo_with(client, tmp_path).new_replacing_writer("acme", KEY.rsplit("/", 1)[1], if_match='"abc"')
    w.write(b"hello")
    with pytest.raises(LifeboatError) as e:
        w.commit()
    assert "replaced by someone else" in str(e.value) and "PreconditionFailed" in str(e.value)


def test_multipart_replacing_upload_completes_with_if_match_and_aborts_on_failure(tmp_path):
    client = FakeClient(create_multipart_upload=[{"UploadId": "u1"}], upload_part=[{"ETag": '"p1"'}, {"ETag": '"p2"'}],
                        complete_multipart_upload=[client_error("PreconditionFailed", 412, op="Complete")])
    repo = repo_with(client, tmp_path)
    repo.part_size = s3.S3_MIN_PART
    w = repo.new_replacing_writer("acme", KEY.rsplit("/", 1)[1], if_match='"etag-read"', metadata={"x": "y"})
    w.write(b"\0" * (s3.S3_MIN_PART + 10))
    with pytest.raises(LifeboatError):
        w.commit()
    ops = [c[0] for c in client.calls]
    assert ops == ["create_multipart_upload", "upload_part", "upload_part", "complete_multipart_upload",
                   "abort_multipart_upload"]
    assert client.calls[0][1]["Metadata"]["x"] == "y"
    complete = client.calls[3][1]
    assert complete["IfMatch"] == '"etag-read"' and "IfNoneMatch" not in complete


def test_rekey_marker_reads_object_metadata(tmp_path):
    client = FakeClient(head_object=[{"ContentLength": 1, "ETag": '"e"', "Metadata": {
        "lifeboat-rekey-of": "a" * 64, "lifeboat-rekey-to": "b" * 64}}, {"ContentLength": 1, "Metadata": {}},
        client_error("404", 404, op="HeadObject")])
    repo = repo_with(client, tmp_path)
    name = KEY.rsplit("/", 1)[1]
    assert repo.rekey_marker("acme", name) == {"of": "a" * 64, "to": "b" * 64, "etag": '"e"'}
    assert repo.rekey_marker("acme", name) is None
    assert repo.rekey_marker("acme", name) is None


def test_recipients_digest_ignores_order():
    assert agefile.recipients_digest(["b", "a"]) == agefile.recipients_digest(["a", "b"])
    assert agefile.recipients_digest(["a"]) != agefile.recipients_digest(["a", "b"])


@pytest.mark.parametrize("code,expected", [("AccessDenied", "Unknown"), ("403", "Unknown"), ("NoSuchBucket", None)])
def test_versioning_that_cannot_be_read_does_not_stop_a_rekey(code, expected):
    class Repo(object):
        def versioning(self, quiet=False):
            raise LifeboatError("denied", details={"aws_error_code": code})
    if expected is None:
        with pytest.raises(LifeboatError):
            agefile._versioning(Repo(), True)
    else:
        assert agefile._versioning(Repo(), True) == expected
