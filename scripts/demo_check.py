"""The rows of the demo's closing table: for each tenant, its backup, its
verification, and whether the restored copy holds the same data as the source
(every table's rows compared). Input: JSON on stdin with the demo's tenants,
the pg_backup and backup_verify results (in the same order) and the folder of
restored copies. Output: JSON {rows, failed}; the playbook prints the table
with lifeboat.backup.report_table, as every playbook prints its tables.
"""
import hashlib
import json
import os
import sqlite3
import sys


def tables(path):
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for name in names:
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute('SELECT * FROM "%s" ORDER BY rowid' % name.replace('"', '""')):
                digest.update(repr(row).encode("utf-8"))
                count += 1
            out[name] = (count, digest.hexdigest())
        return out
    finally:
        conn.close()


def main():
    rows = []
    failed = 0
    data = json.load(sys.stdin)
    for tenant, backup, verify in zip(data["tenants"], data["backups"], data["verify"]):
        source = tables(tenant["path"])
        restored = tables(os.path.join(data["restored"], tenant["name"] + ".db"))
        equal = source == restored
        failed += (not equal) or verify["status"] != "PASS"
        rows.append({"tenant": tenant["name"], "artifact": os.path.basename(backup["artifact"]),
                     "size": backup["size_stored"], "seconds": backup["seconds"], "verify": verify["status"],
                     "rows": str(sum(c for c, _h in restored.values())), "same": "yes" if equal else "NO"})
    json.dump({"rows": rows, "failed": failed}, sys.stdout)


if __name__ == "__main__":
    main()
