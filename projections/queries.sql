-- Named queries of the read side, loaded by `projections.queries`. Identifiers (schemas, tables, reports) never
-- enter SQL text here: they go as values to the server-side functions of migration 0002, which check and quote
-- them with format('%I').

-- create_shadow --
-- An empty copy of a projection's tables in its shadow schema, replacing an earlier one.
-- $1 live schema, $2 shadow schema, $3 tables
SELECT agentlog.create_shadow($1, $2, $3::text[]);

-- drop_shadow --
-- Remove a shadow schema.
-- $1 shadow schema
SELECT agentlog.drop_shadow($1);

-- shadow_exists --
-- Whether a shadow schema holds every table of the projection (a rebuild that can resume).
-- $1 shadow schema, $2 tables
SELECT count(*) = cardinality($2::text[])
  FROM information_schema.tables
 WHERE table_schema = $1 AND table_name = ANY ($2::text[]);

-- checkpoint_exists --
-- $1 checkpoint name
SELECT EXISTS (SELECT 1 FROM agentlog.checkpoints WHERE name = $1);

-- forget_rebuilds --
-- Remove the checkpoints of a projection's rebuilds (of any version). A prefix, not a LIKE pattern: the `_` in
-- projection names would match any character there, and forget the rebuilds of other projections.
-- The events those rebuilds skipped go with them.
-- $1 prefix of the projection's rebuild checkpoint names (replay.NAME.v)
WITH skips AS (DELETE FROM agentlog.skipped_events WHERE starts_with(handler_name, $1))
DELETE FROM agentlog.checkpoints WHERE starts_with(name, $1);

-- forget_skipped --
-- Forget the events a handler skipped (the live projection's, before its rebuild's take their place).
-- $1 handler name
DELETE FROM agentlog.skipped_events WHERE handler_name = $1;

-- adopt_skipped --
-- The events the rebuild skipped are now the live projection's (after `forget_skipped` of the live name).
-- $1 live name, $2 rebuild checkpoint name
UPDATE agentlog.skipped_events SET handler_name = $1 WHERE handler_name = $2;

-- select_checkpoint_row --
-- A checkpoint with what the lag and the swap need; with FOR UPDATE, the live runner's next commit waits.
-- $1 checkpoint name
SELECT transaction_id, global_position, last_recorded_at, events_applied
  FROM agentlog.checkpoints WHERE name = $1 FOR UPDATE;

-- swap_projection --
-- Replace the live tables by the shadow's (locks the live tables first), in the caller's transaction.
-- $1 live schema, $2 shadow schema, $3 tables
SELECT agentlog.swap_projection($1, $2, $3::text[]);

-- adopt_checkpoint --
-- The live projection continues from where its rebuild stopped: only from the rebuild checkpoint at the position
-- the swapping rebuild built its tables to. The row adopted comes back; none when that checkpoint is gone or
-- elsewhere, and the caller must then roll the swap back.
-- $1 live checkpoint name, $2 rebuild checkpoint name, $3 transaction_id, $4 global_position (the rebuild's)
INSERT INTO agentlog.checkpoints AS live
       (name, transaction_id, global_position, last_recorded_at, events_applied, updated_at)
SELECT $1, transaction_id, global_position, last_recorded_at, events_applied, now()
  FROM agentlog.checkpoints
 WHERE name = $2 AND transaction_id = $3::xid8 AND global_position = $4::bigint
ON CONFLICT (name) DO UPDATE
   SET transaction_id = excluded.transaction_id, global_position = excluded.global_position,
       last_recorded_at = excluded.last_recorded_at, events_applied = excluded.events_applied,
       updated_at = now()
RETURNING live.transaction_id, live.global_position;

-- record_version --
-- The live tables of a projection are now built by this version.
-- $1 projection name, $2 version, $3 rebuilt (true after a rebuild, false when first registered)
INSERT INTO agentlog.projections AS p (name, version, rebuilt_at)
VALUES ($1, $2, CASE WHEN $3 THEN now() END)
ON CONFLICT (name) DO UPDATE SET version = excluded.version, rebuilt_at = coalesce(excluded.rebuilt_at, p.rebuilt_at);

-- select_versions --
-- The version each registered projection's live tables were built by.
SELECT name, version FROM agentlog.projections;

-- count_events_after --
-- How many events come after a position (the progress bar's total).
-- $1 transaction_id, $2 global_position
SELECT count(*) FROM agentlog.events WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint);

-- table_differences --
-- Rows only live or only rebuilt, for one table.
-- $1 live schema, $2 shadow schema, $3 table, $4 most rows per side
SELECT side, row_data FROM agentlog.table_differences($1, $2, $3, $4);

-- list_reports --
-- Every report view with its description.
SELECT c.relname AS name, coalesce(obj_description(c.oid, 'pg_class'), '') AS description
  FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = 'reports' AND c.relkind = 'v'
 ORDER BY c.relname;

-- report_columns --
-- A report's columns in order.
-- $1 report name
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'reports' AND table_name = $1 ORDER BY ordinal_position;

-- report_rows --
-- A report's rows as JSON objects in column order.
-- $1 report name
SELECT agentlog.report_rows($1);
