-- Named SQL of the timer service (loaded by `timers.py`).

-- due_timers --
-- The timers still waiting, soonest first, with how long until each is due by the database's clock (0 when due).
-- $1 how many
SELECT timer_id, stream_id, purpose, subject, due_at,
       greatest(extract(epoch FROM due_at - clock_timestamp()), 0)::float8 AS wait_s
  FROM projections.timers
 WHERE state = 'scheduled'
 ORDER BY due_at
 LIMIT $1;
