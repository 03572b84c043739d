-- A new table: nothing uses it yet, so nothing waits for its locks.
BEGIN;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, note text);
INSERT INTO orders SELECT g, g % 1000, 'n' FROM generate_series(1, 100000) g;
COMMIT;
