-- A range-partitioned table with a default partition, a sub-partitioned (list) partition, a
-- partitioned index and a foreign key from a partitioned table; rows in every partition.
CREATE TABLE events (
  id bigint NOT NULL,
  at date NOT NULL,
  kind text NOT NULL,
  customer_id bigint REFERENCES customers (id),
  payload jsonb,
  PRIMARY KEY (id, at, kind)
) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE events_2026_login PARTITION OF events_2026 FOR VALUES IN ('login', 'logout');
CREATE TABLE events_2026_other PARTITION OF events_2026 DEFAULT;
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_kind ON events (kind, at);
COMMENT ON TABLE events_default IS 'rows outside every range';
INSERT INTO events
  SELECT g, date '2024-12-25' + (g * 13) % 800, (ARRAY['login', 'logout', 'order', 'refund'])[1 + g % 4],
         (SELECT min(id) FROM customers) + 10 * (g % 30), jsonb_build_object('g', g)
    FROM generate_series(1, 120) g;
