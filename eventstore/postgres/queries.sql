-- Named queries of the log, loaded by `eventstore.postgres.queries`. Each block starts with "-- name --" and a
-- purpose line; parameters are numbered ($1, $2, ...) and described under the purpose line.
--
-- Reads of the whole log or of a category take only rows below the visibility barrier
-- agentlog.visibility_barrier() (pg_snapshot_xmin(pg_current_snapshot()) shifted by the log's transaction epoch)
-- and order by (transaction_id, global_position): see ORDERING in alembic/versions/0001_event_log.sql for why that
-- never skips an event that commits late, and TRANSACTION EPOCH in 0005_log_under_operators.sql for the shift.

-- append_events --
-- Append a batch over one or more streams in one call (the function checks versions and idempotency).
-- $1 stream_ids, $2 expected_versions, $3 event_ids, $4 event_types, $5 schema_versions, $6 data, $7 metadata
SELECT event_id, stream_id, stream_version, global_position, transaction_id, duplicate
  FROM agentlog.append_events($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::integer[],
                              $6::jsonb[], $7::jsonb[], false);

-- append_event --
-- Append one event: the same function, with scalars the client sends more cheaply than one-element arrays.
-- $1 stream_id, $2 expected_version, $3 event_id, $4 event_type, $5 schema_version, $6 data, $7 metadata
SELECT event_id, stream_id, stream_version, global_position, transaction_id, duplicate
  FROM agentlog.append_events(ARRAY[$1::text], ARRAY[$2::bigint], ARRAY[$3::uuid], ARRAY[$4::text],
                              ARRAY[$5::integer], ARRAY[$6::jsonb], ARRAY[$7::jsonb], false);

-- append_one_to_stream --
-- The common case of a one-event append in its own transaction, as one call (see `agentlog.append_to_stream`:
-- it only ever succeeds plainly; no row or a unique violation sends the caller to `append_event`).
-- $1 stream_id, $2 expected_version, $3 the version to append right after when the client knows the stream
-- reached it (`eventstore.stream_heads`; NULL: look the head up), $4 event_id, $5 event_type, $6 schema_version,
-- $7 data, $8 metadata
SELECT event_id, stream_id, stream_version, global_position, transaction_id, duplicate
  FROM agentlog.append_one_to_stream($1::text, $2::bigint, $3::bigint, $4::uuid, $5::text, $6::integer, $7::jsonb,
                                     $8::jsonb);

-- append_to_stream --
-- Several events to one stream in their own transaction, as one call (the batch counterpart of
-- append_one_to_stream, with the same outcomes).
-- $1 stream_id, $2 expected_version, $3 the version to append right after (or NULL), $4 event_ids,
-- $5 event_types, $6 schema_versions, $7 data, $8 metadata
SELECT event_id, stream_id, stream_version, global_position, transaction_id, duplicate
  FROM agentlog.append_to_stream($1::text, $2::bigint, $3::bigint, $4::uuid[], $5::text[], $6::integer[],
                                 $7::jsonb[], $8::jsonb[]);

-- select_stream --
-- Events of one stream in version order, from a version on.
-- $1 stream_id, $2 first stream_version to return, $3 limit
SELECT global_position, transaction_id, event_id, stream_id, stream_version, category, event_type,
       schema_version, data, metadata, recorded_at
  FROM agentlog.events
 WHERE stream_id = $1 AND stream_version >= $2
 ORDER BY stream_version
 LIMIT $3;

-- select_stream_version --
-- The current version of one stream (0 when it has no events).
-- $1 stream_id
SELECT coalesce(max(stream_version), 0) FROM agentlog.events WHERE stream_id = $1;

-- select_log --
-- Events of the whole log after a position, in canonical order, below the visibility barrier.
-- $1 transaction_id, $2 global_position (the position to read after), $3 limit
SELECT global_position, transaction_id, event_id, stream_id, stream_version, category, event_type,
       schema_version, data, metadata, recorded_at
  FROM agentlog.events
 WHERE transaction_id < agentlog.visibility_barrier()
   AND (transaction_id, global_position) > ($1::xid8, $2::bigint)
 ORDER BY transaction_id, global_position
 LIMIT $3;

-- select_category --
-- Events of one category after a position, in canonical order, below the visibility barrier.
-- $1 category, $2 transaction_id, $3 global_position (the position to read after), $4 limit
SELECT global_position, transaction_id, event_id, stream_id, stream_version, category, event_type,
       schema_version, data, metadata, recorded_at
  FROM agentlog.events
 WHERE category = $1
   AND transaction_id < agentlog.visibility_barrier()
   AND (transaction_id, global_position) > ($2::xid8, $3::bigint)
 ORDER BY transaction_id, global_position
 LIMIT $4;

-- select_held_back --
-- Whether committed events after a position are there for a reader whose read (below the barrier) just came back
-- empty: held behind the barrier (a transaction still runs below them), or committed or let through since that
-- read. Either way the reader reads again soon. Asking only for events above the barrier lost the second kind:
-- an event let through between the read and this check, its NOTIFY consumed before the read, waited for the
-- fallback poll.
-- $1 transaction_id, $2 global_position
SELECT EXISTS (
    SELECT 1 FROM agentlog.events
     WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint));

