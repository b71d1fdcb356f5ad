# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names: tenants, artifacts, time stamps and derived database names."""

import datetime
import hashlib
import os
import re

from .errors import LifeboatError

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
GLOBALS_PREFIX = "_globals_"
SHARED_PREFIX = "_shared_"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_RE = r"[0-9]{8}T[0-9]{6}Z"

# <format> values of DESIGN.md's artifact layout.
FORMATS = ("pgdump", "sqlite", "globals", "tar")
ENGINES = ("postgresql", "sqlite")

_ARTIFACT_RE = re.compile(
    r"^(?P<tenant>[a-z0-9_][a-z0-9_-]{0,127})-(?P<stamp>" + STAMP_RE + r")\."
    r"(?P<format>pgdump|sqlite|globals|tar)"
    r"(?P<zst>\.zst)?(?P<age>\.age)?$"
)
_MANIFEST_RE = re.compile(
    r"^(?P<tenant>[a-z0-9_][a-z0-9_-]{0,127})-(?P<stamp>" + STAMP_RE + r")\.manifest\.json$"
)
_VERIFY_RE = re.compile(
    r"^(?P<tenant>[a-z0-9_][a-z0-9_-]{0,127})-(?P<stamp>" + STAMP_RE + r")\.verify\.json$"
)
_ERASURE_RE = re.compile(
    r"^(?P<tenant>[a-z0-9][a-z0-9_-]{0,62})-(?P<stamp>" + STAMP_RE + r")\.erasure\.json$"
)


def human_size(n):
    """``1500000`` -> ``1.5 MB``: the one size format for people (module messages, the agent's
    status, every playbook's table and report, the demo). Decimal SI units (B, kB, MB, GB, TB:
    powers of 1000, as df -H and the AWS console show them), one decimal; a value that would
    round to 1000.0 of a unit is written in the next one (``999999`` -> ``1.0 MB``)."""
    if n is None:
        return "unknown size"
    n = float(n)
    if n < 1000:
        return "%d B" % n
    for unit in ("kB", "MB", "GB"):
        n /= 1000.0
        if round(n, 1) < 1000:
            return "%.1f %s" % (n, unit)
    return "%.1f TB" % (n / 1000.0)


def validate_tenant(name, option="tenant"):
    """Return ``name`` if it is a valid tenant name, else raise a clear error."""
    if not isinstance(name, str) or not TENANT_RE.match(name):
        raise LifeboatError(
            "Invalid %s %r: a tenant name must match %s "
            "(lower-case letters, digits, '_' and '-', at most 63 characters, "
            "starting with a letter or digit). Nothing was run." % (option, name, TENANT_RE.pattern),
            option=option,
        )
    return refuse_derived_name(name, option, "Choose another tenant name.")


def is_globals_tenant(name):
    return isinstance(name, str) and name.startswith(GLOBALS_PREFIX)


def is_shared_tenant(name):
    return isinstance(name, str) and name.startswith(SHARED_PREFIX)


def is_pseudo_tenant(name):
    """``_globals_<host>`` and ``_shared_<database>``: artifacts that belong to no one tenant."""
    return is_globals_tenant(name) or is_shared_tenant(name)


def _slug(name, default):
    """A repository-safe form of a host or database name; a hash keeps lossy forms apart."""
    text = name or default
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_") or default
    if slug == text and len(slug) <= 54:
        return slug
    return slug[:45].rstrip("-_") + "-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


DEFAULT_PORT = 5432


def globals_tenant(host, port=None):
    """The pseudo-tenant that holds ``pg_dumpall --globals-only`` of the server at ``host``:``port``.

    A server on the default port keeps the plain ``_globals_<host>``; another port is part of the
    name (``_globals_<host>-p5433``), so that two clusters of one host never share (and prune)
    one series of globals. ``host`` may also be given as ``host:port``.
    """
    host = host or "local"
    if port is None and re.match(r"^[^:]+:[0-9]+$", host):
        host, port = host.split(":")
    slug = re.sub(r"[^a-z0-9_-]+", "-", host.lower()).strip("-_")
    slug = slug or "local"
    suffix = "-p%d" % int(port) if port and int(port) != DEFAULT_PORT else ""
    if len(slug) + len(suffix) > 54:
        slug = slug[:45 - len(suffix)] + "-" + hashlib.sha256(slug.encode()).hexdigest()[:8]
    return GLOBALS_PREFIX + slug + suffix


