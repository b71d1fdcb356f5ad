"""The demo's closing table: for each tenant, its backup, its verification,
and whether the restored copy holds the same data as the source (every
table's rows compared). Input: JSON on stdin with the demo's tenants, the
pg_backup and backup_verify results (in the same order) and the folder of
restored copies.
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
    rows = [("TENANT", "ARTIFACT", "SIZE", "SECS", "VERIFY", "ROWS", "SAME")]
    failed = 0
    data = json.load(sys.stdin)
    for tenant, backup, verify in zip(data["tenants"], data["backups"], data["verify"]):
        source = tables(tenant["path"])
        restored = tables(os.path.join(data["restored"], tenant["name"] + ".db"))
        equal = source == restored
        failed += (not equal) or verify["status"] != "PASS"
        rows.append((tenant["name"], os.path.basename(backup["artifact"]), "%.1f KB" % (backup["size_stored"] / 1000.0),
                     "%.2f" % backup["seconds"], verify["status"], str(sum(c for c, _h in restored.values())),
                     "yes" if equal else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
