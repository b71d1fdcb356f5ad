-- Sequences advanced past their data: an identity and a serial whose rows were deleted, a sequence
-- used by no column, one set but not yet called, a descending cycling one, an unlogged one.
CREATE SEQUENCE invoice_no START 1000;
SELECT setval('invoice_no', 4242);
CREATE SEQUENCE next_ticket START 1;
SELECT setval('next_ticket', 77, false);
CREATE SEQUENCE countdown INCREMENT BY -3 MINVALUE 1 MAXVALUE 50 START 50 CYCLE;
SELECT nextval('countdown') FROM generate_series(1, 20);
CREATE UNLOGGED SEQUENCE scratch_seq;
SELECT nextval('scratch_seq') FROM generate_series(1, 5);
INSERT INTO rooms (label) SELECT 'Removed ' || g FROM generate_series(1, 7) g;
DELETE FROM rooms WHERE label LIKE 'Removed %';
SELECT nextval(pg_get_serial_sequence('bookings', 'id')) FROM generate_series(1, 9);
COMMENT ON SEQUENCE invoice_no IS 'the next invoice''s number';
