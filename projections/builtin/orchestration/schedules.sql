-- Named SQL of the schedules projection (loaded by `schedules.py`). The table is unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow.

-- schedule_rows --
-- The folded state of the schedules a batch touches.
-- $1 schedule ids
SELECT schedule_id, state FROM schedules WHERE schedule_id = ANY ($1::text[]);

-- schedule_upsert --
-- Write the rows of the schedules a batch changed.
-- $1 JSON array of rows
INSERT INTO schedules AS s (schedule_id, status, cron, time_zone, action_kind, action, overlap, catch_up,
                            catch_up_window_s, grace_s, fired, skipped, missed, last_slot, last_fired_slot,
                            buffered_slot, next_slot, created_at, updated_at, state)
SELECT schedule_id, status, cron, time_zone, action_kind, action, overlap, catch_up, catch_up_window_s, grace_s,
       fired, skipped, missed, last_slot, last_fired_slot, buffered_slot, next_slot, created_at, updated_at, state
  FROM jsonb_to_recordset($1::jsonb) AS x (schedule_id text, status text, cron text, time_zone text,
       action_kind text, action jsonb, overlap text, catch_up text, catch_up_window_s float8, grace_s float8,
       fired bigint, skipped bigint, missed bigint, last_slot timestamptz, last_fired_slot timestamptz,
       buffered_slot timestamptz, next_slot timestamptz, created_at timestamptz, updated_at timestamptz,
       state jsonb)
ON CONFLICT (schedule_id) DO UPDATE
   SET status = excluded.status, cron = excluded.cron, time_zone = excluded.time_zone,
       action_kind = excluded.action_kind, action = excluded.action, overlap = excluded.overlap,
       catch_up = excluded.catch_up, catch_up_window_s = excluded.catch_up_window_s, grace_s = excluded.grace_s,
       fired = excluded.fired, skipped = excluded.skipped, missed = excluded.missed,
       last_slot = excluded.last_slot, last_fired_slot = excluded.last_fired_slot,
       buffered_slot = excluded.buffered_slot, next_slot = excluded.next_slot, created_at = excluded.created_at,
       updated_at = excluded.updated_at, state = excluded.state;
