# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 repositories: ``s3://bucket/prefix`` with the interface of the local repository.

Layout is the one of DESIGN.md: ``<prefix>/<tenant>/<tenant>-<stamp>.<format>...``
beside ``<tenant>-<stamp>.manifest.json``, uploaded last (through upload.S3Writer).

S3 has no locks: the lock of a tenant is a flock on a file of this host
(``hostlocks.py``), keyed by endpoint, bucket, prefix and tenant. It keeps two
runs on the same host apart, not two hosts: give each tenant one backup host.
Multipart uploads this host starts are recorded beside the lock until they
complete or are aborted, so the next run (under the lock) aborts those a
killed run left open, whatever their age; uploads of other hosts are aborted
only when older than ``stale_upload_age`` (a day), so that a live upload of
another host is never cut.

Housekeeping never decides whether a backup happens: listing and aborting
stale uploads, and reading the bucket's versioning where the store does not
implement it, are best effort. A failure there goes into ``warnings`` (each
message once, naming the store's answer) and the operation goes on; engines
add the repository's warnings to their results. Where a guarantee depends on a
feature of the store, the store is probed once per endpoint, bucket and process
(``probes.py``): whether it honours ``If-None-Match: *`` (uploads never replace
an existing object; probed before the first upload) and ``If-Match`` (the
rekey's protection against a concurrent replacement); a store that ignores one
is said plainly, once, in ``warnings``, and the operation goes on.
"""

import json
import re
import time

from .. import naming
from .._repository.base import Repository
from ..errors import LifeboatError
from ..files import json_bytes
from .client import ClientError, PurgeError, Retry, error_code, http_status, is_unsupported, make_client
from .download import S3Reader
from .hostlocks import HostLocks, default_lock_dir
from .probes import IF_NONE_MATCH, StoreProbes
from .upload import (MAX_UPLOAD_CONCURRENCY, MIN_PART_SIZE, S3_MAX_PART, S3_MIN_PART, UPLOAD_BUDGET,
                     UPLOAD_CONCURRENCY, S3Writer, _PartBody)

JSON_LIMIT = 4 << 20  # 4 MiB: larger is no record of ours

STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR")
SSE_ALGORITHMS = ("AES256", "aws:kms")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def valid_bucket(name):
    """An S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens."""
    return isinstance(name, str) and bool(_BUCKET_RE.match(name)) and ".." not in name


def parse_url(spec):
    """``s3://bucket[/prefix]`` -> (bucket, key prefix ending in '/' or '')."""
    rest = spec[len("s3://"):]
    bucket, _sep, prefix = rest.partition("/")
    if not valid_bucket(bucket):
        raise LifeboatError(
            "Invalid repository %r: %r is not a valid S3 bucket name (3 to 63 lower-case letters, digits, "
            "dots and hyphens). Give s3://bucket/prefix." % (spec, bucket),
            option="repository",
        )
    parts = [p for p in prefix.split("/") if p]
    for part in parts:
        if part in (".", "..") or "\0" in part or len(part) > 255:
            raise LifeboatError("Invalid repository %r: the prefix has a %r segment." % (spec, part),
                                option="repository")
    key_prefix = "/".join(parts) + "/" if parts else ""
    if len(key_prefix) > 512:
        raise LifeboatError("Invalid repository %r: the prefix is too long (at most 512 bytes)." % spec,
                            option="repository")
    return bucket, key_prefix


def _json_payload(data):
    """A manifest or record as stored: indented, sorted keys, a final newline."""
    return memoryview(json_bytes(data))


def _upload_args(storage_class, sse, sse_kms_key_id):
    """The checked upload settings as S3 takes them: (storage class args, encryption args)."""
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise LifeboatError(
            "Invalid storage_class %r: use one of %s. Archive classes (GLACIER, DEEP_ARCHIVE) cannot be read "
            "without a restore request: reach them through lifecycle transitions (s3_lifecycle)."
            % (storage_class, ", ".join(STORAGE_CLASSES)), option="storage_class")
    if sse is not None and sse not in SSE_ALGORITHMS:
        raise LifeboatError("Invalid sse %r: use AES256 or aws:kms." % (sse,), option="sse")
    if sse_kms_key_id and sse != "aws:kms":
        raise LifeboatError("sse_kms_key_id needs sse: aws:kms.", option="sse")
    encryption = {}
    if sse:
        encryption["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            encryption["SSEKMSKeyId"] = sse_kms_key_id
    return ({"StorageClass": storage_class} if storage_class else {}), encryption


class S3Repository(StoreProbes, HostLocks, Repository):
    kind = "s3"
    supports_versions = True

    def __init__(self, spec, s3_endpoint_url=None, s3_region=None, s3_access_key=None, s3_secret_key=None,
                 s3_session_token=None, storage_class=None, sse=None, sse_kms_key_id=None, retries=5,
                 backoff=0.5, connect_timeout=10, read_timeout=60, part_size=MIN_PART_SIZE, lock_dir=None,
                 stale_upload_age=86400, client=None, upload_concurrency=UPLOAD_CONCURRENCY):
        self.spec = spec
        self.bucket, self.prefix = parse_url(spec)
        self.root = "s3://%s/%s" % (self.bucket, self.prefix)
        self._class_args, self._encryption_args = _upload_args(storage_class, sse, sse_kms_key_id)
        if not isinstance(part_size, int) or not S3_MIN_PART <= part_size <= S3_MAX_PART:
            raise LifeboatError("Invalid part size %r: between 5 MiB and 5 GiB." % (part_size,))
        if isinstance(upload_concurrency, bool) or not isinstance(upload_concurrency, int) or \
                not 1 <= upload_concurrency <= MAX_UPLOAD_CONCURRENCY:
            raise LifeboatError("Invalid upload_concurrency %r: the number of parts uploaded at once, from 1 to %d."
                                % (upload_concurrency, MAX_UPLOAD_CONCURRENCY))
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.upload_budget = UPLOAD_BUDGET
        self.endpoint_url = s3_endpoint_url
        self.endpoint_name = s3_endpoint_url or "AWS S3%s" % ((" (%s)" % s3_region) if s3_region else "")
        self.retry = Retry(attempts=retries, base=backoff)
        self.stale_upload_age = stale_upload_age
        self.lock_dir = lock_dir or default_lock_dir()
        self.client = client or make_client(s3_endpoint_url, s3_region, s3_access_key, s3_secret_key,
                                            s3_session_token, connect_timeout, read_timeout,
                                            pool=max(4, upload_concurrency + 1))
        self.checksums = getattr(self.client.meta.config, "request_checksum_calculation", None) == "when_supported"
        # Housekeeping that failed and guarantees this store does not give, each said once: engines add them to
        # the warnings of their results.
        self.warnings = []
        self._tenant_of = {}  # warning -> the tenant it concerns (absent: the whole repository)

    def warn(self, msg, tenant=None):
        """Record a warning for the result (once); ``tenant``: the one tenant it concerns, if any."""
        if msg not in self.warnings:
            self.warnings.append(msg)
            if tenant is not None:
                self._tenant_of[msg] = tenant

    def warnings_for(self, tenant):
        return [w for w in self.warnings if self._tenant_of.get(w, tenant) == tenant]

    def _housekeeping_failed(self, error, consequence, tenant=None):
        """A best-effort step failed: warn with the store's answer (``error``) and what it leaves; go on."""
        self.warn("%s %s; the operation went on without it." % (str(error).rstrip(".") + ".", consequence), tenant)

    def __str__(self):
        return self.root.rstrip("/") if self.prefix else "s3://%s" % self.bucket

    # -- names -------------------------------------------------------------------
    def tenant_prefix(self, tenant):
        naming.validate_repo_tenant(tenant)
        return "%s%s/" % (self.prefix, tenant)

    def key(self, tenant, name):
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
            raise LifeboatError("Invalid object name %r in the repository." % (name,))
        return self.tenant_prefix(tenant) + name

    def location(self, tenant, name):
        return "s3://%s/%s" % (self.bucket, self.key(tenant, name))

    def ensure_tenant_dir(self, tenant):
        """S3 has no folders: check the name and return the tenant's prefix as a URL."""
        return "s3://%s/%s" % (self.bucket, self.tenant_prefix(tenant))

    def put_args(self, name):
        """Storage class (artifacts only: manifests and records stay STANDARD) and encryption."""
        args = dict(self._class_args) if naming.parse_artifact_name(name) else {}
        args.update(self._encryption_args)
        return args

    # -- probing -----------------------------------------------------------------
    def check_writable(self):
        """The bucket exists and these credentials reach it (read-only: HeadBucket)."""
        def head():
            try:
                return self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if http_status(e) == 404:
                    raise LifeboatError(
                        "The bucket %s does not exist on %s (AWS error NoSuchBucket): create it (for example with "
                        "lifeboat.backup.s3_lifecycle and create_bucket: true) or fix repository."
                        % (self.bucket, self.endpoint_name), option="repository",
                        details={"aws_error_code": "NoSuchBucket", "http_status": 404})
                raise
        self.retry.call(head, "Checking the bucket %s" % self.bucket, self.endpoint_name)

    def check_readable(self):
        """The bucket exists and these credentials reach it (HeadBucket)."""
        self.check_writable()

    def _list(self, prefix, delimiter=None):
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        token = None
        while True:
            if token:
                kwargs["ContinuationToken"] = token
            page = self.retry.call(lambda: self.client.list_objects_v2(**kwargs),
                                   "Listing s3://%s/%s" % (self.bucket, prefix), self.endpoint_name)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def names(self, tenant):
        prefix = self.tenant_prefix(tenant)
        out = {}
        for page in self._list(prefix, "/"):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:
                    out[name] = obj["Size"]
        return out

    def tenants(self):
        found = []
        for page in self._list(self.prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix):].rstrip("/")
                try:
                    naming.validate_repo_tenant(name)
                except LifeboatError:
                    continue
                found.append(name)
        return sorted(set(found))

    def object_size(self, key):
        """Size of ``key``, or None when it does not exist."""
        def head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
            except ClientError as e:
                if http_status(e) == 404:
                    return None
                raise
        return self.retry.call(head, "Checking s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def check_size(self, key, size, location):
        found = self.object_size(key)
        if found != size:
            raise LifeboatError("Uploading %s failed: the server reports %s bytes where %d were sent."
                                % (location, found, size))

    # -- writing -------------------------------------------------------------------
    def new_writer(self, tenant, name):
        self.key(tenant, name)
        self.check_conditional_writes(IF_NONE_MATCH)
        return S3Writer(self, tenant, name)

    def put_bytes(self, key, view, name, what):
        """One conditional PutObject: never replaces an existing object."""
        body = _PartBody(view)
        extra = self.put_args(name)
        state = {"retried": False}

        def put():
            body.seek(0)
            try:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    if state["retried"] and self.object_size(key) == len(view):
                        return {}  # our first attempt went through; its answer was lost
                    raise LifeboatError("Refusing to replace s3://%s/%s, which already exists; nothing was changed."
                                        % (self.bucket, key))
                raise

        def mark():
            state["retried"] = True

        self.retry.call(put, what, self.endpoint_name, before_retry=mark)

    def new_replacing_writer(self, tenant, name, if_match=None, metadata=None):
        """A writer that publishes over the existing object ``name`` (rekeying) in one atomic step.

        Same multipart machinery as new_writer (one part buffer, retries, the
        journal of open uploads, storage class and SSE): the new object becomes
        the current one only when CompleteMultipartUpload (or the one PutObject
        of a small object) succeeds, and only if the current object still has
        the ETag ``if_match`` (when given); any failure aborts the upload and
        leaves the old object current and untouched.
        """
        self.key(tenant, name)
        if if_match:
            self.check_conditional_writes()
        return S3Writer(self, tenant, name, replace=True, if_match=if_match, metadata=metadata)

    # -- what the store honours (probes.StoreProbes) ----------------------------------
    def replaced_meanwhile(self, location):
        return LifeboatError("Rekeying %s failed: the object was replaced by someone else while it was being rekeyed "
                             "(AWS error PreconditionFailed on If-Match); the upload was aborted and the object "
                             "left as it is. Run again." % location,
                             details={"aws_error_code": "PreconditionFailed"})

    def replace_bytes(self, key, view, name, what, if_match=None, metadata=None):
        """One PutObject over ``key`` (conditional on ``if_match`` when given)."""
        body = _PartBody(view)
        extra = self.put_args(name)
        if metadata:
            extra["Metadata"] = dict(metadata)
        if if_match:
            extra["IfMatch"] = if_match
        token = (metadata or {}).get("lifeboat-upload")
        state = {"retried": False}
        location = "s3://%s/%s" % (self.bucket, key)

        def put():
            body.seek(0)
            try:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
            except ClientError as e:
                if error_code(e) == "PreconditionFailed":
                    if state["retried"] and token and self.upload_token(key) == token:
                        return {}  # our first attempt went through; its answer was lost
                    raise self.replaced_meanwhile(location)
                raise

        def mark():
            state["retried"] = True

        self.retry.call(put, what, self.endpoint_name, before_retry=mark)

    def _head_key(self, key):
        """HeadObject of ``key`` with retries, or None when it does not exist."""
        def head():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if http_status(e) == 404:
                    return None
                raise
        return self.retry.call(head, "Checking s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def head(self, tenant, name):
        """HeadObject of ``name``: {"etag", "size", "metadata", "version_id"}, or None when it does not exist."""
        resp = self._head_key(self.key(tenant, name))
        if resp is None:
            return None
        return {"etag": resp.get("ETag"), "size": resp.get("ContentLength"), "metadata": resp.get("Metadata") or {},
                "version_id": resp.get("VersionId")}

    def object_lock(self, tenant, name):
        """What holds the current version of ``name`` under object lock, as words ("GOVERNANCE retention until
        <time>", "a legal hold"), or None: no lock, no such object, or the lock could not be read (a warning)."""
        try:
            found = self._head_key(self.key(tenant, name))
        except LifeboatError as e:
            self._housekeeping_failed(e, "Whether object lock holds %s is unknown" % self.location(tenant, name),
                                      tenant)
            return None
        held = []
        mode, until = (found or {}).get("ObjectLockMode"), (found or {}).get("ObjectLockRetainUntilDate")
        if mode and until is not None and until.timestamp() > time.time():
            held.append("%s retention until %s" % (mode, naming.iso(until)))
        if (found or {}).get("ObjectLockLegalHoldStatus") == "ON":
            held.append("a legal hold")
        return " and ".join(held) or None

    def upload_token(self, key):
        """The ``lifeboat-upload`` metadata of the current object ``key`` (None if absent)."""
        resp = self._head_key(key)
        return ((resp or {}).get("Metadata") or {}).get("lifeboat-upload")

    def rekey_marker(self, tenant, name):
        """What a rekey recorded on the current object (``lifeboat-rekey-*`` metadata), or None."""
        found = self.head(tenant, name)
        if found is None:
            return None
        meta = found["metadata"]
        if not meta.get("lifeboat-rekey-of"):
            return None
        return {"of": meta.get("lifeboat-rekey-of"), "to": meta.get("lifeboat-rekey-to"), "etag": found["etag"]}

    def replace_json(self, tenant, name, data):
        """Overwrite the JSON object ``name`` (a manifest after a rekey); one atomic PutObject, retried."""
        location = self.location(tenant, name)
        self.replace_bytes(self.key(tenant, name), _json_payload(data), name, "Uploading %s" % location)
        return location

    # -- versions --------------------------------------------------------------------
    def versioning(self, quiet=False):
        """The bucket's versioning status: "Enabled", "Suspended", or None (never enabled).

        A store that does not implement GetBucketVersioning (HTTP 501, NotImplemented) keeps no versions: None,
        and a warning that says so unless ``quiet`` (the caller only asks whether earlier versions may exist).
        Other failures are raised (the caller decides)."""
        try:
            resp = self.retry.call(lambda: self.client.get_bucket_versioning(Bucket=self.bucket),
                                   "Reading the versioning of the bucket %s" % self.bucket, self.endpoint_name)
        except LifeboatError as e:
            if not is_unsupported(e):
                raise
            if quiet:
                return None
            self._housekeeping_failed(e, "The bucket is taken as one without versioning (no earlier versions "
                                         "to list or delete)")
            return None
        return resp.get("Status") or None

    def old_versions(self, tenant, name):
        """Non-current versions and delete markers of exactly ``name``: [{"key", "version_id", "delete_marker"}]."""
        key = self.key(tenant, name)
        kwargs = {"Bucket": self.bucket, "Prefix": key}
        out = []
        while True:
            page = self.retry.call(lambda: self.client.list_object_versions(**kwargs),
                                   "Listing the versions of %s" % self.location(tenant, name), self.endpoint_name)
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(kind, []):
                    if v.get("Key") != key or v.get("IsLatest"):
                        continue  # another key sharing the prefix, or the current version: never touched
                    vid = v.get("VersionId")  # "null" for a version written before versioning: deletable too
                    if not vid:
                        continue
                    out.append({"key": key, "version_id": vid, "delete_marker": marker})
            if not page.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def purge_old_versions(self, tenant, name, manifest_name=None):
        """Delete the non-current versions (and delete markers) of ``name`` and of its manifest.

        The current version is never deleted. Returns what was deleted, as
        [{"key", "version_id", "delete_marker"}]; [] on a bucket that never
        had versioning. A version that S3 refuses to delete (object-lock
        retention or legal hold, a policy) does not stop the others: all are
        tried, then a PurgeError names each refused key, version and AWS error
        code, with the deleted ones in ``deleted``.
        """
        if manifest_name is None:
            info = naming.parse_artifact_name(name)
            manifest_name = naming.manifest_name(info["tenant"], info["stamp"]) if info else None
        deleted, refused = [], []
        for obj in [name] + ([manifest_name] if manifest_name else []):
            for v in self.old_versions(tenant, obj):
                what = "Deleting version %s of s3://%s/%s" % (v["version_id"], self.bucket, v["key"])

                def delete(v=v):
                    try:
                        return self.client.delete_object(Bucket=self.bucket, Key=v["key"], VersionId=v["version_id"])
                    except ClientError as e:
                        if error_code(e) in ("NoSuchVersion", "NoSuchKey"):
                            return None  # gone meanwhile (a lifecycle rule)
                        raise
                try:
                    self.retry.call(delete, what, self.endpoint_name)
                except LifeboatError as e:
                    refused.append(dict(v, aws_error_code=(e.details or {}).get("aws_error_code"), msg=str(e)))
                    continue
                deleted.append(v)
        if refused:
            listed = "; ".join("s3://%s/%s version %s (AWS error %s)"
                               % (self.bucket, r["key"], r["version_id"], r["aws_error_code"]) for r in refused)
            raise PurgeError(
                "Could not delete %d earlier version(s) holding old ciphertext: %s. An object-lock retention or "
                "legal hold keeps a version until it ends (S3 answers AccessDenied), a bucket policy may deny "
                "s3:DeleteObjectVersion; lifecycle noncurrent-version expiration removes them once allowed. The "
                "current objects were rekeyed all the same." % (len(refused), listed),
                deleted, refused)
        return deleted

    def write_json(self, tenant, name, data):
        location = self.location(tenant, name)
        self.put_bytes(self.key(tenant, name), _json_payload(data), name, "Uploading %s" % location)
        return location

    def read_json(self, tenant, name):
        location = self.location(tenant, name)
        with self.open_read(tenant, name) as f:
            data = f.read(JSON_LIMIT + 1)
        if len(data) > JSON_LIMIT:
            raise LifeboatError("%s is larger than %d bytes: it is not a lifeboat record." % (location, JSON_LIMIT))
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as e:
            raise LifeboatError("%s is not valid JSON (%s): the object is damaged." % (location, e))

    def open_read(self, tenant, name):
        """A streaming reader (read(size) in chunks; resumes after a broken connection)."""
        return S3Reader(self, self.key(tenant, name), self.location(tenant, name))

    def delete(self, tenant, name):
        key = self.key(tenant, name)
        self.retry.call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
                        "Deleting %s" % self.location(tenant, name), self.endpoint_name)

    # -- leftovers (the host-local locks and the upload journal: hostlocks.HostLocks) --------
    def open_uploads(self, tenant):
        """Multipart uploads still open under the tenant's prefix."""
        prefix = self.tenant_prefix(tenant)
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        found = []
        while True:
            page = self.retry.call(lambda: self.client.list_multipart_uploads(**kwargs),
                                   "Listing the open uploads under s3://%s/%s" % (self.bucket, prefix),
                                   self.endpoint_name)
            for up in page.get("Uploads", []):
                found.append({"key": up["Key"], "upload_id": up["UploadId"], "initiated": up.get("Initiated"),
                              "name": up["Key"][len(prefix):]})
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def partial_files(self, tenant):
        return sorted("%s (upload %s)" % (u["name"], u["upload_id"][:12]) for u in self.open_uploads(tenant))

    def stale_uploads(self, tenant, now=None):
        """Open uploads the next run may abort: this host's own, or any older than stale_upload_age."""
        now = now or time.time()
        mine = self._journal(tenant)
        out = []
        for up in self.open_uploads(tenant):
            started = up["initiated"].timestamp() if up.get("initiated") is not None else None
            if up["upload_id"] in mine or (started is not None and now - started >= self.stale_upload_age):
                out.append(up)
        return out, mine

    def abort_upload(self, key, upload_id):
        def abort():
            try:
                return self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as e:
                if error_code(e) == "NoSuchUpload":
                    return None  # already gone
                raise
        self.retry.call(abort, "Aborting the upload of s3://%s/%s" % (self.bucket, key), self.endpoint_name)

    def remove_partials(self, tenant):
        """Abort uploads left open by killed runs. Call only while holding the lock.

        Best effort: when the store cannot list or abort them, the failure (the store's answer) is a warning in
        ``warnings`` and the caller goes on; the uploads stay for a later run or a lifecycle rule."""
        left = ("Multipart uploads that killed runs may have left open under s3://%s/%s were not cleaned up (a "
                "later run, or a lifecycle rule with abort_incomplete_multipart_upload_days, removes them)"
                % (self.bucket, self.tenant_prefix(tenant)))
        try:
            stale, mine = self.stale_uploads(tenant)
        except LifeboatError as e:
            self._housekeeping_failed(e, left, tenant)
            return []
        removed = []
        for up in stale:
            try:
                self.abort_upload(up["key"], up["upload_id"])
            except LifeboatError as e:
                self._housekeeping_failed(e, left, tenant)
                mine.pop(up["upload_id"], None)  # its record stays: the next run tries again
                continue
            removed.append("%s (upload %s)" % (up["name"], up["upload_id"][:12]))
            if up["upload_id"] in mine:
                self.journal_remove(mine.pop(up["upload_id"]))
        for path in mine.values():
            self.journal_remove(path)  # records of uploads no longer open (finished, or aborted elsewhere)
        return removed
