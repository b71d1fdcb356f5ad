# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dr_restore.yml's restores in one backup_restore call per chunk of a host's tenants.

lifeboat.backup.dr_chunks cuts the tenants into chunks (the schema tenants of one database in one
chunk), each with a progress label; lifeboat.backup.dr_entries turns a chunk into backup_restore's
``tenants`` entries, each with its chosen artifact; lifeboat.backup.dr_batch_results turns what the
looped calls registered into one result per tenant, as a loop over the tenants would have
registered it (``item.name``), which lifeboat.backup.dr_rows and dr_timeline read.
"""

from __future__ import annotations

_KEYS = ("engine", "database", "schema", "path")


def _group(tenant):
    """The tenants that must stay in one chunk: the schema tenants of one database."""
    if tenant.get("schema") and tenant.get("database"):
        return ("database", tenant["database"])
    return ("tenant", tenant["name"])


def dr_chunks(tenants, size=50):
    """``[{label, tenants}]``: ``tenants`` in chunks of about ``size``; a database's schema tenants stay together.

    The tenants keep their order, except that the schema tenants of one database follow the first of them.
    A chunk is closed before a group that would take it over ``size`` (a group larger than ``size`` is a
    chunk of its own).
    """
    size = max(1, int(size))
    groups = {}
    order = []
    for tenant in tenants or []:
        key = _group(tenant)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(tenant)
    chunks = [[]]
    for key in order:
        group = groups[key]
        if chunks[-1] and len(chunks[-1]) + len(group) > size:
            chunks.append([])
        chunks[-1].extend(group)
    total = sum(len(c) for c in chunks)
    out = []
    first = 1
    for chunk in chunks:
        if chunk:
            out.append({"label": "tenants %d-%d of %d" % (first, first + len(chunk) - 1, total), "tenants": chunk})
            first += len(chunk)
    return out


def dr_entries(tenants, choice):
    """backup_restore's ``tenants`` entries for a chunk: each tenant's name, its keys, its chosen artifact."""
    out = []
    for tenant in tenants or []:
        entry = {"tenant": tenant["name"], "artifact": choice[tenant["name"]]["artifact"]}
        entry.update((k, tenant[k]) for k in _KEYS if tenant.get(k) not in (None, ""))
        out.append(entry)
    return out


def dr_batch_results(registered):
    """One result per tenant from a task looped over chunks: each row with ``item: {name}``.

    A chunk whose call returned no rows (the module failed as a whole: an unreadable identity, a
    refused list) is a failed result with the call's message for each of its tenants.
    """
    if not isinstance(registered, dict) or registered.get("skipped") and not registered.get("results"):
        return {"skipped": True, "results": []}
    out = []
    for result in registered.get("results") or []:
        if not isinstance(result, dict) or result.get("skipped"):
            continue
        chunk = (result.get("item") or {}).get("tenants") or []
        rows = result.get("rows")
        if isinstance(rows, list) and rows:
            for row in rows:
                out.append(dict(row, item={"name": row.get("tenant")}))
            continue
        for tenant in chunk:
            out.append({"item": {"name": tenant["name"]}, "tenant": tenant["name"], "failed": True,
                        "msg": result.get("msg") or "the restore task failed without a message"})
    return {"results": out}


class FilterModule(object):
    """dr_restore.yml's chunks of tenants."""

    def filters(self):
        return {
            "dr_chunks": dr_chunks,
            "dr_entries": dr_entries,
            "dr_batch_results": dr_batch_results,
        }
