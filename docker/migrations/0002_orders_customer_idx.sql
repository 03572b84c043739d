-- Sent on its own outside a transaction: ddlgate's default policy builds it CONCURRENTLY.
CREATE INDEX orders_customer_idx ON orders (customer_id);
