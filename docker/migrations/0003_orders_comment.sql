-- Expand: a new nullable column is instant. (RENAME COLUMN note TO comment would be refused:
-- running code still selects note.)
ALTER TABLE orders ADD COLUMN comment text;
