# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenants found on the server, not only listed, and what is left unprotected.

``discover`` rules (``lifeboat.yml`` of the agent, option ``discover`` of
``backup_info``) are evaluated at the start of each run:

- ``{databases: PATTERN}``: every database of the server whose name matches
  the shell-style, case-sensitive PATTERN (``fnmatch``) is a database tenant
  named like the database;
- ``{database: NAME, schemas: PATTERN}``: every schema of database NAME that
  matches is a schema tenant named like the schema;
- either may have ``exclude`` (a pattern or a list: databases, or schemas of
  the rule's database, that are deliberately not backed up and not reported)
  and ``rpo`` (the discovered tenants' RPO).

Never matched: templates, ``postgres``, databases that refuse connections
(``datallowconn``), lifeboat's own derived names (``lb_<letter>_<20 hex>``),
a database that holds schema tenants (its shared part is backed up with
them); schemas ``pg_*``, ``information_schema``, ``public``, schemas that
belong to an extension, and derived names.

A name that is not a valid tenant name is reported (``invalid-name``), never
silently skipped; a listed tenant (``TENANTS``) wins over a discovered one of
the same name; two discovered tenants of the same name are a ``conflict`` and
neither is backed up. Everything that exists on the server and that no
listing or rule covers (a database, or a schema of a database that holds
schema tenants) is reported ``not-covered``.

**Unprotected**: a tenant (listed or discovered) without a complete artifact
within its RPO (``no-artifact``, ``late``), and every ``not-covered``,
``invalid-name`` or ``conflict`` object of the server. Reported by
``lifeboat status``, the agent's metrics (``lifeboat_tenant_unprotected``,
``lifeboat_unprotected_tenants``), its exit code and ``backup_info``.

A server that cannot be reached makes discovery fail; that failure is
reported (``Found.errors``), and the listed tenants are run all the same.
"""

import fnmatch

from . import agent_metrics, erasure, naming, postgres
from .errors import LifeboatError

LISTED = "listed"
DISCOVERED = "discovered"
NOT_FOUND = "none"

# Reasons of unprotected entries (label values of lifeboat_tenant_unprotected).
NO_ARTIFACT = "no-artifact"
ERASED = "erased"  # erased on purpose (tenant_erase): never unprotected, never late
LATE = "late"
NOT_COVERED = "not-covered"
INVALID_NAME = "invalid-name"
CONFLICT = "conflict"
PROTECTED = "none"
REASONS = (NO_ARTIFACT, LATE, NOT_COVERED, INVALID_NAME, CONFLICT)

NEVER_DATABASES = ("postgres", "template0", "template1")
NEVER_SCHEMAS = ("information_schema", "public")
MAX_PATTERN = 255
RULE_KEYS = ("databases", "database", "schemas", "exclude", "rpo")
RULE_SHAPES = "{databases: PATTERN} or {database: NAME, schemas: PATTERN} (optional: exclude, rpo)"

_DATABASES = ("SELECT datname, datistemplate, datallowconn FROM pg_catalog.pg_database ORDER BY datname")
_SCHEMAS = (
    "SELECT n.nspname FROM pg_catalog.pg_namespace n "
    " WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'public') "
    "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::regclass "
    "                    AND d.objid = n.oid AND d.deptype = 'e') "
    " ORDER BY 1")


# -- rules -----------------------------------------------------------------------------------

class RuleError(LifeboatError):
    """A bad rule: ``key`` is its place (``discover[1].schemas``), ``text`` what is wrong and the fix."""

    def __init__(self, key, text):
        super(RuleError, self).__init__("%s: %s" % (key, text), option=key.split("[")[0])
        self.key = key
        self.text = text


def _type_name(value):
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _has_magic(pattern):
    return any(c in pattern for c in "*?[")


def _unclosed_bracket(pattern):
    i = 0
    while i < len(pattern):
        if pattern[i] != "[":
            i += 1
            continue
        j = i + 1
        if j < len(pattern) and pattern[j] == "!":
            j += 1
        if j < len(pattern) and pattern[j] == "]":
            j += 1
        while j < len(pattern) and pattern[j] != "]":
            j += 1
        if j >= len(pattern):
            return True
        i = j + 1
    return False


def never_database(name):
    """Why database ``name`` is never discovered, or None."""
    if name in NEVER_DATABASES:
        return "%s is a system database" % name
    if naming.is_derived_name(name):
        return "%s is a scratch or safety-copy database lifeboat derives (lb_<letter>_<20 hex>)" % name
    return None


def never_schema(name):
    """Why schema ``name`` is never discovered, or None."""
    if name == "public":
        return "public belongs to the database's shared part, backed up as _shared_<database>"
    if name in NEVER_SCHEMAS or name.startswith("pg_"):
        return "%s is a system schema" % name
    if naming.is_derived_name(name):
        return "%s is a schema lifeboat derives (lb_<letter>_<20 hex>)" % name
    return None


def check_pattern(value, key, what):
    """One glob ``value`` at ``key``; ``what`` is ``databases`` or ``schemas``."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise RuleError(key, "expected a pattern such as \"acme_*\" (a non-empty string), got %s." % _type_name(value))
    if value != value.strip():
        raise RuleError(key, "%r has spaces around it; PostgreSQL names rarely do. Remove them." % value)
    if len(value) > MAX_PATTERN:
        raise RuleError(key, "the pattern is longer than %d characters." % MAX_PATTERN)
    if _unclosed_bracket(value):
        raise RuleError(key, "%r has a [ that is not closed; write [[] for a literal [, or close the set "
                             "(for example t_[0-9]*)." % value)
    if not _has_magic(value):
        if len(value.encode("utf-8")) > 63:
            raise RuleError(key, "%r can never match: a PostgreSQL name has at most 63 bytes." % value)
        why = never_database(value) if what == "databases" else never_schema(value)
        if why:
            raise RuleError(key, "%r is never discovered (%s). Remove it from the rule." % (value, why))
    return value


