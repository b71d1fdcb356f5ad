"""Proves each demo artifact decrypts and is a valid SQLite database, then
prints the demo's table. Input: a JSON list of pg_backup results on stdin.

Uses the collection's engine directly (plugins/module_utils), no Ansible.
Plaintext goes to a private 0700 temporary folder that is always removed.
"""
import importlib.util
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "plugins", "module_utils")
spec = importlib.util.spec_from_file_location("lifeboat_engine", os.path.join(ENGINE, "__init__.py"),
                                              submodule_search_locations=[ENGINE])
engine = importlib.util.module_from_spec(spec)
sys.modules["lifeboat_engine"] = engine
spec.loader.exec_module(engine)
from lifeboat_engine import crypto, pipeline, sqlite  # noqa: E402


def check(result, identities):
    with open(result["manifest"]) as f:
        manifest = json.load(f)
    tmp = tempfile.mkdtemp(prefix="lifeboat-demo-")
    try:
        out = os.path.join(tmp, "restored.sqlite")
        with open(result["artifact"], "rb") as src, open(out, "wb") as sink:
            stats = pipeline.load(src, sink, identities, compressed=manifest["compression"] is not None)
        problems = []
        if stats["sha256"] != manifest["sha256"]:
            problems.append("sha256 differs from the manifest")
        integrity = sqlite.integrity_check(out)
        if integrity != "ok":
            problems.append("integrity_check: " + integrity)
        if sqlite.table_row_counts(out) != manifest["row_counts"]:
            problems.append("row counts differ from the manifest")
        return ("OK" if not problems else "FAIL: " + "; ".join(problems)), sum(manifest["row_counts"].values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    identity_file = sys.argv[1]
    results = json.load(sys.stdin)
    identities = crypto.load_identities(identity_file=identity_file)
    rows = [("TENANT", "ARTIFACT", "SIZE", "SECONDS", "ROWS", "DECRYPTS+VALID")]
    failed = 0
    for r in results:
        status, nrows = check(r, identities)
        failed += status != "OK"
        rows.append((r["tenant"], os.path.basename(r["artifact"]), "%.1f KB" % (r["size_stored"] / 1000.0),
                     "%.2f" % r["seconds"] if r.get("seconds") is not None else "-", str(nrows), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
