-- Table inheritance (the pre-partitioning kind): rows in the parent and in both children, a child
-- with its own column, a NO INHERIT check.
CREATE TABLE vehicles (id int PRIMARY KEY, make text NOT NULL, CONSTRAINT parent_ids CHECK (id < 10) NO INHERIT);
CREATE TABLE cars (doors int NOT NULL DEFAULT 4) INHERITS (vehicles);
CREATE TABLE bikes () INHERITS (vehicles);
ALTER TABLE vehicles ADD CONSTRAINT make_not_empty CHECK (make <> '');
INSERT INTO vehicles VALUES (1, 'Generic');
INSERT INTO cars (id, make, doors) SELECT g, 'Car ' || g, 2 + g % 3 FROM generate_series(10, 19) g;
INSERT INTO bikes (id, make) SELECT g, 'Bike ' || g FROM generate_series(20, 24) g;