def _patterns(value, key, what):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RuleError(key, "expected a pattern or a list of patterns, got %s." % _type_name(value))
    return [check_pattern(v, "%s[%d]" % (key, i), what) for i, v in enumerate(value)]


def check_rule(rule, key, where=None):
    """Validate one rule; return it normalized (kind, pattern, database, exclude, rpo, origin)."""
    if not isinstance(rule, dict) or not rule:
        got = "an empty mapping" if isinstance(rule, dict) else _type_name(rule)
        raise RuleError(key, "expected a rule, %s; got %s." % (RULE_SHAPES, got))
    for name in rule:
        if name not in RULE_KEYS:
            raise RuleError("%s.%s" % (key, name), "unknown key. A rule is %s." % RULE_SHAPES)
    for name, item in rule.items():
        if item is None:
            raise RuleError("%s.%s" % (key, name), "has no value; remove the key or give one.")
    if "databases" in rule:
        for name in ("database", "schemas"):
            if name in rule:
                raise RuleError("%s.%s" % (key, name), "does not go with databases: a rule is either "
                                "{databases: PATTERN} (database tenants) or {database: NAME, schemas: PATTERN} "
                                "(schema tenants of NAME). Split it into two rules.")
        kind, what = "databases", "databases"
        pattern = check_pattern(rule["databases"], key + ".databases", what)
        database = None
    elif "schemas" in rule or "database" in rule:
        if "database" not in rule:
            raise RuleError(key + ".database", "a schemas rule needs database: the database that holds the schemas, "
                                               "for example {database: saas, schemas: \"t_*\"}.")
        if "schemas" not in rule:
            raise RuleError(key + ".schemas", "a rule with database needs schemas: a pattern of its schemas, for "
                                              "example \"t_*\". For database tenants use {databases: PATTERN}.")
        database = rule["database"]
        if not isinstance(database, str) or not database.strip() or "\0" in database:
            raise RuleError(key + ".database", "expected the name of a database, got %s." % _type_name(database))
        if len(database.encode("utf-8")) > 63:
            raise RuleError(key + ".database", "a PostgreSQL name has at most 63 bytes; %r is longer." % database)
        if _has_magic(database):
            raise RuleError(key + ".database", "is one database's exact name, not a pattern (%r). Write one rule per "
                                               "database." % database)
        if database in ("template0", "template1") or naming.is_derived_name(database):
            raise RuleError(key + ".database", "%r never holds tenants (%s)." % (
                database, never_database(database)))
        kind, what = "schemas", "schemas"
        pattern = check_pattern(rule["schemas"], key + ".schemas", what)
    else:
        raise RuleError(key, "has neither databases nor schemas: a rule is %s." % RULE_SHAPES)
    exclude = _patterns(rule["exclude"], key + ".exclude", what) if "exclude" in rule else []
    rpo = None
    if "rpo" in rule:
        try:
            rpo = naming.parse_duration(rule["rpo"], key + ".rpo")
        except LifeboatError:
            rpo = None
        if not rpo:
            raise RuleError(key + ".rpo", "expected a duration such as 26h, 2d or 93600, got %r." % (rule["rpo"],))
    origin = "%s: %s" % (where, key) if where else key
    return {"kind": kind, "pattern": pattern, "database": database, "exclude": exclude, "rpo": rpo, "origin": origin,
            "key": key}


