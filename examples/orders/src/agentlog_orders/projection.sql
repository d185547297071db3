-- Named queries of the orders projection (`projection.py`). Table names are unqualified: the runner points the
-- search path at the live schema, a rebuild at its shadow.

-- placed --
-- $1 order id, $2 customer, $3 amount in cents, $4 currency, $5 recorded at
INSERT INTO orders (order_id, customer, amount_cents, currency, status, placed_at)
VALUES ($1, $2, $3, $4, 'placed', $5)
ON CONFLICT (order_id) DO NOTHING;

-- cancelled --
-- $1 order id, $2 reason
UPDATE orders SET status = 'cancelled', cancel_reason = $2 WHERE order_id = $1;
