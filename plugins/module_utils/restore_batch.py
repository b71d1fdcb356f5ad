# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_restore with ``tenants``: many tenants restored in one call, ``parallel`` at a time.

Each entry is one single-tenant restore (``restore.run`` with ``tenant`` and the entry's own keys
over the shared options) in its own worker process (batch.py), with every guarantee of the single
restore: the tenant/artifact check and ``force`` (restore_guard), a database restored into a fresh
database and swapped in, a schema in one transaction, a SQLite file renamed over the target; a
failed or killed worker leaves its tenant as it was, and the others go on.

Tenants that restore into the same PostgreSQL database must not race: the first schema tenant of a
database restores that database's shared part (extensions, shared tables and types), and creates
the database when it is missing, in its own transaction. So the tenants are run in waves: the first
wave holds every tenant that shares its database with no other entry (database tenants, SQLite
files) and the first tenant of each shared database; the others of a database start once one of
them succeeded (the shared part is then there, and each one's plan leaves it alone). When that
first one fails, the next one of its database goes alone in the next wave, as the single restores
one after the other did. Check mode changes nothing, so it checks every tenant in one wave.
"""

import os

from . import batch, selection
from .errors import LifeboatError

# What an entry of ``tenants`` may hold besides ``tenant``: the single restore's per-tenant options.
ENTRY_KEYS = ("engine", "database", "schema", "path", "artifact", "target_database", "target_path", "force", "jobs",
              "terminate_connections", "allow_create_in_dump", "privileges", "owners", "keep_safety_copy",
              "replace_target", "source_tenant", "identity_file")
# Options that name one tenant's source or target: in an entry, never for the whole list.
OWN = ("tenant", "database", "schema", "path", "target_database", "target_path", "replace_target", "source_tenant")
# The server's roles are restored once, by a call of their own, before the tenants.
GLOBALS = ("globals_artifact", "globals_host")
# Shared options that only mean something for PostgreSQL: a SQLite entry does not inherit them.
PG_ONLY = ("terminate_connections", "allow_create_in_dump", "privileges", "owners")
STOPPED = "not started: the run was stopped"


def _refuse_shared(params):
    for option in OWN + GLOBALS:
        if params.get(option) not in (None, ""):
            what = ("the server's roles are restored by a call of their own (globals_artifact alone), before the "
                    "tenants" if option in GLOBALS else "%s names one tenant's source or target: give it in that "
                    "tenant's entry" % option)
            raise LifeboatError("tenants and %s are mutually exclusive: %s. Nothing was done; remove %s."
                                % (option, what, option), option=option)
    if params.get("artifact") not in (None, "") and params["artifact"] not in selection.SELECTORS:
        raise LifeboatError("artifact %s is one tenant's artifact; with tenants, artifact (for every entry) is latest "
                            "or latest_verified. Nothing was done; give each entry its own artifact."
                            % params["artifact"], option="artifact")


def _single(shared, item):
    """One entry's options for the single restore: its own keys over the shared ones."""
    single = dict(shared)
    if (item.get("engine") or shared.get("engine")) == "sqlite":
        for option in PG_ONLY:
            single.pop(option, None)
    if item.get("identity_file"):
        single.pop("identity", None)
        single.pop("identity_file", None)
    single.update(item)
    return single


def _target(single):
    """What a restore writes, as far as the entry says it: ("path", file), ("schema", db, schema), or None."""
    if single.get("engine") == "sqlite":
        where = single.get("target_path") or single.get("path")
        return ("path", os.path.abspath(os.path.expanduser(where))) if where else None
    database = single.get("target_database") or single.get("database")
    if database and single.get("schema"):
        return ("schema", database, single["schema"])
    return None


def jobs(params, check):
    """[(tenant, single-restore params)] for ``params["tenants"]``, each checked before anything runs.

    ``check(params)`` is the single restore's option check (restore.RestoreRequest: no I/O); an error
    it finds in an entry names that entry (``tenants[2].target_path``). Two entries with one target
    are refused too.
    """
    _refuse_shared(params)
    batch.parallel_of(params)
    items = batch.entries(params, ENTRY_KEYS)
    if not items:
        raise LifeboatError("tenants is empty: nothing to restore. Nothing was done; list the tenants to restore.",
                            option="tenants")
    shared = batch.common(params, drop=OWN + GLOBALS)
    out = []
    targets = {}
    for i, item in enumerate(items):
        where = "tenants[%d]" % i
        single = _single(shared, item)
        try:
            check(single)
        except LifeboatError as e:
            raise batch.entry_error(e, i, item, own=e.option in item or e.option in OWN or e.option is None)
        target = _target(single)
        if target is not None and target in targets:
            raise LifeboatError("%s (%s) restores into %s, as %s does: one target, two tenants. Nothing was done; give "
                                "each tenant its own target." % (where, item["tenant"], " ".join(target[1:]), targets[target]),
                                option="%s.tenant" % where)
        if target is not None:
            targets[target] = "tenants[%d] (%s)" % (i, item["tenant"])
        out.append((item["tenant"], single))
    return out


def database_of(single, find):
    """The PostgreSQL database a restore writes into (None for SQLite, or when it cannot be known).

    From the entry when it says (target_database, database); else from the artifact's manifest, read
    through ``find(single)`` (a schema tenant's source database, else the tenant's own name).
    """
    if single.get("engine") == "sqlite":
        return None
    if single.get("target_database") or single.get("database"):
        return single.get("target_database") or single.get("database")
    try:
        art = find(single)
    except LifeboatError:
        return None  # its own restore fails the same way, alone
    source = art.source
    if source.get("schema") or single.get("allow_create_in_dump"):
        return source.get("database")
    return single["tenant"]


class Waves(object):
    """Which jobs may run now: ``keys[i]`` is job i's database (None: it shares nothing with the others)."""

    def __init__(self, keys):
        self.keys = list(keys)
        counts = {}
        for key in self.keys:
            counts[key] = counts.get(key, 0) + 1
        self.shared = set(k for k, n in counts.items() if k is not None and n > 1)
        self.pending = list(range(len(self.keys)))
        self.ready = set()  # databases one of whose tenants succeeded

    def next(self):
        """The next wave (job indexes, in list order); [] when none is left."""
        wave, leaders = [], set()
        for i in self.pending:
            key = self.keys[i]
            if key not in self.shared or key in self.ready:
                wave.append(i)
            elif key not in leaders:
                leaders.add(key)
                wave.append(i)
        self.pending = [i for i in self.pending if i not in wave]
        return wave

    def done(self, i, ok):
        if ok and self.keys[i] in self.shared:
            self.ready.add(self.keys[i])


def run(single_run, check, find, params, check_mode=False, on_done=None):
    """Restore each entry of ``params["tenants"]`` with ``single_run``; the result has one row per tenant.

    ``check`` is the single restore's option check, ``find(single)`` the artifact an entry names
    (only read for an entry that does not say its database).
    """
    work = jobs(params, check)
    parallel = batch.parallel_of(params)
    if check_mode:
        waves = Waves([None] * len(work))
    else:
        waves = Waves([database_of(single, find) for _label, single in work])
    rows = [None] * len(work)
    count = 0
    while True:
        wave = waves.next()
        if not wave:
            break
        count += 1
        state = {}
        got = batch.run(single_run, [work[i] for i in wave], parallel, check_mode=check_mode, on_done=on_done,
                        state=state)
        for i, row in zip(wave, got):
            rows[i] = row
            waves.done(i, not row["failed"])
        if state.get("stopped"):
            for i in waves.pending:
                rows[i] = {"tenant": work[i][0], "failed": True, "msg": STOPPED}
            break
    warnings = ["%s: %s" % (r["tenant"], w) for r in rows for w in r.pop("warnings", None) or []]
    return {
        "changed": any(r.get("changed") for r in rows),
        "check_mode": bool(check_mode),
        "rows": rows,
        "parallel": parallel,
        "waves": count,
        "restored": len([r for r in rows if not r["failed"]]) if not check_mode else 0,
        "failed_tenants": [r["tenant"] for r in rows if r["failed"]],
        "warnings": warnings,
        "msg": summary(rows, check_mode),
    }


def summary(rows, check_mode=False):
    """The module's ``msg``: how many tenants failed (or would), the first few with their reason, what to do."""
    failed = [r for r in rows if r["failed"]]
    prefix, done, bad = ("Check mode, nothing changed: ", "can be restored", "would FAIL") if check_mode else (
        "", "are restored", "FAILED")
    if not failed:
        return "%sAll %d tenant(s) %s; each row of the result says how." % (prefix, len(rows), done)
    return ("%s%d of %d tenant(s) %s: %s. The other %d %s; each row of the result says what happened.%s" % (
        prefix, len(failed), len(rows), bad, batch.first_few(failed, lambda r: r.get("msg", "")),
        len(rows) - len(failed), done,
        "" if check_mode else " Fix the cause, then run again for those tenants only."))
