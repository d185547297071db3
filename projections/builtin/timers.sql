-- Named SQL of the timers projection (loaded by `timers.py`). The table is unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow.

-- schedule --
-- A batch's scheduled timers (a timer seen again is kept once).
-- $1 timer ids, $2 stream ids, $3 purposes, $4 subjects, $5 due at, $6 states ('scheduled'), $7 scheduled at
INSERT INTO timers (timer_id, stream_id, purpose, subject, due_at, state, scheduled_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::timestamptz[])
ON CONFLICT (timer_id) DO NOTHING;

-- settle --
-- Timers fired or cancelled; only a timer still waiting settles (the first settlement counts).
-- $1 timer ids, $2 states ('fired' or 'cancelled')
UPDATE timers AS t SET state = s.state
  FROM unnest($1::text[], $2::text[]) AS s (timer_id, state)
 WHERE t.timer_id = s.timer_id AND t.state = 'scheduled';