def shared_tenant(database):
    """The pseudo-tenant that holds the shared part of ``database``: all but its tenant schemas.

    ``saas`` gives ``_shared_saas``; a name that is not already lower-case letters, digits, '_'
    and '-' keeps a short hash of the real name, so that ``Saas`` and ``saas`` stay apart.
    """
    if not isinstance(database, str) or not database:
        raise LifeboatError("A shared part needs the name of its database.", option="database")
    return SHARED_PREFIX + _slug(database, "db")


def validate_repo_tenant(name, option="tenant"):
    """Tenant names as they may appear in a repository (globals and shared parts included)."""
    if is_globals_tenant(name):
        if re.match(r"^_globals_[a-z0-9_-]{1,54}$", name):
            return name
        raise LifeboatError("Invalid globals pseudo-tenant %r." % (name,), option=option)
    if is_shared_tenant(name):
        if re.match(r"^_shared_[a-z0-9_-]{1,54}$", name):
            return name
        raise LifeboatError("Invalid shared-part pseudo-tenant %r." % (name,), option=option)
    return validate_tenant(name, option)


ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_stamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)


def parse_stamp(stamp):
    return datetime.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime(ISO_FORMAT)


def parse_iso(text):
    """``iso``'s inverse: ``2026-01-01T02:40:00Z`` -> an aware UTC datetime (ValueError if it is not one)."""
    return datetime.datetime.strptime(text, ISO_FORMAT).replace(tzinfo=datetime.timezone.utc)


def artifact_name(tenant, stamp, fmt, compressed, encrypted):
    if fmt not in FORMATS:
        raise LifeboatError("Unknown artifact format %r (known: %s)." % (fmt, ", ".join(FORMATS)))
    return "%s-%s.%s%s%s" % (tenant, stamp, fmt, ".zst" if compressed else "", ".age" if encrypted else "")


def manifest_name(tenant, stamp):
    return "%s-%s.manifest.json" % (tenant, stamp)


def verify_record_name(tenant, stamp):
    return "%s-%s.verify.json" % (tenant, stamp)


def erasure_record_name(tenant, stamp):
    """The record ``tenant_erase`` leaves in the tenant's folder when it erased the tenant (erasure.py)."""
    return "%s-%s.erasure.json" % (tenant, stamp)


def parse_erasure_record_name(name):
    m = _ERASURE_RE.match(name)
    return (m.group("tenant"), m.group("stamp")) if m else None


def rekey_marker_name(artifact):
    """The hidden sidecar a local rekey leaves while it publishes ``artifact`` (see agefile)."""
    return ".%s.rekey.json" % artifact


def parse_artifact_name(name):
    """Return a dict (tenant, stamp, format, compressed, encrypted) or None."""
    m = _ARTIFACT_RE.match(name)
    if not m:
        return None
    return {
        "tenant": m.group("tenant"),
        "stamp": m.group("stamp"),
        "format": m.group("format"),
        "compressed": bool(m.group("zst")),
        "encrypted": bool(m.group("age")),
    }


def parse_manifest_name(name):
    m = _MANIFEST_RE.match(name)
    return (m.group("tenant"), m.group("stamp")) if m else None


def parse_verify_record_name(name):
    m = _VERIFY_RE.match(name)
    return (m.group("tenant"), m.group("stamp")) if m else None


def derived_name(kind, *parts):
    """A short, collision-safe database name derived from ``parts``.

    Never built by appending to a tenant's name: PostgreSQL cuts identifiers
    at 63 bytes, and an appended suffix could name the tenant itself. The
    result starts with ``lb_`` and a kind letter, which no tenant name can
    collide with in practice (tenant names are checked against it).
    """
    if not re.match(r"^[a-z]$", kind):
        raise ValueError("kind must be one lower-case letter")
    digest = hashlib.sha256("\0".join([kind] + [str(p) for p in parts]).encode("utf-8")).hexdigest()
    return "lb_%s_%s" % (kind, digest[:20])