def check_rules(value, key="discover", where=None):
    """Validate the ``discover`` list; return the normalized rules. Raises RuleError naming the rule's key."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RuleError(key, "expected a list of rules, each %s; got %s." % (RULE_SHAPES, _type_name(value)))
    return [check_rule(r, "%s[%d]" % (key, i), where) for i, r in enumerate(value)]


# -- the server ------------------------------------------------------------------------------

def _connect(conn):
    try:
        return conn.connect("postgres", option="discover")
    except LifeboatError as e:
        if "does not exist" not in e.msg:
            raise
        return conn.connect("template1", option="discover")


def scan(login, schema_databases=()):
    """What the server at ``login`` (login_* options) holds: its databases, and the schemas of
    ``schema_databases``. Raises LifeboatError when the server cannot be read at all."""
    conn = postgres.Connection.from_params(login or {})
    session = _connect(conn)
    try:
        rows = session.execute(_DATABASES).fetchall()
    except Exception as e:  # a psycopg error: the server answered, but not to this
        raise LifeboatError("Cannot list the databases of %s: %s." % (conn.server, postgres.first_line(str(e))),
                            option="discover")
    finally:
        session.close()
    out = {"server": conn.server, "databases": [], "schemas": {}, "errors": {}}
    for name, template, allowconn in rows:
        out["databases"].append({"name": name, "template": bool(template), "allowconn": bool(allowconn)})
    present = set(r["name"] for r in out["databases"] if r["allowconn"])
    for database in sorted(set(schema_databases)):
        if database not in present:
            out["errors"][database] = "it does not exist on %s (or refuses connections)" % conn.server
            continue
        try:
            session = conn.connect(database, option="discover")
        except LifeboatError as e:
            out["errors"][database] = e.msg
            continue
        try:
            out["schemas"][database] = [r[0] for r in session.execute(_SCHEMAS).fetchall()]
        except Exception as e:  # a psycopg error: say which database, keep going
            out["errors"][database] = "its schemas cannot be listed: %s" % postgres.first_line(str(e))
        finally:
            session.close()
    return out


# -- evaluation (pure) ------------------------------------------------------------------------

def _target(database, schema):
    return "database %s, schema %s" % (database, schema) if schema else "database %s" % database


def _entry(name, database, schema, found, reason, message, rule=None):
    return {"tenant": name, "database": database, "schema": schema, "found": found, "reason": reason,
            "rule": rule, "message": message}


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _uncovered_message(database, schema, server):
    if schema:
        return ("schema %s of database %s on %s is not backed up: no tenant in TENANTS names it and no discover rule "
                "matches it. Add it to TENANTS (tenants.<name>: {database: %s, schema: %s} in lifeboat.yml), or a "
                "rule {database: %s, schemas: PATTERN} to discover, or, if it needs no backup, to that rule's "
                "exclude." % (schema, database, server, database, schema, database))
    return ("database %s on %s is not backed up: no tenant in TENANTS names it and no discover rule matches it. Add it "
            "to TENANTS (tenants.<name>.database: %s in lifeboat.yml when the tenant's name differs), or a rule "
            "{databases: PATTERN} to discover, or, if it needs no backup, to a databases rule's exclude."
            % (database, server, database))


def evaluate(rules, listed, server):
    """Discovered tenants and the server's problems, from the rules, the listed tenants and a scan.

    ``rules``: normalized rules. ``listed``: definitions of the listed tenants (``name``, ``engine``,
    ``database``, ``schema``, ``covers``: whether it is on the scanned server). ``server``: the result
    of ``scan``. Returns ``{"discovered": [definitions], "problems": [entries], "excluded": [...],
    "errors": [messages]}``; pure, no I/O.
    """
    where = server.get("server") or "the server"
    db_rules = [r for r in rules if r["kind"] == "databases"]
    schema_rules = [r for r in rules if r["kind"] == "schemas"]
    listed_pg = [t for t in listed if t.get("engine", "postgresql") == "postgresql" and t.get("covers", True)]
    listed_targets = set((t["database"], t.get("schema") or None) for t in listed_pg)
    listed_by_name = dict((t["name"], t) for t in listed)
    schema_dbs = set(r["database"] for r in schema_rules) | set(t["database"] for t in listed_pg if t.get("schema"))
    candidates, problems, excluded, errors = [], [], [], []

    for db in server.get("databases", []):
        name = db["name"]
        if db["template"] or not db["allowconn"] or never_database(name) or name in schema_dbs:
            continue
        if (name, None) in listed_targets:
            continue
        if any(_matches(name, r["exclude"]) for r in db_rules):
            excluded.append(_target(name, None))
            continue
        matching = [r for r in db_rules if fnmatch.fnmatchcase(name, r["pattern"])]
        if matching:
            candidates.append({"name": name, "database": name, "schema": None, "rule": matching[0]})
        else:
            problems.append(_entry(name, name, None, NOT_FOUND, NOT_COVERED, _uncovered_message(name, None, where)))

    for database in sorted(schema_dbs):
        by_rule = [r for r in schema_rules if r["database"] == database]
        if database in server.get("errors", {}):
            named = ", ".join(r["origin"] for r in by_rule) or "listed schema tenants"
            errors.append("database %s (named by %s): %s. Its schemas were not discovered; fix the rule's database "
                          "or the connection." % (database, named, server["errors"][database]))
            continue
        for schema in server.get("schemas", {}).get(database, []):
            if never_schema(schema) or (database, schema) in listed_targets:
                continue
            if any(_matches(schema, r["exclude"]) for r in by_rule):
                excluded.append(_target(database, schema))
                continue
            matching = [r for r in by_rule if fnmatch.fnmatchcase(schema, r["pattern"])]
            if matching:
                candidates.append({"name": schema, "database": database, "schema": schema, "rule": matching[0]})
            else:
                problems.append(_entry(schema, database, schema, NOT_FOUND, NOT_COVERED,
                                       _uncovered_message(database, schema, where)))

    valid = []
    for c in candidates:
        try:
            naming.validate_tenant(c["name"])
        except LifeboatError:
            what = "schema %s of database %s" % (c["schema"], c["database"]) if c["schema"] else \
                "database %s" % c["database"]
            settings = "{database: %s, schema: %s}" % (c["database"], c["schema"]) if c["schema"] else \
                "{database: %s}" % c["database"]
            problems.append(_entry(c["name"], c["database"], c["schema"], DISCOVERED, INVALID_NAME,
                                   "%s matches %s, but %r is not a valid tenant name (lower-case letters, digits, '_' "
                                   "and '-', at most 63 characters, starting with a letter or digit; not "
                                   "lb_<letter>_<20 hex>), so it is not backed up. Give it a tenant name: add NAME to "
                                   "TENANTS and tenants.NAME: %s to lifeboat.yml; or add it to %s.exclude."
                                   % (what, c["rule"]["origin"], c["name"], settings, c["rule"]["key"]),
                                   c["rule"]["origin"]))
            continue
        valid.append(c)

    by_name = {}
    for c in valid:
        by_name.setdefault(c["name"], []).append(c)
    discovered = []
    for name in sorted(by_name):
        group = by_name[name]
        if name in listed_by_name:
            owner = listed_by_name[name]
            owned = owner.get("path") or _target(owner.get("database"), owner.get("schema"))
            for c in group:
                problems.append(_entry(name, c["database"], c["schema"], DISCOVERED, CONFLICT,
                                       "%s matches %s, but the tenant name %s is already listed in TENANTS for %s; the "
                                       "listed tenant wins and %s is not backed up. Add it under another name "
                                       "(TENANTS and tenants.<name> in lifeboat.yml) or to %s.exclude."
                                       % (_target(c["database"], c["schema"]), c["rule"]["origin"], name, owned,
                                          _target(c["database"], c["schema"]), c["rule"]["key"]),
                                       c["rule"]["origin"]))
            continue
        if len(group) > 1:
            targets = " and ".join(_target(c["database"], c["schema"]) for c in group)
            for c in group:
                problems.append(_entry(name, c["database"], c["schema"], DISCOVERED, CONFLICT,
                                       "%s would all be tenant %s (%s); neither is backed up, so that one never "
                                       "takes the other's artifacts. Give them distinct names in TENANTS "
                                       "(tenants.<name>: {database, schema} in lifeboat.yml), or exclude all but one "
                                       "in its rule's exclude." % (
                                           targets, name, ", ".join(sorted(set(x["rule"]["origin"] for x in group)))),
                                       c["rule"]["origin"]))
            continue
        c = group[0]
        discovered.append({"name": name, "engine": "postgresql", "database": c["database"], "schema": c["schema"],
                           "found": DISCOVERED, "rule": c["rule"]["origin"], "rpo": c["rule"]["rpo"]})
    problems.sort(key=lambda e: (e["database"] or "", e["schema"] or "", e["reason"]))
    return {"discovered": discovered, "problems": problems, "excluded": excluded, "errors": errors}


# -- one run's tenants -------------------------------------------------------------------------

class Found(object):
    """The tenants one run acts on (listed, then discovered) and what discovery reported."""

    def __init__(self, listed, discovered=(), problems=(), errors=(), excluded=(), configured=False, server=None):
        self.listed = list(listed)
        self.discovered = list(discovered)
        self.problems = list(problems)
        self.errors = list(errors)
        self.excluded = list(excluded)
        self.configured = configured
        self.server = server

    @property
    def tenants(self):
        return self.listed + self.discovered

    @property
    def names(self):
        return [t["name"] for t in self.tenants]

    @property
    def ok(self):
        return not self.errors

    def how(self, name):
        for t in self.tenants:
            if t["name"] == name:
                return t["found"]
        return NOT_FOUND

    def definition(self, name):
        for t in self.tenants:
            if t["name"] == name:
                return t
        return None

    def summary_pairs(self):
        pairs = [("status", "ok" if self.ok else "failed"), ("listed", len(self.listed)),
                 ("discovered", len(self.discovered)),
                 ("unprotected_objects", len(self.problems))]
        if self.discovered:
            pairs.append(("discovered_tenants", ",".join(t["name"] for t in self.discovered)))
        if self.excluded:
            pairs.append(("excluded", len(self.excluded)))
        if self.errors:
            pairs.append(("error", " ".join(self.errors)))
        return pairs


def listed_definition(config, name):
    """The definition of listed tenant ``name`` from the agent's configuration."""
    t = config.tenant(name)
    return {"name": name, "engine": t["engine"], "database": t.get("database"), "schema": t.get("schema"),
            "path": t.get("path"), "found": LISTED, "rule": None, "rpo": t["rpo"],
            "covers": t["engine"] == "postgresql" and t["connection"] == (config["connection"] or {})}


