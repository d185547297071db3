-- Named SQL of `agentlog.database` (loaded by `database.py`), run through psycopg: its placeholders are `%s`, in
-- order. The comments below name the parameters in words and never write a percent sign: psycopg reads one in a
-- comment as a placeholder too.

-- reachable --
-- Whether the server answers. No parameters.
SELECT 1;

-- lock_migrations --
-- Take the advisory lock every migrator holds (alembic/env.py) until the transaction ends.
-- Parameter: the lock key (MIGRATION_LOCK_KEY).
SELECT pg_advisory_xact_lock(%s);

-- advance_epoch --
-- Seal the log for this cluster: move the transaction epoch past the log when the database was restored or moved
-- into another cluster (0005_log_under_operators.sql). No parameters.
SELECT previous_offset, transaction_id_offset, cluster_changed FROM agentlog.advance_transaction_epoch();

-- grant_privileges --
-- Give the roles their privileges on everything the migrations made. No parameters.
SELECT agentlog.grant_privileges();

-- register_schemas --
-- Record the event catalogue's schemas.
-- Parameter: the schemas, a JSON array.
SELECT agentlog.register_event_schemas(%s::jsonb);

-- checkpoints_out_of_order --
-- The checkpoints with events behind them that they never passed (the log's order is broken). No parameters.
SELECT name, events_passed, events_at_or_before FROM agentlog.checkpoints_out_of_order();

-- is_superuser --
-- Whether the connected role is a superuser. No parameters.
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;

-- server_behind_log --
-- Whether the next transaction id this server assigns, shifted, would not sort above the newest recorded event.
-- No parameters.
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint + (SELECT transaction_id_offset FROM agentlog.log_epoch)
       <= (SELECT transaction_id::text::bigint FROM agentlog.events
            ORDER BY transaction_id DESC, global_position DESC LIMIT 1);