DERIVED_RE = re.compile(r"^lb_[a-z]_[0-9a-f]{20}$")


def is_derived_name(name):
    """A scratch database, safety copy or kept schema lifeboat derived (``lb_<letter>_<20 hex>``)."""
    return isinstance(name, str) and bool(DERIVED_RE.match(name))


def refuse_derived_name(name, option, instead):
    """``name`` unless it has the form of a name lifeboat derives, which no tenant or target may take."""
    if is_derived_name(name):
        raise LifeboatError(
            "Invalid %s %r: names of the form lb_<letter>_<20 hex digits> are reserved for the scratch "
            "and safety-copy databases lifeboat derives. %s" % (option, name, instead),
            option=option,
        )
    return name


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value, option):
    """'90', '90s', '30m', '20h', '2d', '1w' -> seconds; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise LifeboatError("Invalid %s %r: give a duration such as 3600, 30m, 20h or 2d." % (option, value), option=option)
    if isinstance(value, int):
        if value < 0:
            raise LifeboatError("Invalid %s %r: a duration cannot be negative." % (option, value), option=option)
        return value
    m = _DURATION_RE.match(str(value))
    if not m:
        raise LifeboatError(
            "Invalid %s %r: give a duration such as 3600, 30m, 20h or 2d." % (option, value), option=option
        )
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)]


# -- clocks ------------------------------------------------------------------------------------

CLOCK_SKEW = 300  # seconds: a stamp further in the future than this is a clock problem, never "the newest"


def in_future(stamp, now=None):
    """True when ``stamp`` lies more than CLOCK_SKEW seconds after ``now`` (a host whose clock ran ahead)."""
    return (parse_stamp(stamp) - (now or utcnow())).total_seconds() > CLOCK_SKEW


def by_recency(artifacts, now=None):
    """``artifacts`` (dicts with ``stamp`` and ``name``) oldest first, as "the newest" must be chosen.

    An artifact stamped in the future counts as older than every other: its stamp says nothing
    about when it was written, and a real artifact written since must not lose to it. Among
    themselves they stay in stamp order.
    """
    now = now or utcnow()
    return sorted(artifacts, key=lambda a: (not in_future(a["stamp"], now), a["stamp"], a["name"]))


# -- a tenant's data ---------------------------------------------------------------------------

def check_engine(engine):
    """``engine`` when lifeboat knows it (postgresql, sqlite), else the error that names the option."""
    if engine not in ENGINES:
        raise LifeboatError("Unknown engine %r: use postgresql or sqlite." % (engine,), option="engine")
    return engine


def tenant_target(p, tenant):
    """``(path, database, schema)`` of a tenant's data, from the options engine, path, database and schema.

    A SQLite tenant needs ``path`` and takes no database or schema (both None); a PostgreSQL tenant
    takes no path, and its database defaults to the tenant's name; both names must be PostgreSQL names.
    """
    if p["engine"] == "sqlite":
        if not p["path"]:
            raise LifeboatError("engine sqlite needs path: the tenant's SQLite database file.", option="path")
        if p["database"] or p["schema"]:
            raise LifeboatError("database and schema apply to engine postgresql, not sqlite; remove them.",
                                option="database" if p["database"] else "schema")
        return os.path.abspath(p["path"]), None, None
    if p["path"]:
        raise LifeboatError("path applies to engine sqlite; for PostgreSQL use database (and schema).", option="path")
    database, schema = p["database"] or tenant, p["schema"]
    for opt, value in (("database", database), ("schema", schema)):
        if value is not None and (not isinstance(value, str) or "\0" in value or not value
                                  or len(value.encode("utf-8")) > 63):
            raise LifeboatError("Invalid %s %r: a PostgreSQL name of 1 to 63 bytes without NUL." % (opt, value),
                                option=opt)
    return None, database, schema
