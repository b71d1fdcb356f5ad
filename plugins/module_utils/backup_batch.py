# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``pg_backup`` with ``tenants``: a host's tenants in one module call, at most ``parallel`` at a time.

The entry point of pg_backup: without ``tenants`` it is ``backup_pass.run`` (one tenant, or one pass).
With ``tenants``, the list is checked whole before anything runs; then each database or SQLite tenant
is one job of ``batch.run`` (``backup.run`` in a worker process), and the schema tenants of one
database are one job together (``backup_pass.run`` with ``schemas``: one snapshot, the shared part
first, as the agent does: ``agent_pass.split_schema_tenants``). A pass's result becomes one row per
tenant and one for ``_shared_<database>`` (``agent_pass.expand``'s rule), so the result has one row
per tenant in the list's order, each with the keys of a single call's result (``artifact``,
``size_stored``, ``seconds``...; a pass's tenants: their artifact entry, with ``action``).
"""

from . import agent_pass, backup, backup_pass, batch, crypto, naming, postgres, schema_pass
from .errors import LifeboatError

# What an entry of ``tenants`` may hold besides ``tenant``: the tenant's own options of a single call.
ENTRY_KEYS = ("engine", "database", "schema", "path", "recipients", "recipients_file", "recipients_mode",
              "compression_level")
REPLACED = backup.LIST_REPLACES
# What a pass takes once for all of its tenants (one snapshot, one set of artifacts' settings); each member's own
# recipients go with it (backup_pass.member_recipients).
PASS_SHARED = ("compression_level",)


def run(params, check_mode=False, progress=None, now=None):
    """Back up as ``params`` say: ``backup_pass.run`` without ``tenants``, else one row per tenant."""
    if params.get("tenants") is None:
        return backup_pass.run(params, check_mode=check_mode, progress=progress, now=now)
    jobs, passes = plan(params)
    parallel = batch.parallel_of(params)
    if any(p.get("engine", "postgresql") == "postgresql" for label, p in jobs):
        # Every job runs in a fork of this process: ask pg_dump for its version once, here.
        postgres.warm_tool_versions(names=("pg_dump",), bin_dir=params.get("pg_bin_dir"))
    # backup_pass.run is backup.run for a job without schemas: one function for every job.
    rows = batch.run(backup_pass.run, jobs, parallel, check_mode=check_mode)
    return result(rows, passes)


def plan(params):
    """``(jobs, passes)``: ``[(label, engine params)]`` in the list's order, and ``{label: pass}``.

    What makes the list itself wrong (an unknown key, a bad or repeated name, a value of the wrong type, schema
    tenants of one pass with different keys) is refused here, for the whole list, naming the entry. What is wrong
    with one tenant's options (a SQLite tenant without path) is that tenant's failed row, as in a single call.
    """
    for name in REPLACED:
        if params.get(name):
            raise LifeboatError("tenants and %s do not go together: with tenants, each entry names its own tenant "
                                "(and database, schema or path)%s. Nothing was done. Remove %s, or remove tenants "
                                "to back up one tenant." % (name, ", and the server's globals are a call of their own "
                                                                  "(globals: true)" if name == "globals" else "", name),
                                option=name)
    items = batch.entries(params, ENTRY_KEYS)
    shared = batch.common(params, drop=REPLACED)
    own = {}
    for i, item in enumerate(items):
        own[item["tenant"]] = _entry_params(shared, item, "tenants[%d]" % i)
    names = [item["tenant"] for item in items]
    alone, found = agent_pass.split_schema_tenants(names, own.get)
    passes = {}
    first = {}
    for entry in found:
        # its label ("saas (12 schema tenants)") is no tenant's name: its row is the pass's until expanded
        passes[entry["label"]] = dict(entry, params=_pass_params(shared, entry, own, names, items))
        first[entry["members"][0]["tenant"]] = entry["label"]
    jobs = []
    for name in names:
        if name in first:
            jobs.append((first[name], passes[first[name]]["params"]))
        elif name in alone:
            jobs.append((name, own[name]))
    return jobs, passes


def _entry_params(shared, item, where):
    """The engine's options of one entry: the shared ones, with the entry's own over them (checked)."""
    out = dict(shared)
    entry = dict((k, v) for k, v in item.items() if k not in ("tenant", "recipients_mode"))
    if "recipients" in entry or "recipients_file" in entry:  # the tenant's own keys replace the shared ones (or add)
        out.pop("recipients", None)
        out.pop("recipients_file", None)
    elif "recipients_mode" in item:
        raise _bad(where, item, "recipients_mode",
                   "applies to the tenant's own recipients: give recipients or recipients_file too, or remove it")
    out.update(entry)
    out["tenant"] = item["tenant"]
    out.setdefault("engine", "postgresql")
    for key in ("engine", "database", "schema", "path", "recipients_file"):
        if key in entry and not isinstance(entry[key], str):
            raise _bad(where, item, key, "must be a string, not %r" % (entry[key],))
    if "recipients" in entry:
        value = entry["recipients"]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
            raise _bad(where, item, "recipients", "must be a list of age recipients (age1... or SSH public keys)")
        out["recipients"] = value
    if item.get("recipients_mode"):  # crypto's rule: replace (the default) or add the shared ones
        try:
            out.update(crypto.tenant_recipient_params(shared, dict(out, recipients_mode=item["recipients_mode"]), where))
        except LifeboatError as e:
            key = "recipients_mode" if (e.option or "").endswith("recipients_mode") else "recipients"
            raise _bad(where, item, key, "does not fit: %s" % e.msg.rstrip("."))
    if "compression_level" in entry:
        level = entry["compression_level"]
        if isinstance(level, str) and level.strip().isdigit():
            level = int(level)
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 19:
            raise _bad(where, item, "compression_level", "is %r: use 1 (fastest) to 19 (smallest)" % (level,))
        out["compression_level"] = level
    if out["engine"] == "postgresql" and out.get("schema"):
        out.setdefault("database", item["tenant"])
    return out


def _pass_params(shared, entry, own, names, items):
    """The options of the pass over ``entry``'s schema tenants (agent_pass.split_schema_tenants' entry)."""
    members = [m["tenant"] for m in entry["members"]]
    for member in entry["members"]:  # a member's own recipients go with it (backup_pass.member_recipients)
        item = items[names.index(member["tenant"])]
        if "recipients" in item or "recipients_file" in item:
            mine = own[member["tenant"]]
            member.update((k, mine[k]) for k in ("recipients", "recipients_file") if mine.get(k))
    settings = dict((key, own[members[0]].get(key)) for key in PASS_SHARED)
    for name in members[1:]:
        theirs = dict((key, own[name].get(key)) for key in PASS_SHARED)
        if theirs != settings:
            differ = [key for key in PASS_SHARED if theirs[key] != settings[key]]
            raise LifeboatError(
                "tenants[%d] (%s) and tenants[%d] (%s) are schema tenants of database %s, backed up in one pass (one "
                "snapshot, the shared part first), but their %s differ. Nothing was done. Give the schema tenants of "
                "one database the same %s." % (names.index(members[0]), members[0], names.index(name), name,
                                               entry["database"], " and ".join(differ), " and ".join(differ)),
                option="tenants[%d].%s" % (names.index(name), differ[0]))
    # the pass's own recipients are the shared ones: its shared part's, and its members' without keys of their own
    params = dict(shared, database=entry["database"], engine="postgresql", schemas=entry["members"])
    params.update((k, v) for k, v in settings.items() if v is not None)
    try:
        schema_pass.validate_members([dict((k, m[k]) for k in ("tenant", "schema") if k in m) for m in entry["members"]])
    except LifeboatError as e:  # a schema named by two tenants, or one that belongs to the database
        raise LifeboatError("The schema tenants of database %s in tenants: %s Nothing was done; fix tenants."
                            % (entry["database"], e.msg), option="tenants[%d].schema" % names.index(members[0]))
    return params


def _bad(where, item, key, what):
    return LifeboatError("%s.%s (tenant %s) %s. Nothing was done; fix the list and run again."
                         % (where, key, item["tenant"], what), option="%s.%s" % (where, key))


def _pass_rows(row, entry):
    """One row per tenant of a pass, its shared part's first: agent_pass.expand's rule, for result rows."""
    reported = dict((a["tenant"], a) for a in row.get("artifacts") or [])
    failing = dict((f["tenant"], f.get("error")) for f in row.get("failed_tenants") or [])
    names = [m["tenant"] for m in entry["members"]]
    shared = naming.shared_tenant(entry["database"])
    if shared in reported:
        names.insert(0, shared)
    timing = dict((k, row[k]) for k in ("started", "finished") if k in row)
    out = []
    for name in names:
        a = reported.get(name)
        if a is None:  # the pass itself failed (a connection refused, a bad option): every tenant did
            one = dict(timing, tenant=name, database=entry["database"], failed=True, seconds=None,
                       msg=row.get("msg") if row.get("failed") else
                       "not reached by the backup pass of database %s" % entry["database"])
            if row.get("option"):
                one["option"] = row["option"]
        else:
            one = dict(a, database=entry["database"], **timing)
            one["failed"] = a.get("action") == "failed" or name in failing
            one["skipped"] = a.get("action") == "skip"
            one.setdefault("seconds", None)
            if one["failed"]:
                one["msg"] = a.get("error") or failing.get(name) or "failed (no message)"
        out.append(one)
    return out


def result(rows, passes):
    """The module's result: one row per tenant, ``msg`` (batch.summary), ``changed``, and the rows' warnings."""
    out, warnings = [], []
    for row in rows:
        entry = passes.get(row["tenant"])
        for warning in row.get("warnings") or []:
            said = "%s: %s" % (row["tenant"], warning)
            if said not in warnings:
                warnings.append(said)
        out.extend(_pass_rows(row, entry) if entry is not None else [row])
    done = {"changed": any(r.get("changed") or r.get("action") in ("written", "would write") for r in out),
            "rows": out, "msg": batch.summary(out)}
    if warnings:
        done["warnings"] = warnings
    return done