def tenants_for_run(config, login=None):
    """The tenants of one agent run: listed (``TENANTS``) first, then discovered (``discover`` rules).

    ``config`` is the agent's ``agent_config.Config``; ``login`` a function that returns the login_*
    options of its top-level ``connection`` (it may read a password file; a failure there is a
    discovery failure like any other). Returns a ``Found`` whose ``tenants`` are definitions
    ``{name, engine, database, schema, path, found ("listed" or "discovered"), rule, rpo}`` in run
    order, and whose ``problems`` (not-covered, invalid-name, conflict entries) and ``errors``
    (discovery failed: server down, a rule's database missing) the run must report. Discovered
    tenants are registered with ``config`` so that ``config.tenant(name)`` knows them. Never
    raises for a server problem: the listed tenants must be backed up all the same.
    """
    listed = [listed_definition(config, n) for n in config.tenants]
    rules = config.get("discover")
    if rules is None:
        return Found(listed)
    try:
        server = scan(login() if login else {}, [r["database"] for r in rules if r["kind"] == "schemas"] +
                      [t["database"] for t in listed if t["covers"] and t.get("schema")])
    except LifeboatError as e:
        error = ("discovery failed, so tenants created since the last run may not be backed up: %s The listed "
                 "tenants are backed up all the same; fix the connection (connection in lifeboat.yml)." % e.msg)
        return Found(listed, errors=[error], configured=True)
    result = evaluate(rules, listed, server)
    for t in result["discovered"]:
        t["rpo"] = t["rpo"] or config.tenant_rpo(t["name"])
    config.set_discovered(result["discovered"])
    return Found(listed, result["discovered"], result["problems"], result["errors"], result["excluded"], True,
                 server["server"])


