-- The orders plugin's schema. The handler's own tables live in a schema of the plugin's own; the projection's
-- table lives with every projection (a rebuild copies it into a shadow schema and swaps it in), the report with
-- every report.

CREATE SCHEMA orders;

CREATE TABLE orders.placed (
    order_id     text PRIMARY KEY,
    customer     text NOT NULL,
    amount_cents bigint NOT NULL,
    currency     text NOT NULL,
    cancelled    boolean NOT NULL DEFAULT false
);

CREATE TABLE orders.customer_totals (
    customer     text NOT NULL,
    currency     text NOT NULL,
    orders       integer NOT NULL,
    amount_cents bigint NOT NULL,
    PRIMARY KEY (customer, currency)
);

GRANT USAGE ON SCHEMA orders TO agentlog_application, agentlog_reporting;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA orders TO agentlog_application;
GRANT SELECT ON ALL TABLES IN SCHEMA orders TO agentlog_reporting;

CREATE TABLE projections.orders (
    order_id      text PRIMARY KEY,
    customer      text NOT NULL,
    amount_cents  bigint NOT NULL,
    currency      text NOT NULL,
    status        text NOT NULL,
    cancel_reason text,
    placed_at     timestamptz NOT NULL
);

CREATE VIEW reports.order_totals_daily AS
SELECT date_trunc('day', placed_at)::date AS day, currency,
       count(*) FILTER (WHERE status = 'placed') AS orders,
       coalesce(sum(amount_cents) FILTER (WHERE status = 'placed'), 0) AS amount_cents,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
  FROM projections.orders
 GROUP BY 1, 2;
COMMENT ON VIEW reports.order_totals_daily IS
    'Orders placed and cancelled per day and currency (the example orders plugin).';
