-- Named SQL of the event_counts_daily projection (loaded by `event_counts.py`). The table is unqualified: the
-- runner points search_path at the live schema, a rebuild at its shadow.

-- add_counts --
-- Add a batch's counts to each (day, category, event type).
-- $1 days (UTC), $2 categories, $3 event types, $4 events counted
INSERT INTO event_counts_daily AS c (day, category, event_type, events)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (day, category, event_type) DO UPDATE SET events = c.events + excluded.events;
