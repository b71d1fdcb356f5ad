-- An unlogged table with rows (pg_dump dumps their data unless told not to).
CREATE UNLOGGED TABLE sessions (token uuid PRIMARY KEY DEFAULT gen_random_uuid(), customer_id bigint NOT NULL,
                                seen_at timestamptz NOT NULL);
INSERT INTO sessions (customer_id, seen_at)
  SELECT id, timestamptz '2026-05-01 00:00:00+00' + id * interval '1 minute' FROM customers WHERE id % 20 = 0;