# -- protection --------------------------------------------------------------------------------

def protection(found, newest, now, fresh=()):
    """Every tenant of ``found`` and every problem of the server, each with ``unprotected`` and ``reason``.

    ``newest(name)`` returns ``(stamp or None, error or None)``: the newest complete artifact of a
    tenant. ``fresh``: names known to have just got one (their backup succeeded in this run), or
    {name: that artifact's name}. ``newest_time``: the newest complete artifact's snapshot (Unix time).
    """
    out = []
    for t in found.tenants:
        entry = _entry(t["name"], t.get("database"), t.get("schema"), t["found"], PROTECTED, None, t.get("rule"))
        entry["path"] = t.get("path")
        entry["rpo_seconds"] = t.get("rpo")
        if t["name"] in fresh:
            entry["unprotected"] = False
            written = fresh.get(t["name"]) if isinstance(fresh, dict) else None
            entry["newest_time"] = agent_metrics.artifact_time(written) or now.timestamp()
            out.append(entry)
            continue
        stamp, error = newest(t["name"])
        if isinstance(error, erasure.Erased):
            entry.update(reason=ERASED, erased=error.found, unprotected=False, message="tenant %s was %s; remove it "
                         "from TENANTS and the discover rules' reach" % (t["name"], error))
            out.append(entry)
            continue
        if stamp is not None:
            entry["newest_time"] = naming.parse_stamp(stamp).timestamp()
        how = ("listed in TENANTS" if t["found"] == LISTED else "discovered by %s: %s" % (
            t.get("rule"), _target(t.get("database"), t.get("schema"))))
        if stamp is None:
            entry["reason"] = NO_ARTIFACT
            entry["message"] = ("tenant %s (%s) has no complete artifact%s. Back it up (`lifeboat backup --tenant "
                                "%s` on its host, or the backup playbook with -e tenants=%s) and fix what that "
                                "reports." % (t["name"], how, " (%s)" % error if error else "", t["name"], t["name"]))
        else:
            age = (now - naming.parse_stamp(stamp)).total_seconds()
            entry["age_seconds"] = int(age)
            if t.get("rpo") and age > t["rpo"]:
                entry["reason"] = LATE
                entry["message"] = ("tenant %s (%s): its newest complete artifact is %ds old, older than its RPO "
                                    "(%ds): the backups since have failed or did not run. Run `lifeboat backup "
                                    "--tenant %s` and fix what its line reports." % (
                                        t["name"], how, int(age), t["rpo"], t["name"]))
        entry["unprotected"] = entry["reason"] != PROTECTED
        out.append(entry)
    for p in found.problems:
        entry = dict(p, unprotected=True)
        out.append(entry)
    return out


