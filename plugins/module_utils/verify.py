# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore-verification: every backup proven by restoring it.

For one artifact (or the latest of each tenant) the checks are: the manifest
is there and valid; the stored bytes match its SHA-256 and size; they decrypt
and decompress; they restore into a scratch target made for the check (a
PostgreSQL database named by a hash, or a SQLite file in a private folder)
that is always removed, by a janitor process if this one is killed; row
counts match the manifest; optional sanity queries meet their expectations;
the newest complete artifact is fresher than ``max_age``; and the size is
not far below the previous artifacts' (a WARN). The result is recorded
beside the artifact as ``<tenant>-<stamp>.verify.json``, which prune and
dr_restore read.

The checks themselves live in the private package ``_verify``: ``checks`` (a check, the
queries, row counts, a tenant's report), ``restores`` (the scratch restores) and
``legacy`` (legacy plain dumps).
"""

import os
import socket
import statistics

from . import argspec, batch, crypto, erasure, manifest as manifest_mod, naming, postgres, selection, verify_batch
from ._verify.checks import FAIL, PASS, SKIP, WARN, Check, skip, tenant_report, validate_queries
from ._verify.legacy import verify_legacy
from ._verify.restores import DecodeFailed, decode_only, hash_only, restore_pg, restore_sqlite
from .errors import LifeboatError
from .files import atomic_write_json
from .repository import LocalRepository, open_repository, s3_options
from .version import TOOL_VERSION


# The options of backup_verify and of the agent's verify (see argspec.py); the agent passes every S3 option.
SPEC = argspec.ArgumentSpec(argspec.merged(
    argspec.CONNECTION,
    argspec.S3_CONNECTION,
    argspec.IDENTITY,
    repository=dict(type="str"),
    tenant=dict(type="str"),
    artifact=dict(type="str", default="latest"),
    tmp_dir=dict(type="path"),
    max_age=dict(type="str"),
    size_anomaly_ratio=dict(type="float", default=0.5),
    queries=dict(type="list", elements="dict", options=dict(
        query=dict(type="str", required=True),
        name=dict(type="str"),
        min=dict(type="float"),
        max=dict(type="float"),
        equals=dict(type="float"),
    )),
    fail_on_error=dict(type="bool", default=True),
    record=dict(type="bool", default=True),
    report=dict(type="path"),
    legacy_glob=dict(type="str"),
    legacy_engine=dict(type="str", default="sqlite", choices=["sqlite", "postgresql"]),
    # many tenants in one call (verify_batch.py): each entry is a single call's tenant and options
    **batch.SPEC
), engine_only=argspec.S3_STORAGE, mutually_exclusive=[["tenants", "tenant"], ["tenants", "legacy_glob"]])
OPTIONS = SPEC.defaults()


class Context(object):
    def __init__(self, params, now):
        p = SPEC.resolve(params)
        self.p = p
        self.now = now or naming.utcnow()
        self.max_age = naming.parse_duration(p["max_age"], "max_age")
        ratio = p["size_anomaly_ratio"]
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < 1:
            raise LifeboatError("Invalid size_anomaly_ratio %r: a fraction such as 0.5 (0 turns the check off)."
                                % (ratio,), option="size_anomaly_ratio")
        self.ratio = float(ratio)
        self.queries = validate_queries(p["queries"])
        self.conn = postgres.Connection.from_params(p)
        if p["legacy_engine"] not in ("sqlite", "postgresql"):
            raise LifeboatError("Unknown legacy_engine %r: use sqlite or postgresql." % (p["legacy_engine"],),
                                option="legacy_engine")
        if p["tenant"] is not None:
            naming.validate_repo_tenant(p["tenant"])
        self._identities = {}
        self.choices = {}  # tenant -> selection.latest_verified() result, with artifact: latest_verified

    def identities(self, *tenants):
        """The identities that may open the artifacts of ``tenants`` (identity_dir's files, crypto.py)."""
        return self.tenant_identities(*tenants)[0]

    def tenant_identities(self, *tenants):
        """(identities, missing own files) for ``tenants``; a tenant without any: crypto.MissingIdentity."""
        if tenants not in self._identities:
            found = crypto.load_tenant_identities(tenants, self.p["identity"], self.p["identity_file"],
                                                  self.p["identity_dir"])
            self._identities[tenants] = (found[0], found[2])
        return self._identities[tenants]


# -- artifacts in a repository ------------------------------------------------------------------

def _targets(ctx):
    """[(repo, tenant, artifact-name-or-None)] to verify."""
    spec = ctx.p["artifact"] or "latest"
    if spec == selection.LATEST_VERIFIED:
        return _latest_verified_targets(ctx)
    if spec != "latest":
        if os.sep in spec:
            path = os.path.abspath(spec)
            name = os.path.basename(path)
            tenant = os.path.basename(os.path.dirname(path))
            info = naming.parse_artifact_name(name)
            if not info or info["tenant"] != tenant:
                raise LifeboatError("artifact %s is not a lifeboat artifact in its tenant's folder (expected "
                                    "<repository>/<tenant>/<tenant>-<stamp>.<format>...)." % spec, option="artifact")
            return [(LocalRepository(os.path.dirname(os.path.dirname(path)), create=False), tenant, name)]
        info = naming.parse_artifact_name(spec)
        if not info:
            raise LifeboatError("artifact %r is neither latest, an artifact name, nor a path." % spec, option="artifact")
        return [(_repo(ctx), info["tenant"], spec)]
    repo = _repo(ctx)
    tenants = [ctx.p["tenant"]] if ctx.p["tenant"] else repo.tenants()
    if not tenants:
        raise LifeboatError("The repository %s holds no tenant: nothing to verify. Check the repository option."
                            % repo, option="repository")
    return [(repo, t, None) for t in tenants]


def _latest_verified_targets(ctx):
    """Each tenant's newest verified artifact (re-verified, e.g. after a restore drill or a rekey).

    A tenant without one is a FAIL of its own (a ``selection`` check) when every tenant is verified,
    and an error when O(tenant) names it.
    """
    repo = _repo(ctx)
    tenants = [ctx.p["tenant"]] if ctx.p["tenant"] else repo.tenants()
    if not tenants:
        raise LifeboatError("The repository %s holds no tenant: nothing to verify. Check the repository option."
                            % repo, option="repository")
    out = []
    for tenant in tenants:
        try:
            choice = selection.latest_verified(repo, tenant)
        except LifeboatError as e:
            if ctx.p["tenant"]:
                raise
            out.append((repo, tenant, e))
            continue
        ctx.choices[tenant] = choice
        out.append((repo, tenant, choice["art"]["name"]))
    return out


def _repo(ctx):
    if not ctx.p["repository"]:
        raise LifeboatError("repository is required (or artifact as a path, or legacy_glob).", option="repository")
    return open_repository(ctx.p["repository"], create=False,
                           **s3_options(ctx.p))


def verify_artifact(ctx, repo, tenant, name):
    arts = repo.artifacts(tenant)
    complete = [a for a in arts if a["complete"]]
    checks = []
    if name is None:
        if not complete:
            c = Check("manifest").done(FAIL, "tenant %s has no complete artifact (none with a manifest) in %s"
                                       % (tenant, repo) + ("; %d incomplete" % len(arts) if arts else ""))
            return tenant_report(tenant, None, [c] + _freshness(ctx, complete)), None
        art = complete[-1]
    else:
        found = [a for a in arts if a["name"] == name]
        if not found:
            raise LifeboatError("artifact %s not found in %s." % (name, repo.location(tenant, name)), option="artifact")
        art = found[0]
    c = Check("manifest")
    doc = None
    if not art["complete"]:
        checks.append(c.done(FAIL, "%s is missing: the artifact is incomplete (its backup never finished)" % art["manifest"]))
    else:
        try:
            doc = manifest_mod.validate(repo.read_json(tenant, art["manifest"]), art["manifest"])
            if doc["artifact"] != art["name"] or doc["tenant"] != tenant:
                raise LifeboatError("%s describes %s of tenant %s, not %s" % (art["manifest"], doc["artifact"], doc["tenant"], art["name"]))
            checks.append(c.done(PASS, "manifest_version %s, written by %s %s" % (doc["manifest_version"], doc["tool"], doc["tool_version"])))
        except LifeboatError as e:
            checks.append(c.done(FAIL, str(e)))
    if doc is not None:
        checks += _content_checks(ctx, repo, tenant, art, doc)
    else:
        checks += [skip(n, "no usable manifest") for n in ("checksum", "decrypt", "restore", "row_counts")]
    checks += _freshness(ctx, complete)
    checks += _size_anomaly(ctx, repo, tenant, art, complete, doc)
    return tenant_report(tenant, repo.location(tenant, art["name"]), checks), (art, doc)


def _content_checks(ctx, repo, tenant, art, doc):
    fmt = doc["format"]
    encrypted = doc["encryption"] is not None
    compressed = doc["compression"] is not None
    checks = []
    c_dec = Check("decrypt")
    restore, extra = None, []
    sizes = None
    hint = ""
    try:
        identities, hint = _identities_for(ctx, tenant, doc) if encrypted else (None, "")
        if fmt == "pgdump":
            sizes, restore, extra = restore_pg(ctx, repo, tenant, art, doc, identities, compressed)
        elif fmt == "sqlite":
            sizes, restore, extra = restore_sqlite(ctx, repo, tenant, art, doc, identities, compressed)
        else:
            sizes, restore, extra = decode_only(ctx, repo, tenant, art, fmt, identities, compressed)
        if sizes is None:  # the artifact itself was not read (its shared part, or the server, stopped it first)
            checks.append(c_dec.done(FAIL, "not tried:" + hint) if hint else
                          c_dec.done(SKIP, "not tried: %s" % (restore.detail if restore else "nothing was read")))
        else:
            checks.append(c_dec.done(PASS, "age%s" % (" + zstd" if compressed else "") if encrypted else
                                     ("zstd" if compressed else "stored as plaintext")))
            if encrypted:
                checks.append(_recipients_check(doc, identities))
    except DecodeFailed as e:
        checks.append(c_dec.done(FAIL, str(e) + hint))
        restore = skip("restore", "the artifact did not decrypt")
        extra = [skip("row_counts", "nothing restored")]
    # checksum: from the pass when it read everything, else a separate hashing pass
    c_sum = Check("checksum")
    if sizes is None:
        sizes = hash_only(repo, tenant, art)
    problems = []
    if sizes["sha256"] != doc["sha256"]:
        problems.append("SHA-256 of the stored bytes is %s, the manifest says %s" % (sizes["sha256"][:16], doc["sha256"][:16]))
    if sizes["stored"] != doc["size"]["stored"]:
        problems.append("%d bytes stored, the manifest says %d" % (sizes["stored"], doc["size"]["stored"]))
    checks.insert(0, c_sum.done(FAIL if problems else PASS, "; ".join(problems) or "%d bytes, SHA-256 as recorded" % sizes["stored"]))
    checks.append(restore)
    checks += extra
    return checks


def _identities_for(ctx, tenant, doc):
    """The identities for ``tenant``'s artifact (and its shared part's), and a hint for the decrypt check's failure
    when none of them is one of the manifest's recipients (naming the tenant and its expected identity file);
    DecodeFailed when none is given. The artifact is still tried with them: when it decrypts all the same, the
    manifest lies about its recipients, which the recipients check says."""
    shared = (doc.get("shared") or {}).get("tenant")
    try:
        identities, missing = ctx.tenant_identities(*([tenant, shared] if shared else [tenant]))
    except LifeboatError as e:
        raise DecodeFailed(str(e))
    listed = (doc["encryption"] or {}).get("recipients") or []
    publics = crypto.publics_of(identities)
    hint = ""
    if listed and publics is not None and not set(listed) & set(publics):
        hint = (" None of the identities given for tenant %s is one of the %d recipient(s) its manifest names (%s).%s "
                "Give the tenant's identity (identity_dir, identity_file)."
                % (tenant, len(listed), ", ".join(listed), crypto.missing_hint([m for m in missing if m[0] == tenant])))
    return identities, hint


def _recipients_check(doc, identities):
    """The manifest must name a recipient whose identity decrypted the artifact."""
    c = Check("recipients")
    listed = set(doc["encryption"].get("recipients") or [])
    publics = crypto.publics_of(identities)
    if publics is None:  # SSH identities: no public key to compare
        return c.done(SKIP, "an SSH identity decrypted it; its public key is not derived here")
    if listed & set(publics):
        return c.done(PASS, "the manifest lists the recipient whose identity decrypted it (of %d)" % len(listed))
    return c.done(FAIL, "the artifact decrypts with an identity whose public key the manifest does not list "
                        "(manifest lists %d recipient(s)): the manifest or the artifact was replaced" % len(listed))


def _freshness(ctx, complete):
    c = Check("freshness")
    if ctx.max_age is None:
        return [c.done(SKIP, "max_age not set")]
    if not complete:
        return [c.done(FAIL, "no complete artifact at all (max_age %ds)" % ctx.max_age)]
    future = [a for a in complete if naming.in_future(a["stamp"], ctx.now)]
    if future:
        return [c.done(FAIL, "%s is stamped %.1f h in the future: the clock of the host that wrote it (or of this "
                             "one) is wrong. A future stamp is never taken as fresh: fix the clock (timedatectl, "
                             "NTP), then take a new backup; remove or rename the future-stamped artifact once a new "
                             "one is verified" % (future[-1]["name"], -(ctx.now - naming.parse_stamp(
                                 future[-1]["stamp"])).total_seconds() / 3600.0))]
    newest = complete[-1]
    age = (ctx.now - naming.parse_stamp(newest["stamp"])).total_seconds()
    if age > ctx.max_age:
        return [c.done(FAIL, "the newest complete artifact %s is %.1f h old, more than max_age (%.1f h): backups "
                             "have stopped or are failing; check the backup timer and its journal"
                       % (newest["name"], age / 3600.0, ctx.max_age / 3600.0))]
    return [c.done(PASS, "newest complete artifact is %.1f h old (max_age %.1f h)" % (age / 3600.0, ctx.max_age / 3600.0))]


def _size_anomaly(ctx, repo, tenant, art, complete, doc):
    c = Check("size_anomaly")
    if not ctx.ratio or doc is None:
        return [c.done(SKIP, "size_anomaly_ratio is 0" if not ctx.ratio else "no manifest")]
    previous = [a for a in complete if a["stamp"] < art["stamp"] and a["format"] == art["format"]][-5:]
    sizes = []
    for a in previous:
        try:
            sizes.append(repo.read_json(tenant, a["manifest"])["size"]["raw"])
        except (LifeboatError, KeyError, TypeError):
            continue
    if not sizes:
        return [c.done(SKIP, "no earlier artifact to compare with")]
    typical = statistics.median(sizes)
    raw = doc["size"]["raw"]
    if typical and raw < ctx.ratio * typical:
        return [c.done(WARN, "%d bytes of dump, %.0f%% of the median of the %d previous (%d): did the tenant lose "
                             "data, or did the backup miss tables?" % (raw, 100.0 * raw / typical, len(sizes), typical))]
    return [c.done(PASS, "%d bytes of dump, %.0f%% of the median of the %d previous" % (raw, 100.0 * raw / typical, len(sizes)))]


# -- legacy plain dumps -----------------------------------------------------------------------------


# -- entry point --------------------------------------------------------------------------------------

def run(params, check_mode=False, now=None):
    if params.get("tenants") is not None:  # a list of tenants: one single call per entry (verify_batch.py)
        return verify_batch.run(run, Context, params, check_mode, now)
    ctx = Context(params, now)
    reports = []
    written = []
    if ctx.p["legacy_glob"]:
        reports.append(verify_legacy(ctx))
    else:
        for repo, tenant, name in _targets(ctx):
            erased = erasure.find_record(repo, tenant) if name is None or isinstance(name, LifeboatError) else None
            if erased:  # erased on purpose (tenant_erase): a row ERASED, never a FAIL
                reports.append(erasure.verify_report(tenant, erased))
                continue
            if isinstance(name, LifeboatError):  # latest_verified found nothing for this tenant
                c = Check("selection").done(FAIL, str(name))
                report = tenant_report(tenant, None, [c])
                report.update(selected_by=selection.LATEST_VERIFIED, previously_verified_at=None)
                reports.append(report)
                continue
            report, found = verify_artifact(ctx, repo, tenant, name)
            _describe_choice(ctx, report, found, tenant)
            reports.append(report)
            if found and found[1] is not None and ctx.p["record"]:
                art, doc = found
                # sha256 and size_stored tie the record to the bytes verified: after a rekey or a
                # replacement, latest_verified (selection.py) no longer trusts it.
                record = dict(report, checked_at=naming.iso(ctx.now), tool_version=TOOL_VERSION,
                              artifact=art["name"], verifier_host=socket.gethostname(),
                              sha256=doc["sha256"], size_stored=doc["size"]["stored"])
                if not check_mode:
                    _replace_json(repo, tenant, naming.verify_record_name(tenant, art["stamp"]), record)
                written.append(repo.location(tenant, naming.verify_record_name(tenant, art["stamp"])))
    failed = [r for r in reports if r["status"] == FAIL]
    status = FAIL if failed else (erasure.ERASED if reports and all(r["status"] == erasure.ERASED for r in reports)
                                  else PASS)
    result = {
        "changed": bool(written),
        "status": status,
        "tenants": reports,
        "records": written,
        "msg": _summary(reports, check_mode),
    }
    if len(reports) == 1:
        r = reports[0]
        result.update(artifact=r["artifact"], checks=r["checks"], failed_checks=r["failed_checks"],
                      warnings=r["warnings"], artifact_name=r.get("artifact_name"), selected_by=r.get("selected_by"),
                      previously_verified_at=r.get("previously_verified_at"),
                      source_server_version=r.get("source_server_version"), snapshot_at=r.get("snapshot_at"))
    if ctx.p["report"]:
        atomic_write_json(ctx.p["report"], result)
        result["report_path"] = ctx.p["report"]
    return result


def _describe_choice(ctx, report, found, tenant):
    """Which artifact was verified, how it was chosen, and what its manifest says of the source."""
    spec = ctx.p["artifact"] or "latest"
    art, doc = found if found else (None, None)
    choice = ctx.choices.get(tenant)
    report.update(
        artifact_name=art["name"] if art else None,
        selected_by=spec if spec in selection.SELECTORS else None,
        previously_verified_at=choice["verified_at"] if choice else None,
        source_server_version=((doc or {}).get("source") or {}).get("server_version"),
        snapshot_at=(doc or {}).get("started_at"),
    )


def _replace_json(repo, tenant, name, data):
    """A verify record may be rewritten (a later verification of the same artifact)."""
    if name in repo.names(tenant):
        repo.delete(tenant, name)
    return repo.write_json(tenant, name, data)


def _summary(reports, check_mode):
    parts = []
    for r in reports:
        if r["status"] == FAIL:
            fails = [c for c in r["checks"] if c["status"] == FAIL]
            parts.append("%s FAIL (%s)" % (r["tenant"], "; ".join("%s: %s" % (c["name"], c["detail"]) for c in fails)))
        elif r["status"] == erasure.ERASED:
            parts.append("%s ERASED (%s)" % (r["tenant"], erasure.describe(r["erased"])))
        else:
            parts.append("%s PASS%s" % (r["tenant"], (" with WARN " + ", ".join(r["warnings"])) if r["warnings"] else ""))
    head = "%d of %d verified artifact(s) FAILED. " % (sum(r["status"] == FAIL for r in reports), len(reports)) \
        if any(r["status"] == FAIL for r in reports) else "All %d artifact(s) PASS. " % len(
            [r for r in reports if r["status"] != erasure.ERASED])
    tail = "" if not any(r["status"] == FAIL for r in reports) else \
        " Do not count on a failed artifact: fix the cause, take a new backup (pg_backup) and verify it."
    return head + "; ".join(parts) + (" (check mode: no record written)" if check_mode else "") + tail
