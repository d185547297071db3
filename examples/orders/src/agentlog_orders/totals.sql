-- Named queries of the order_totals handler (`totals.py`).

-- order_placed --
-- Remember the order and add it to its customer's totals (an order placed twice counts once).
-- $1 order id, $2 customer, $3 amount in cents, $4 currency
WITH placed AS (
    INSERT INTO orders.placed (order_id, customer, amount_cents, currency)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING customer, amount_cents, currency
)
INSERT INTO orders.customer_totals AS t (customer, currency, orders, amount_cents)
SELECT customer, currency, 1, amount_cents FROM placed
ON CONFLICT (customer, currency) DO UPDATE
   SET orders = t.orders + 1, amount_cents = t.amount_cents + excluded.amount_cents;

-- order_cancelled --
-- Take a placed order out of its customer's totals, once.
-- $1 order id
WITH cancelled AS (
    UPDATE orders.placed SET cancelled = true
     WHERE order_id = $1 AND NOT cancelled
    RETURNING customer, amount_cents, currency
)
UPDATE orders.customer_totals AS t
   SET orders = t.orders - 1, amount_cents = t.amount_cents - c.amount_cents
  FROM cancelled AS c
 WHERE t.customer = c.customer AND t.currency = c.currency;
