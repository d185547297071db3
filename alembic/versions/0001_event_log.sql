-- The event log: one append-only table, the function every writer appends through, and the handler checkpoints.
--
-- ORDERING (the invariant every reader depends on)
-- ------------------------------------------------
-- global_position is an identity column: it is taken at INSERT time but becomes visible at COMMIT time, so a
-- reader that trusts "global_position > last seen" skips an event whose transaction commits after a later one.
-- We do not serialise writers to avoid that (a table lock costs most of the write throughput on concurrent
-- connections). Instead every event carries the id of the transaction that wrote it, and the canonical order of
-- the log is (transaction_id, global_position). Readers of the whole log or of a category only take rows with
--
--     transaction_id < pg_snapshot_xmin(pg_current_snapshot())
--
-- i.e. rows written by transactions that are all finished: below the oldest transaction still running, no row
-- can appear any more, so what a reader sees below that barrier is final and a checkpoint in that order never
-- skips anything. The cost: any long write transaction in the cluster holds subscribers back (we set
-- idle_in_transaction_session_timeout on our connections and export the barrier's age).
--
-- One more guard keeps the order of a stream equal to its version order: a transaction that obtained its
-- transaction id before another transaction appended to the same stream would sort before that append while
-- carrying a higher stream version. append_events therefore takes the per-stream locks first (sorted, so two
-- batches never deadlock), only then causes its transaction id to be assigned by inserting, and, for callers that
-- already hold a transaction id from earlier work in the same transaction, refuses with serialization_failure
-- (40001) when the stream's head was written by a newer transaction. The caller retries in a new transaction.

CREATE SCHEMA agentlog;

CREATE TABLE agentlog.events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    category        text        NOT NULL GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_stream_id_valid CHECK (
        octet_length(stream_id) BETWEEN 1 AND 200 AND stream_id !~ '[[:space:][:cntrl:]]'),
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT events_event_type_valid CHECK (event_type ~ '^[A-Za-z][A-Za-z0-9_.]{0,127}$'),
    CONSTRAINT events_schema_version_positive CHECK (schema_version >= 1),
    CONSTRAINT events_data_is_object CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT events_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE agentlog.events IS
    'The append-only log. Canonical order: (transaction_id, global_position), read below pg_snapshot_xmin.';

-- Reading the whole log and one category in canonical order.
CREATE INDEX events_canonical_order_idx ON agentlog.events (transaction_id, global_position);
CREATE INDEX events_category_order_idx ON agentlog.events (category, transaction_id, global_position);

-- Invariant 1: nothing recorded is ever changed or removed.
CREATE FUNCTION agentlog.reject_event_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'agentlog.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'AL000', HINT = 'Append a new event that corrects the old one.';
END
$$;

CREATE TRIGGER events_reject_update_delete BEFORE UPDATE OR DELETE ON agentlog.events
    FOR EACH ROW EXECUTE FUNCTION agentlog.reject_event_changes();
CREATE TRIGGER events_reject_truncate BEFORE TRUNCATE ON agentlog.events
    FOR EACH STATEMENT EXECUTE FUNCTION agentlog.reject_event_changes();

-- append_events: one call appends a batch of events over one or more streams, atomically.
--
--   stream_ids[i], event_ids[i], event_types[i], schema_versions[i], data[i], metadata[i] describe event i;
--   expected_versions[i] is read at the first event of each stream in the batch (later ones are ignored):
--     NULL = any version, 0 = the stream must not exist yet, n = the stream's current version must be n.
--   notify = true sends NOTIFY agentlog_events inside this transaction (convenient from psql; it serialises
--     commits database-wide, so the Python client sends its wake-up after the commit instead).
--
-- Idempotent by event id: if every event of a stream's part of the batch is already in the log with the same
-- stream, type and data, those rows are returned with duplicate = true and nothing is appended (whatever the
-- expected version: a retry of an append that succeeded carries a stale one). The same id with other content, or
-- a stream part that mixes recorded and new ids, is an error (AL002).
-- Errors: AL001 wrong expected version, AL002 event id conflict, AL003 malformed arguments,
--         40001 the caller's transaction is older than the stream's head (retry in a new transaction).
--
-- Cost: the common case (new events) runs three statements per stream: the lock, the head lookup and one
-- INSERT ... ON CONFLICT (event_id) DO NOTHING. Recorded ids are found by that conflict, not by a probe; only when
-- the insert skipped something (or a version check failed) does the slow path look at what is recorded.
CREATE FUNCTION agentlog.append_events(
    stream_ids        text[],
    expected_versions bigint[],
    event_ids         uuid[],
    event_types       text[],
    schema_versions   integer[],
    data              jsonb[],
    metadata          jsonb[],
    notify            boolean DEFAULT false
) RETURNS TABLE (
    event_id        uuid,
    stream_id       text,
    stream_version  bigint,
    global_position bigint,
    transaction_id  xid8,
    duplicate       boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    event_count      integer := cardinality(event_ids);
    streams          text[];
    heads            bigint[] := ARRAY[]::bigint[];
    recorded_streams text[] := ARRAY[]::text[];
    one_stream       text;
    head_version     bigint;
    head_transaction xid8;
    expected         bigint;
    own_transaction  xid8;
    expected_inserts integer := 0;
    inserted_count   integer;
BEGIN
    IF event_count IS NULL OR event_count = 0 THEN
        RAISE EXCEPTION 'append_events needs at least one event' USING ERRCODE = 'AL003';
    END IF;
    IF cardinality(stream_ids) IS DISTINCT FROM event_count
       OR cardinality(expected_versions) IS DISTINCT FROM event_count
       OR cardinality(event_types) IS DISTINCT FROM event_count
       OR cardinality(schema_versions) IS DISTINCT FROM event_count
       OR cardinality(data) IS DISTINCT FROM event_count
       OR cardinality(metadata) IS DISTINCT FROM event_count THEN
        RAISE EXCEPTION 'append_events needs arrays of equal length, one element per event (% events)', event_count
            USING ERRCODE = 'AL003';
    END IF;
    IF array_position(stream_ids, NULL) IS NOT NULL OR array_position(event_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'append_events: stream_ids and event_ids must not contain NULL' USING ERRCODE = 'AL003';
    END IF;

    -- Lock every stream of the batch, in sorted order, before this transaction writes anything (see ORDERING).
    IF event_count = 1 THEN
        streams := stream_ids;
    ELSE
        streams := ARRAY(SELECT DISTINCT s FROM unnest(stream_ids) AS s ORDER BY s);
    END IF;
    FOREACH one_stream IN ARRAY streams LOOP
        PERFORM pg_advisory_xact_lock(1095524683, hashtext(one_stream));
    END LOOP;
    own_transaction := pg_current_xact_id_if_assigned();

    FOREACH one_stream IN ARRAY streams LOOP
        head_version := NULL;
        head_transaction := NULL;
        SELECT e.stream_version, e.transaction_id INTO head_version, head_transaction
          FROM agentlog.events AS e
         WHERE e.stream_id = one_stream
         ORDER BY e.stream_version DESC
         LIMIT 1;
        head_version := coalesce(head_version, 0);
        expected := expected_versions[array_position(stream_ids, one_stream)];
        IF expected IS NOT NULL AND expected <> head_version THEN
            IF agentlog.recorded_count(one_stream, stream_ids, event_ids) = 0 THEN
                RAISE EXCEPTION 'wrong expected version for stream %: expected %, actual %',
                    one_stream, expected, head_version
                    USING ERRCODE = 'AL001',
                          DETAIL = json_build_object('stream_id', one_stream, 'expected_version', expected,
                                                     'actual_version', head_version)::text;
            END IF;
            recorded_streams := recorded_streams || one_stream;  -- a retry: checked below, never inserted
            heads := heads || NULL::bigint;
            CONTINUE;
        END IF;
        IF own_transaction IS NOT NULL AND head_transaction > own_transaction THEN
            RAISE EXCEPTION 'stream % was appended to by a newer transaction; retry in a new transaction',
                one_stream USING ERRCODE = '40001';
        END IF;
        heads := heads || head_version;
    END LOOP;
    expected_inserts := event_count;
    IF cardinality(recorded_streams) > 0 THEN
        expected_inserts := (SELECT count(*) FROM unnest(stream_ids) AS s WHERE s <> ALL (recorded_streams));
    END IF;

    IF event_count = 1 AND expected_inserts = 1 THEN
        RETURN QUERY
        INSERT INTO agentlog.events AS e
               (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
        VALUES (event_ids[1], stream_ids[1], heads[1] + 1, event_types[1], schema_versions[1], data[1],
                coalesce(metadata[1], '{}'::jsonb))
        ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
        RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
    ELSIF expected_inserts > 0 THEN
        RETURN QUERY
        WITH incoming AS (
            SELECT i.*, h.head_version + row_number() OVER (PARTITION BY i.stream_id ORDER BY i.ordinal) AS version
              FROM unnest(stream_ids, event_ids, event_types, schema_versions, data, metadata)
                     WITH ORDINALITY AS i(stream_id, event_id, event_type, schema_version, data, metadata, ordinal)
              JOIN unnest(streams, heads) AS h(stream_id, head_version) ON h.stream_id = i.stream_id
             WHERE h.head_version IS NOT NULL
        )
        INSERT INTO agentlog.events AS e
               (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
        SELECT i.event_id, i.stream_id, i.version, i.event_type, i.schema_version, i.data,
               coalesce(i.metadata, '{}'::jsonb)
          FROM incoming AS i
         ORDER BY i.ordinal
        ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
        RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
    END IF;
    GET DIAGNOSTICS inserted_count = ROW_COUNT;

    IF expected_inserts > 0 AND inserted_count < expected_inserts THEN
        -- Some ids were recorded already. Only whole streams may be retries: a stream of which nothing was
        -- inserted is checked as one below; one that was partly inserted is refused, and the exception undoes it.
        -- What this call inserted sits above the stream's head as it was under the lock.
        FOR one_stream, head_version IN SELECT * FROM unnest(streams, heads) LOOP
            CONTINUE WHEN head_version IS NULL;
            inserted_count := agentlog.inserted_above(one_stream, head_version, stream_ids, event_ids);
            IF inserted_count = 0 THEN
                recorded_streams := recorded_streams || one_stream;
            ELSIF inserted_count < (SELECT count(*) FROM unnest(stream_ids) AS s WHERE s = one_stream) THEN
                RAISE EXCEPTION 'batch for stream % mixes already recorded event(s) with new ones', one_stream
                    USING ERRCODE = 'AL002';
            END IF;
        END LOOP;
    END IF;

    IF cardinality(recorded_streams) > 0 THEN
        PERFORM agentlog.check_recorded(recorded_streams, stream_ids, event_ids, event_types, schema_versions, data);
        RETURN QUERY
        SELECT e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, true
          FROM agentlog.events AS e
         WHERE e.event_id = ANY (event_ids) AND e.stream_id = ANY (recorded_streams)
         ORDER BY e.stream_version;
    END IF;

    IF notify THEN
        PERFORM pg_notify('agentlog_events', '');
    END IF;
END
$$;

-- How many of a stream's events in a batch are recorded already (the slow path of append_events).
CREATE FUNCTION agentlog.recorded_count(one_stream text, stream_ids text[], event_ids uuid[]) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*)
      FROM unnest(stream_ids, event_ids) AS i(stream_id, event_id)
      JOIN agentlog.events AS e ON e.event_id = i.event_id
     WHERE i.stream_id = one_stream;
$$;

-- How many of a stream's events in a batch sit above `head_version`, i.e. were inserted by this append.
CREATE FUNCTION agentlog.inserted_above(one_stream text, head_version bigint, stream_ids text[], event_ids uuid[])
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*)
      FROM unnest(stream_ids, event_ids) AS i(stream_id, event_id)
      JOIN agentlog.events AS e ON e.event_id = i.event_id
     WHERE i.stream_id = one_stream AND e.stream_id = one_stream AND e.stream_version > head_version;
$$;

-- Every event of the given streams must be recorded, identically: else the batch is refused whole (AL002).
CREATE FUNCTION agentlog.check_recorded(
    recorded_streams text[], stream_ids text[], event_ids uuid[], event_types text[], schema_versions integer[],
    data jsonb[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    one_stream     text;
    stream_size    integer;
    recorded       integer;
    identical      integer;
BEGIN
    FOREACH one_stream IN ARRAY recorded_streams LOOP
        SELECT count(*),
               count(e.event_id),
               count(*) FILTER (WHERE e.stream_id = i.stream_id AND e.event_type = i.event_type
                                  AND e.schema_version = i.schema_version AND e.data = i.data)
          INTO stream_size, recorded, identical
          FROM unnest(stream_ids, event_ids, event_types, schema_versions, data)
                 AS i(stream_id, event_id, event_type, schema_version, data)
          LEFT JOIN agentlog.events AS e ON e.event_id = i.event_id
         WHERE i.stream_id = one_stream;
        IF identical <> recorded THEN
            RAISE EXCEPTION 'event id already recorded with different content in stream %', one_stream
                USING ERRCODE = 'AL002';
        END IF;
        IF recorded <> stream_size THEN
            RAISE EXCEPTION 'batch for stream % mixes % already recorded event(s) with % new one(s)',
                one_stream, recorded, stream_size - recorded USING ERRCODE = 'AL002';
        END IF;
    END LOOP;
END
$$;

-- append_event: the one-event form for people and scripts (psql, other languages). Notifies in the transaction.
CREATE FUNCTION agentlog.append_event(
    stream_id        text,
    event_type       text,
    data             jsonb,
    expected_version bigint  DEFAULT NULL,
    event_id         uuid    DEFAULT gen_random_uuid(),
    metadata         jsonb   DEFAULT '{}'::jsonb,
    schema_version   integer DEFAULT 1,
    notify           boolean DEFAULT true
) RETURNS TABLE (
    event_id        uuid,
    stream_id       text,
    stream_version  bigint,
    global_position bigint,
    transaction_id  xid8,
    duplicate       boolean
)
LANGUAGE sql AS $$
    SELECT * FROM agentlog.append_events(
        ARRAY[stream_id], ARRAY[expected_version], ARRAY[event_id], ARRAY[event_type],
        ARRAY[schema_version], ARRAY[data], ARRAY[metadata], notify);
$$;

-- Checkpoints: where each handler is in the canonical order. Written in the same transaction as its effects.
CREATE TABLE agentlog.checkpoints (
    name             text        PRIMARY KEY,
    transaction_id   xid8        NOT NULL DEFAULT '0'::xid8,
    global_position  bigint      NOT NULL DEFAULT 0,
    last_recorded_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkpoints_name_valid CHECK (name ~ '^[a-z][a-z0-9_.-]{0,99}$')
);

-- Lag of every handler: events after its checkpoint and the age of the oldest one it has not applied yet.
CREATE VIEW agentlog.handler_lag AS
SELECT c.name,
       c.global_position,
       c.transaction_id,
       c.updated_at,
       (SELECT count(*)
          FROM agentlog.events AS e
         WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)) AS events_behind,
       coalesce(extract(epoch FROM now() - (
           SELECT e.recorded_at
             FROM agentlog.events AS e
            WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
            ORDER BY e.transaction_id, e.global_position
            LIMIT 1)), 0)::double precision AS seconds_behind
  FROM agentlog.checkpoints AS c;

-- The head of the log and the age of the visibility barrier (the oldest running write transaction).
CREATE VIEW agentlog.log_head AS
SELECT (SELECT max(global_position) FROM agentlog.events) AS global_position,
       pg_snapshot_xmin(pg_current_snapshot()) AS barrier_transaction_id,
       coalesce((SELECT extract(epoch FROM now() - min(a.xact_start))
                   FROM pg_stat_activity AS a
                  WHERE a.backend_xid IS NOT NULL), 0)::double precision AS barrier_age_seconds;
