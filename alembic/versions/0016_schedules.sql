-- Schedules (issue 13 item 3): the read model of cron schedules, and a report over it.
--
-- A projection: every row is derived from the schedule events (domains/schedules) and rebuilt by `agentlog
-- replay`. What fires is never decided from it: the scheduler decides from its own fold of the log, the API
-- folds the schedule's stream and appends at the version it folded.

-- One row per schedule (a deleted one stays, with status 'deleted', until created anew).
CREATE TABLE projections.schedules (
    schedule_id       text        PRIMARY KEY,
    status            text        NOT NULL,   -- active, paused, deleted
    cron              text,                   -- 5 fields, or 6 with seconds first
    time_zone         text,                   -- IANA name the expression is read in
    action_kind       text,                   -- task, chat
    action            jsonb,                  -- the task template, or the chat message
    overlap           text,                   -- skip, buffer_one, allow_all
    catch_up          text,                   -- none, last, all
    catch_up_window_s float8,
    grace_s           float8,
    fired             bigint      NOT NULL,   -- slots fired
    skipped           bigint      NOT NULL,   -- slots skipped because an earlier firing's task was not finished
    missed            bigint      NOT NULL,   -- slots missed while nothing ran, not caught up
    last_slot         timestamptz,            -- the latest slot decided (fired, skipped, buffered or missed)
    last_fired_slot   timestamptz,
    buffered_slot     timestamptz,            -- the slot waiting for earlier firings' tasks (buffer_one)
    next_slot         timestamptz,            -- the next slot to come, while active
    created_at        timestamptz,
    updated_at        timestamptz NOT NULL,
    state             jsonb       NOT NULL    -- the domain's fold, which the projection folds on from
);
CREATE INDEX schedules_next_slot_idx ON projections.schedules (next_slot) WHERE status = 'active';
COMMENT ON TABLE projections.schedules IS
    'Cron schedules: spec, status, slots fired, skipped and missed, the latest fired and the next to come.';

CREATE VIEW reports.schedules AS
SELECT schedule_id, status, cron, time_zone, action_kind, overlap, catch_up, fired, skipped, missed,
       last_fired_slot, next_slot
  FROM projections.schedules
 WHERE status <> 'deleted'
 ORDER BY schedule_id;
COMMENT ON VIEW reports.schedules IS
    'Live schedules: cron and time zone, policies, slots fired, skipped and missed, the latest fired, the next.';