-- select_held_back_in_category --
-- `select_held_back` for a reader of one category: only its events count (others never reach it).
-- $1 category, $2 transaction_id, $3 global_position
SELECT EXISTS (
    SELECT 1 FROM agentlog.events
     WHERE category = $1
       AND (transaction_id, global_position) > ($2::xid8, $3::bigint));

-- select_head --
-- The position of the last event in canonical order that readers can see now (START when none).
SELECT transaction_id, global_position
  FROM agentlog.events
 WHERE transaction_id < agentlog.visibility_barrier()
 ORDER BY transaction_id DESC, global_position DESC
 LIMIT 1;

-- select_position_of --
-- The canonical position of the event with a given global position (to start reading after it).
-- $1 global_position
SELECT transaction_id, global_position FROM agentlog.events WHERE global_position = $1;

-- notify --
-- Wake the listeners of a channel up (`agentlog_events`: the log's subscribers). Sent after the transaction that
-- wrote committed, in its own tiny transaction.
-- $1 channel, $2 the sender's origin, so that its own listener can ignore it (any other payload wakes everyone)
SELECT pg_notify($1::text, $2::text);

-- probe --
-- Whether a connection still answers (the listener's, between notifications). No parameters.
SELECT 1;

-- try_lock_handler --
-- Try to become the one active instance of a handler (session advisory lock, released when the session ends).
-- $1 handler name
SELECT pg_try_advisory_lock(1095524685, hashtext($1));

-- handler_lock_held --
-- Whether some session holds the lock `try_lock_handler` takes for this name (without trying to take it).
-- $1 handler name
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 2
       AND classid = 1095524685::oid AND objid = hashtext($1)::oid
);

-- ensure_checkpoint --
-- Create a handler's checkpoint at the start of the log if it has none.
-- $1 handler name
INSERT INTO agentlog.checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING;

-- select_checkpoint --
-- A handler's checkpoint.
-- $1 handler name
SELECT transaction_id, global_position FROM agentlog.checkpoints WHERE name = $1;

-- advance_checkpoint --
-- Move a handler's checkpoint forward, compare-and-set: no row comes back if another instance moved it.
-- $1 handler name, $2 expected transaction_id, $3 expected global_position,
-- $4 new transaction_id, $5 new global_position, $6 recorded_at of the last event, $7 events passed
UPDATE agentlog.checkpoints
   SET transaction_id = $4::xid8, global_position = $5, last_recorded_at = $6,
       events_applied = events_applied + $7, updated_at = now()
 WHERE name = $1 AND transaction_id = $2::xid8 AND global_position = $3
RETURNING name;

-- begin_batch --
-- Open a handler's next batch transaction ahead of time. A transaction that has run no statement holds no
-- snapshot, no transaction id and no lock, so it holds back neither vacuum nor subscribers nor DDL.
BEGIN;

-- commit_batch --
-- Commit a handler's batch and open the next one's transaction, in one statement and one round trip. Its status
-- tag is the outcome: COMMIT, or ROLLBACK when the transaction had failed (a statement's error was caught and
-- ignored), which PostgreSQL rolls back without an error. The next transaction is opened either way; if the
-- COMMIT itself fails (an error raised), none is opened and the session is left outside a transaction.
COMMIT AND CHAIN;

-- abandon_batch --
-- Roll a handler's batch back (or end a claim that found nothing, releasing the locks its statement took) and
-- open the next one's transaction, in one round trip.
ROLLBACK; BEGIN;

-- rollback_given_back --
-- End the transaction a connection was given back to the pool in (a caller's failed or abandoned one), so the next
-- caller starts outside a transaction. No parameters.
ROLLBACK;

-- commit_durably --
-- Make the open transaction's commit wait for its WAL flush, on a session that commits asynchronously otherwise.
SET LOCAL synchronous_commit TO on;

-- claim_batch --
-- Inside a handler's batch transaction: read the next events after its checkpoint (canonical order, below the
-- barrier) and move the checkpoint past them, compare-and-set, in one round trip. `moved` is 0 on every row if
-- another instance moved the checkpoint (the caller rolls back); no rows means nothing to do.
-- $1 handler name, $2 transaction_id, $3 global_position (the checkpoint), $4 limit
WITH batch AS MATERIALIZED (
    SELECT global_position, transaction_id, event_id, stream_id, stream_version, category, event_type,
           schema_version, data, metadata, recorded_at
      FROM agentlog.events
     WHERE transaction_id < agentlog.visibility_barrier()
       AND (transaction_id, global_position) > ($2::xid8, $3::bigint)
     ORDER BY transaction_id, global_position
     LIMIT $4
), last AS (
    SELECT transaction_id, global_position, recorded_at, (SELECT count(*) FROM batch) AS events
      FROM batch
     ORDER BY transaction_id DESC, global_position DESC
     LIMIT 1
), moved AS (
    UPDATE agentlog.checkpoints AS c
       SET transaction_id = last.transaction_id, global_position = last.global_position,
           last_recorded_at = last.recorded_at, events_applied = c.events_applied + last.events, updated_at = now()
      FROM last
     WHERE c.name = $1 AND c.transaction_id = $2::xid8 AND c.global_position = $3::bigint
    RETURNING c.name
)
SELECT batch.*, (SELECT count(*) FROM moved) AS moved
  FROM batch
 ORDER BY transaction_id, global_position;

-- select_handler_lag --
-- Lag of every handler, or of the named ones.
-- $1 handler names (NULL for all)
SELECT name, global_position, transaction_id, events_behind, seconds_behind, updated_at, events_skipped
  FROM agentlog.handler_lag
 WHERE $1::text[] IS NULL OR name = ANY ($1::text[])
 ORDER BY name;

-- select_schema_ready --
-- Whether the log's schema exists in this database.
SELECT to_regclass('agentlog.events') IS NOT NULL;

-- select_barrier_holders --
-- The transactions holding the visibility barrier back, oldest first: sessions and prepared transactions (the
-- first row is the one subscribers wait for).
SELECT kind, pid, prepared_gid, age_seconds, database_name, user_name, application_name, state, query
  FROM agentlog.barrier_holders();

-- insert_skipped --
-- Record the events a handler's batch skips because it cannot decode them, in the batch's transaction (a retried
-- batch records nothing twice).
-- $1 handler name, $2 global_positions, $3 transaction_ids, $4 event_ids, $5 stream_ids, $6 event_types,
-- $7 schema_versions, $8 reasons
INSERT INTO agentlog.skipped_events
       (handler_name, global_position, transaction_id, event_id, stream_id, event_type, schema_version, reason)
SELECT $1, * FROM unnest($2::bigint[], $3::xid8[], $4::uuid[], $5::text[], $6::text[], $7::integer[], $8::text[])
ON CONFLICT (handler_name, global_position) DO NOTHING;

-- select_skipped --
-- The events a handler skipped, in log order, from a global position on.
-- $1 handler name, $2 limit
SELECT global_position, transaction_id, event_id, stream_id, event_type, schema_version, reason, skipped_at
  FROM agentlog.skipped_events
 WHERE handler_name = $1
 ORDER BY transaction_id, global_position
 LIMIT $2;
