# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tenant_anonymize: scrub personal data older than a cut-off, per rules.

One code path for check mode and real runs:

1. ``Request`` checks the options and the rules (names, strategies, ``where``),
   and loads the HMAC secret; nothing is read from the tenant yet.
2. The backend (``anonymize_pg`` or ``anonymize_sqlite``) checks every rule
   against the catalog: the table, the key (unique), the time stamp and each
   column exist, and each strategy fits its column's type.
3. It counts, with reads only, the rows older than the cut-off and the rows
   and values still to scrub. All problems of steps 1 to 3 are reported
   together, before anything is written.
4. Check mode stops here. A real run scrubs in batches of ``batch_size``
   rows, each in its own transaction (a failure rolls back that batch only
   and says how far the run got), then counts again to prove that no row
   older than the cut-off keeps unscrubbed personal data (once more only
   after a second pass for rows written during the run). On PostgreSQL the
   batches commit without waiting for the disk, and each table ends with
   one commit that does (see ``anonymize_pg``).

Which rows need scrubbing is decided from the data: scrubbed values are
recognizable (see ``anonymize_scrub``), so a second run updates nothing and
reports ``changed: false``. Results hold counts, never row data, and never
the secret.
"""

import datetime
import os

from . import anonymize_pg, anonymize_sqlite, argspec, naming
from . import anonymize_scrub as scrub
from .anonymize_rules import is_int, parse_rules, q
from .errors import LifeboatError
from .repository import open_repository, s3_options

DEFAULT_DAYS = 30
DAYS_ENV = "PII_DAYS"

# The options of tenant_anonymize and of the agent's anonymize (see argspec.py)
SPEC = argspec.ArgumentSpec(
    argspec.merged(
        argspec.TENANT,
        argspec.CONNECTION,
        argspec.S3_CONNECTION,
        tenant=dict(type="str", required=True),
        rules=dict(type="list", elements="dict", required=True, options=dict(
            table=dict(type="str", required=True),
            timestamp=dict(type="str", required=True),
            key=dict(type="str", no_log=False),
            columns=dict(type="dict", required=True),
            where=dict(type="str"),
        )),
        older_than_days=dict(type="int"),
        hmac_secret=dict(type="str", no_log=True),
        hmac_secret_file=dict(type="path"),
        batch_size=dict(type="int", default=1000),
        lock_timeout=dict(type="int", default=30),
        repository=dict(type="str"),
        retention_days=dict(type="int"),
    ),
    required_if=[("engine", "sqlite", ("path",))],
    mutually_exclusive=[("path", "database"), ("path", "schema"), ("hmac_secret", "hmac_secret_file")],
)
OPTIONS = SPEC.defaults()


def resolve_days(value, environ=None):
    """``older_than_days``: the option, else PII_DAYS from the environment, else 30.

    Returns (days, where it came from)."""
    environ = os.environ if environ is None else environ
    if value is not None:
        source, option = "older_than_days", "older_than_days"
    elif environ.get(DAYS_ENV, "").strip():
        value, source, option = environ[DAYS_ENV].strip(), DAYS_ENV, "older_than_days"
    else:
        return DEFAULT_DAYS, "default"
    try:
        days = int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        days = None
    if days is None or days < 0 or days > 36500:
        raise LifeboatError(
            "Invalid %s %r: give a whole number of days, 0 to 36500 (for example 30)%s."
            % (source, value, "; unset PII_DAYS or fix it in /etc/lifeboat/tenants.env" if source == DAYS_ENV else ""),
            option=option,
        )
    return days, source


def load_secret(secret, secret_file):
    """The HMAC key as bytes (never echoed), or None when none is given."""
    if secret and secret_file:
        raise LifeboatError("Give hmac_secret or hmac_secret_file, not both.", option="hmac_secret")
    if secret_file:
        try:
            with open(secret_file, "rb") as f:
                data = f.read(65536)
        except OSError as e:
            raise LifeboatError("Cannot read hmac_secret_file %s: %s." % (secret_file, e.strerror),
                                option="hmac_secret_file")
        data = data.strip()
        option, where = "hmac_secret_file", "the file %s" % secret_file
    elif secret:
        data = (secret if isinstance(secret, str) else str(secret)).strip().encode("utf-8")
        option, where = "hmac_secret", "hmac_secret"
    else:
        return None
    if len(data) < scrub.MIN_SECRET_BYTES:
        raise LifeboatError(
            "The HMAC secret in %s is too short (%d bytes): use at least %d random bytes, for example "
            "the output of `openssl rand -hex 32`, and keep it in a vault." % (where, len(data), scrub.MIN_SECRET_BYTES),
            option=option,
        )
    return data


# -- the request ------------------------------------------------------------------

class Request(object):
    def __init__(self, params, environ=None):
        p = SPEC.resolve(params)
        self.p = p
        self.engine = naming.check_engine(p["engine"])
        if not p["tenant"]:
            raise LifeboatError("tenant is required: the tenant whose data is anonymized.", option="tenant")
        self.tenant = naming.validate_tenant(p["tenant"])
        self.path, self.database, self.schema = naming.tenant_target(p, self.tenant)
        self.days, self.days_from = resolve_days(p["older_than_days"], environ)
        for opt, low in (("batch_size", 1), ("lock_timeout", 0)):
            if not is_int(p[opt]) or p[opt] < low:
                raise LifeboatError("Invalid %s %r: give a whole number, at least %d." % (opt, p[opt], low), option=opt)
        if p["batch_size"] > 100000:
            raise LifeboatError("Invalid batch_size %r: at most 100000 rows per transaction (locks are held until "
                                "each batch commits)." % p["batch_size"], option="batch_size")
        self.batch_size = p["batch_size"]
        self.lock_timeout = p["lock_timeout"]
        retention = p["retention_days"]
        if retention is not None and (not is_int(retention) or retention < 0):
            raise LifeboatError("Invalid retention_days %r: the days backups are kept, a whole number." % (retention,),
                                option="retention_days")
        if retention is not None and not p["repository"]:
            raise LifeboatError("retention_days needs repository: the backups it applies to.", option="repository")
        self.retention_days = retention
        self.rules = parse_rules(p["rules"], self.engine)
        self.secret = load_secret(p["hmac_secret"], p["hmac_secret_file"])
        needing = [c.path for r in self.rules for c in r.columns if c.strategy.needs_secret]
        if needing and self.secret is None:
            raise LifeboatError(
                "%s use a keyed strategy (hash, email, keep_domain), which needs hmac_secret or hmac_secret_file "
                "(at least %d random bytes; use the same secret for every tenant to keep hashed values joinable)."
                % (", ".join(needing), scrub.MIN_SECRET_BYTES),
                option="hmac_secret",
            )
        self.repository = None
        if p["repository"]:
            s3 = s3_options(p, connection_only=True)
            if s3 and not p["repository"].startswith("s3://"):
                raise LifeboatError("%s applies to s3:// repositories only." % sorted(s3)[0], option=sorted(s3)[0])
            self.repository = open_repository(p["repository"], create=False, **s3)


def _backend(req):
    return anonymize_sqlite if req.engine == "sqlite" else anonymize_pg


# -- backups still holding unscrubbed rows ------------------------------------------

def backup_report(repo, tenant, cutoff, now, retention_days):
    """Which artifacts of ``tenant`` still hold personal data that is now past the cut-off.

    An artifact keeps the rows as they were when it was taken. One taken
    before the cut-off holds only rows that are all past it now, unscrubbed
    unless an anonymize run had reached them first. One taken since the
    cut-off may still hold values this run scrubbed (rows that crossed the
    cut-off after it was taken). Rotation (``retention_days``) decides when
    they go: ``clear_by`` is when the last artifact taken before this run
    leaves the repository, and with it the last copy of what this run
    scrubbed.
    """
    retention = datetime.timedelta(days=retention_days) if retention_days is not None else None
    before, since = [], []
    newest = None
    for art in repo.artifacts(tenant):
        taken = naming.parse_stamp(art["stamp"])
        if taken > now:
            continue
        newest = taken if newest is None or taken > newest else newest
        entry = {"artifact": art["name"], "taken_at": naming.iso(taken), "complete": art["complete"]}
        if retention is not None:
            entry["removed_by"] = naming.iso(taken + retention)
            entry["overdue"] = taken + retention <= now
        (before if taken < cutoff else since).append(entry)
    report = {
        "repository": str(repo),
        "retention_days": retention_days,
        "before_cutoff": before,
        "since_cutoff": len(since),
        "overdue": sum(1 for e in before + since if e.get("overdue")),
        "clear_by": naming.iso(newest + retention) if (newest is not None and retention is not None) else None,
    }
    return report


# -- run --------------------------------------------------------------------------

def run(params, check_mode=False, now=None, environ=None, progress=None):
    """Anonymize as ``params`` say. Returns a result dict with counts only.

    ``environ`` (default ``os.environ``) supplies PII_DAYS; ``progress(count)``, when given, is called
    after each committed batch with the rows scrubbed so far in this run (as the host agent expects)."""
    req = Request(params, environ)
    now = now or naming.utcnow()
    cutoff = now - datetime.timedelta(days=req.days)
    backend = _backend(req)
    tables = []
    if progress is not None:
        report = progress

        def progress(_count):
            report(sum(e["rows_scrubbed"] for e in tables))
    with backend.open_tenant(req, check_mode) as db:
        plans = db.plan(req.rules)              # catalog checks of every rule; raises before any write
        tables = db.count(plans, cutoff)        # reads only; data problems of every rule raise here
        backups = backup_report(req.repository, req.tenant, cutoff, now, req.retention_days) if req.repository else None
        if not check_mode:
            done = []
            for plan, entry in zip(plans, tables):
                if entry["rows_to_scrub"]:
                    try:
                        db.scrub(plan, cutoff, req.batch_size, entry, progress)
                    except LifeboatError as e:
                        raise _partial(e, tables, done, entry)
                done.append(entry)
            db.verify(plans, cutoff, tables)
            again = [(plan, entry) for plan, entry in zip(plans, tables) if entry["rows_remaining"]]
            for plan, entry in again:  # written during the run: one more pass
                try:
                    db.scrub(plan, cutoff, req.batch_size, entry, progress)
                except LifeboatError as e:
                    raise _partial(e, tables, done, entry)
            if again:  # else the count above stands: nothing was written since
                db.verify(plans, cutoff, tables)
            left = [e for e in tables if e["rows_remaining"]]
            if left:
                raise LifeboatError(
                    "After the run, %s still hold(s) unscrubbed personal data older than the cut-off (rows "
                    "written during the run, or rows whose key is NULL). Run again; if it persists, check the "
                    "key column." % ", ".join("%s (%d rows)" % (q(e["table"]), e["rows_remaining"]) for e in left),
                    details={"tables": tables},
                )
        schema_name = db.schema_name
    scrubbed = sum(e["rows_scrubbed"] for e in tables)
    to_scrub = sum(e["rows_to_scrub"] for e in tables)
    result = {
        "changed": bool(to_scrub) if check_mode else bool(scrubbed),
        "tenant": req.tenant,
        "engine": req.engine,
        "database": req.database,
        "schema": schema_name,
        "path": req.path,
        "older_than_days": req.days,
        "older_than_days_from": req.days_from,
        "cutoff": naming.iso(cutoff),
        "rows_to_scrub": to_scrub,
        "rows_scrubbed": scrubbed,
        "tables": tables,
        "backups": backups,
    }
    result["msg"] = _summary(result, check_mode)
    return result


def _partial(error, tables, done, failing):
    """The error of a failed batch, with how far the run got."""
    finished = ", ".join("%s (%d rows)" % (q(e["table"]), e["rows_scrubbed"]) for e in done if e["rows_scrubbed"])
    msg = "%s Tables finished before it: %s. Scrubbed rows stay scrubbed; run again to continue (finished rows " \
          "are recognized and skipped)." % (error.msg, finished or "none")
    details = dict(error.details or {})
    details["tables"] = tables
    details["failed_rule"] = failing["rule"]
    return LifeboatError(msg, option=error.option, details=details)


def _summary(result, check_mode):
    parts = []
    for e in result["tables"]:
        if check_mode:
            parts.append("%s: %d of %d rows older than the cut-off would be scrubbed"
                         % (e["table"], e["rows_to_scrub"], e["rows_in_scope"]))
        else:
            parts.append("%s: %d rows scrubbed in %d batches (%d older than the cut-off, 0 left)"
                         % (e["table"], e["rows_scrubbed"], e["batches"], e["rows_in_scope"]))
    text = "%s%s, cut-off %s (%d days): %s." % (
        "Check mode, nothing written. " if check_mode else "",
        result["tenant"], result["cutoff"], result["older_than_days"], "; ".join(parts))
    backups = result.get("backups")
    if backups:
        n = len(backups["before_cutoff"])
        text += " %d backup artifact(s) taken before the cut-off still hold personal data past it" % n
        if backups["clear_by"]:
            text += "; with retention_days %d, the last copy of what this run scrubbed leaves by %s" % (
                backups["retention_days"], backups["clear_by"])
        if backups["overdue"]:
            text += "; %d artifact(s) are already older than retention_days: run backup_prune" % backups["overdue"]
        text += "."
    return text