def repository_newest(repo):
    """A ``newest`` function for ``protection`` that reads ``repo``."""
    def newest(name):
        try:
            names = repo.names(name)  # listed once: for an erasure record and for the artifacts
        except LifeboatError as e:
            return None, e.msg
        found = erasure.find_record(repo, name, names)
        if found:
            return None, erasure.Erased(found)
        complete = [a for a in repo.artifacts(name, names) if a["complete"]]
        real = [a for a in complete if not naming.in_future(a["stamp"])]
        if complete and not real:  # a future stamp is never fresh: the tenant is not protected
            return None, ("only artifacts stamped in the future, such as %s: the clock of the host that wrote them "
                          "ran ahead; fix it (timedatectl, NTP)" % complete[-1]["name"])
        return (real[-1]["stamp"], None) if real else (None, None)
    return newest


def unreadable(error):
    """A ``newest`` function for a repository that cannot be opened: ``error`` for every tenant."""
    def newest(name):
        return None, error
    return newest


def unprotected(entries):
    return [e for e in entries if e.get("unprotected")]


def log_entries(log, operation, entries):
    """One line per unprotected entry: what, why, and what to do."""
    for e in unprotected(entries):
        log.line([("op", operation), ("event", "unprotected"), ("name", e["tenant"]), ("found", e["found"]),
                  ("database", e.get("database")), ("schema", e.get("schema")), ("path", e.get("path")),
                  ("reason", e["reason"]), ("error", e["message"])], "err")


def log_found(log, operation, found):
    """The run's discovery line (only when discover rules are configured)."""
    if found.configured:
        log.line([("op", operation), ("event", "discovery")] + found.summary_pairs(),
                 "err" if found.errors else "info")


