"""Demo fixtures for `make demo`: SQLite tenants with guest-like data.
Deterministic, idempotent (an existing file is left alone).

  demo_data.py tenant PATH GUESTS
"""
import datetime
import json
import os
import random
import sqlite3
import sys


def tenant(path, guests):
    if os.path.exists(path):
        print("exists")
        return
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    rng = random.Random(path.rsplit("/", 1)[-1])
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    conn = sqlite3.connect(tmp)
    conn.executescript("""
        CREATE TABLE guests (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, phone TEXT,
                             created_at TEXT NOT NULL, prefs TEXT);
        CREATE TABLE bookings (id INTEGER PRIMARY KEY, guest_id INTEGER REFERENCES guests(id),
                               nights INTEGER, price REAL, notes TEXT, created_at TEXT NOT NULL);
    """)
    first = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Linus"]
    last = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen"]
    start = datetime.datetime(2026, 1, 1)
    for i in range(1, guests + 1):
        name = "%s %s" % (rng.choice(first), rng.choice(last))
        created = (start + datetime.timedelta(minutes=rng.randrange(0, 300 * 24 * 60))).isoformat() + "Z"
        conn.execute("INSERT INTO guests VALUES (?,?,?,?,?,?)", (
            i, name, "%s.%d@example.com" % (name.lower().replace(" ", "."), i), "+49 30 %07d" % rng.randrange(10**7),
            created, json.dumps({"lang": rng.choice(["de", "en", "fr"]), "newsletter": rng.random() < 0.3})))
        for _booking in range(rng.randrange(0, 4)):
            conn.execute("INSERT INTO bookings (guest_id, nights, price, notes, created_at) VALUES (?,?,?,?,?)", (
                i, rng.randrange(1, 15), round(rng.uniform(40, 400), 2), "Room %d" % rng.randrange(100, 999), created))
    conn.commit()
    conn.close()
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)
    print("created")


if __name__ == "__main__":
    if sys.argv[1] == "tenant":
        tenant(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