def report_run(config, log, operation, found, newest, outcomes=()):
    """The end of a full agent run: which tenants, databases and schemas are unprotected now.

    Logs one line per unprotected entry and a summary (``event=protection``), writes
    ``lifeboat_protection.prom`` into ``metrics_dir``. Returns ``(unprotected entries, metrics
    written)``. A backup that succeeded in this run (``outcomes``) counts as a fresh artifact.
    """
    fresh = dict((o.label, o.info.get("artifact")) for o in outcomes if o.status == "ok") if operation == "backup" else {}
    entries = protection(found, newest, naming.utcnow(), fresh)
    bad = unprotected(entries)
    log_entries(log, operation, entries)
    if bad or found.configured:
        pairs = [("op", operation), ("event", "protection"), ("unprotected", len(bad))]
        if bad:
            pairs.append(("unprotected_names", ",".join(e["tenant"] for e in bad)))
            pairs.append(("error", "%d tenant(s), database(s) or schema(s) are unprotected: each line "
                                   "event=unprotected above says why and what to do (TENANTS, or a discover rule in "
                                   "lifeboat.yml)." % len(bad)))
        if found.errors:
            pairs.append(("discovery", "failed"))
        log.line(pairs, "err" if bad or found.errors else "info")
    written = True
    if config["metrics_dir"]:
        info = {"finished": agent_metrics.now(), "operation": operation,
                "discovery": {"ok": found.ok, "discovered": len(found.discovered)} if found.configured else None}
        try:
            agent_metrics.write_protection(config["metrics_dir"], entries, info)
        except LifeboatError as e:
            written = False
            log.line([("op", operation), ("event", "metrics"), ("status", "failed"), ("error", e.msg)], "err")
    return bad, written


def status_of(found, rows, now, partial=False):
    """For ``lifeboat status``: marks each row with how its tenant was found (``found``) and returns
    ``{"unprotected": entries, "discovery": {...}, "server_problems": count}`` from the rows' newest
    artifacts. ``partial`` (``--tenant``): only the rows shown, no server objects."""
    by = dict((r["tenant"], r) for r in rows)
    for r in rows:
        how = found.how(r["tenant"])
        if how == NOT_FOUND:
            how = "globals" if naming.is_globals_tenant(r["tenant"]) else (
                "shared" if naming.is_shared_tenant(r["tenant"]) else "repository")
        r["found"] = how
    if partial:
        found = Found([t for t in found.listed if t["name"] in by], [t for t in found.discovered if t["name"] in by],
                      configured=found.configured)

    def newest(name):
        row = by.get(name) or {}
        if row.get("erased"):
            return None, erasure.Erased(row["erased"])
        info = naming.parse_artifact_name(row["newest"]) if row.get("newest") else None
        return (info["stamp"], None) if info else (None, row.get("error"))

    entries = unprotected(protection(found, newest, now))
    server = [e for e in entries if e["found"] == NOT_FOUND or e["reason"] in (INVALID_NAME, CONFLICT)]
    disc = {"configured": found.configured, "ok": found.ok, "errors": found.errors, "server": found.server,
            "discovered": [t["name"] for t in found.discovered], "excluded": found.excluded}
    return {"unprotected": entries, "discovery": disc, "server_problems": len(server) + len(found.errors)}


def status_rows(status):
    """Rows of the ``lifeboat status`` table for what the server holds unprotected and has no tenant row:
    uncovered databases and schemas, invalid and conflicting names."""
    rows = []
    for e in status["unprotected"]:
        if e["found"] == NOT_FOUND or e["reason"] in (INVALID_NAME, CONFLICT):
            where = _target(e["database"], e["schema"])
            rows.append([e["tenant"], "not backed up: %s (%s)" % (e["reason"], where), "-", "UNPROTECTED", "-", "-",
                         e["found"]])
    return rows


def status_lines(status):
    """The text ``lifeboat status`` prints under its table: what is unprotected and what to do."""
    lines = []
    entries = status["unprotected"]
    if entries:
        lines.append("UNPROTECTED: %d tenant(s), database(s) or schema(s) have no complete artifact within their "
                     "RPO or are not backed up at all:" % len(entries))
        for e in entries:
            lines.append("  %s [%s, %s]: %s" % (e["tenant"], e["found"], e["reason"], e["message"]))
    for error in status["discovery"]["errors"]:
        lines.append("DISCOVERY FAILED: %s" % error)
    return lines
