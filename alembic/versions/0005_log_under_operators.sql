-- The log under operators: its order survives a restore into another cluster, a stream's order no longer refuses
-- older transactions, every append goes through a function that pins what no caller may choose, a batch that
-- repeats an event id is refused whole, and the documented SQL path checks payloads and sizes.
--
-- TRANSACTION EPOCH
-- -----------------
-- The canonical order is (transaction_id, global_position), read below the visibility barrier (see ORDERING in
-- 0001_event_log.sql). The server's transaction ids only grow within one cluster; a logical restore or move into
-- another cluster starts them low again, so new events would sort below every checkpoint and never be delivered.
-- So the log does not record the server's id as it is but `server id + transaction_id_offset`, and reads below
-- `barrier + transaction_id_offset`: the same shift on both sides keeps every argument of ORDERING intact.
-- `agentlog migrate` (and so `agentlog up`) calls advance_transaction_epoch, which raises the offset when it finds
-- the server behind the log; `log_epoch` also remembers which cluster the offset was made for, and every append
-- refuses (AL005) in another cluster until the offset was checked there, so nothing can be appended into a
-- restored log before its order is sealed.
--
-- A STREAM'S ORDER
-- ----------------
-- A transaction that got its id before another transaction appended to a stream would sort before that append
-- while carrying a later version. append_events used to refuse such callers (40001), which starved handlers that
-- append to busy streams: a handler's batch gets its transaction id at its claim. Now it records such an event
-- with the head's transaction id instead of its own (greatest of the two): the event then sorts right after its
-- predecessor (same transaction id, higher global position), and the barrier argument still holds, because the
-- recorded id is never below the transaction's own id. Ids recorded this way never exceed an id the server had
-- assigned when the event was inserted, so a later transaction's own id is always above them.

CREATE TABLE agentlog.log_epoch (
    singleton             boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    transaction_id_offset bigint      NOT NULL CHECK (transaction_id_offset >= 0),
    cluster_id            text        NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE agentlog.log_epoch IS
    'Recorded transaction ids are server ids plus transaction_id_offset, valid in the cluster cluster_id.';
INSERT INTO agentlog.log_epoch (transaction_id_offset, cluster_id)
VALUES (0, (pg_control_system()).system_identifier::text);

-- The offset for appends, or AL005 when this is not the cluster the offset was made for.
CREATE FUNCTION agentlog.transaction_id_offset() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    epoch agentlog.log_epoch;
BEGIN
    SELECT * INTO epoch FROM agentlog.log_epoch;
    IF epoch.cluster_id IS DISTINCT FROM (pg_control_system()).system_identifier::text THEN
        RAISE EXCEPTION 'this log was restored or moved into another PostgreSQL cluster; its order is not sealed here'
            USING ERRCODE = 'AL005',
                  HINT = 'Run `agentlog migrate` (or `agentlog up`) before appending: it moves the epoch past the log.';
    END IF;
    RETURN epoch.transaction_id_offset;
END
$$;

-- The transaction id an event of the current transaction records (assigns the server's id if needed).
CREATE FUNCTION agentlog.current_transaction_id() RETURNS xid8
LANGUAGE sql VOLATILE AS $$
    SELECT (pg_current_xact_id()::text::bigint + agentlog.transaction_id_offset())::text::xid8;
$$;

-- The visibility barrier in recorded ids: rows below it are final (see ORDERING).
CREATE FUNCTION agentlog.visibility_barrier() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint
            + (SELECT transaction_id_offset FROM agentlog.log_epoch))::text::xid8;
$$;

ALTER TABLE agentlog.events ALTER COLUMN transaction_id SET DEFAULT agentlog.current_transaction_id();

-- advance_transaction_epoch: make every transaction id recorded from now on sort after everything recorded and
-- every checkpoint, in this cluster. Run by `agentlog migrate`. Nothing to do in the cluster the offset was made
-- for (its ids only grow). Elsewhere it waits for every transaction that is appending (they hold ROW EXCLUSIVE on
-- the log) and keeps new ones out until it commits, then raises the offset so that the oldest running
-- transaction's id, shifted, is above the newest recorded id.
CREATE FUNCTION agentlog.advance_transaction_epoch()
RETURNS TABLE (previous_offset bigint, transaction_id_offset bigint, cluster_changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    epoch          agentlog.log_epoch;
    here           text := (pg_control_system()).system_identifier::text;
    newest         bigint;
    oldest_running bigint;
BEGIN
    SELECT * INTO epoch FROM agentlog.log_epoch;
    IF epoch.cluster_id = here THEN
        RETURN QUERY SELECT epoch.transaction_id_offset, epoch.transaction_id_offset, false;
        RETURN;
    END IF;
    LOCK TABLE agentlog.events IN SHARE MODE;
    SELECT * INTO epoch FROM agentlog.log_epoch FOR UPDATE;
    newest := greatest(
        (SELECT e.transaction_id::text::bigint FROM agentlog.events AS e
          ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1),
        (SELECT max(c.transaction_id::text::bigint) FROM agentlog.checkpoints AS c),
        0);
    oldest_running := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    previous_offset := epoch.transaction_id_offset;
    transaction_id_offset := greatest(previous_offset, newest - oldest_running + 1);
    UPDATE agentlog.log_epoch AS l
       SET transaction_id_offset = advance_transaction_epoch.transaction_id_offset, cluster_id = here,
           updated_at = now();
    cluster_changed := true;
    RETURN NEXT;
END
$$;

-- Checkpoints with events behind them that they never passed: the order was broken (e.g. events appended into a
-- restored log by a client that bypassed the epoch). A checkpoint counts the events it passed; the log must hold
-- exactly that many at or before it. One count per distinct position (caught-up handlers share theirs).
CREATE FUNCTION agentlog.checkpoints_out_of_order()
RETURNS TABLE (name text, events_passed bigint, events_at_or_before bigint)
LANGUAGE sql STABLE AS $$
    WITH positions AS (
        SELECT DISTINCT c.transaction_id, c.global_position FROM agentlog.checkpoints AS c
    ), counted AS (
        SELECT p.transaction_id, p.global_position,
               (SELECT count(*) FROM agentlog.events AS e
                 WHERE (e.transaction_id, e.global_position) <= (p.transaction_id, p.global_position)) AS events
          FROM positions AS p
    )
    SELECT c.name, c.events_applied, counted.events
      FROM agentlog.checkpoints AS c
      JOIN counted USING (transaction_id, global_position)
     WHERE counted.events <> c.events_applied
     ORDER BY c.name;
$$;

-- The catalogue's schemas, for the SQL path's payload checks. `agentlog migrate` writes every installed event
-- type here; types not listed (other writers' own) are not checked. `required`: fields that must be present;
-- `allowed`: the only fields allowed (NULL: any); `property_types`: JSON types allowed per field, for the fields
-- whose schema says so simply.
CREATE TABLE agentlog.event_schemas (
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    required       text[]      NOT NULL,
    allowed        text[],
    property_types jsonb       NOT NULL,
    json_schema    jsonb       NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_schemas_pkey PRIMARY KEY (event_type, schema_version)
);

-- Record the installed catalogue's schemas (run by `agentlog migrate`): one JSON object per type and version with
-- event_type, schema_version, required, allowed, property_types and json_schema.
CREATE FUNCTION agentlog.register_event_schemas(schemas jsonb) RETURNS integer
LANGUAGE sql AS $$
    WITH registered AS (
        INSERT INTO agentlog.event_schemas AS s
               (event_type, schema_version, required, allowed, property_types, json_schema, updated_at)
        SELECT item->>'event_type', (item->>'schema_version')::integer,
               ARRAY(SELECT jsonb_array_elements_text(item->'required')),
               CASE WHEN jsonb_typeof(item->'allowed') = 'array'
                    THEN ARRAY(SELECT jsonb_array_elements_text(item->'allowed')) END,
               item->'property_types', item->'json_schema', now()
          FROM jsonb_array_elements(schemas) AS item
        ON CONFLICT (event_type, schema_version) DO UPDATE
           SET required = excluded.required, allowed = excluded.allowed, property_types = excluded.property_types,
               json_schema = excluded.json_schema, updated_at = excluded.updated_at
         WHERE (s.required, s.allowed, s.property_types, s.json_schema)
               IS DISTINCT FROM (excluded.required, excluded.allowed, excluded.property_types, excluded.json_schema)
        RETURNING 1
    )
    SELECT count(*)::integer FROM registered;
$$;

-- What is wrong with one payload for its type's schema; NULL when nothing is (or the type is not catalogued).
CREATE FUNCTION agentlog.payload_problem(payload_type text, payload_version integer, payload jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    known    agentlog.event_schemas;
    missing  text[];
    unknown  text[];
    field    text;
    types    jsonb;
    actual   text;
BEGIN
    SELECT * INTO known FROM agentlog.event_schemas AS s
     WHERE s.event_type = payload_type AND s.schema_version = payload_version;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM agentlog.event_schemas AS s WHERE s.event_type = payload_type) THEN
            RETURN format('%s has no schema version %s', payload_type, payload_version);
        END IF;
        RETURN NULL;
    END IF;
    missing := ARRAY(SELECT r FROM unnest(known.required) AS r WHERE NOT payload ? r);
    IF cardinality(missing) > 0 THEN
        RETURN format('missing field(s) %s', array_to_string(missing, ', '));
    END IF;
    IF known.allowed IS NOT NULL THEN
        unknown := ARRAY(SELECT k FROM jsonb_object_keys(payload) AS k WHERE k <> ALL (known.allowed) ORDER BY k);
        IF cardinality(unknown) > 0 THEN
            RETURN format('unknown field(s) %s', array_to_string(unknown, ', '));
        END IF;
    END IF;
    FOR field, types IN SELECT * FROM jsonb_each(known.property_types) LOOP
        CONTINUE WHEN NOT payload ? field;
        actual := jsonb_typeof(payload -> field);
        IF actual = 'number' AND types ? 'integer' AND (payload ->> field)::numeric = trunc((payload ->> field)::numeric)
        THEN
            CONTINUE;
        END IF;
        IF NOT types ? actual THEN
            RETURN format('field %s is %s, not %s', field, actual,
                          (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(types) AS t));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- The size limit of every path: an event's data and its metadata are each at most 1 MiB of JSON text.
CREATE FUNCTION agentlog.check_sizes(data jsonb[], metadata jsonb[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    ordinal bigint;
    what    text;
    bytes   integer;
BEGIN
    SELECT i.ordinal, CASE WHEN octet_length(i.d::text) > 1048576 THEN 'data' ELSE 'metadata' END,
           greatest(octet_length(i.d::text), octet_length(coalesce(i.m, '{}')::text))
      INTO ordinal, what, bytes
      FROM unnest(data, metadata) WITH ORDINALITY AS i(d, m, ordinal)
     WHERE octet_length(i.d::text) > 1048576 OR octet_length(coalesce(i.m, '{}')::text) > 1048576
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event % has % bytes of %; the limit is 1048576 (1 MiB) of JSON text', ordinal, bytes, what
            USING ERRCODE = 'AL003', HINT = 'Store large content elsewhere and reference it from the event.';
    END IF;
END
$$;

-- An event id may appear once per batch: a repeated one is refused whole (AL002), identical content or not.
CREATE FUNCTION agentlog.check_unique_ids(event_ids uuid[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    repeated uuid;
BEGIN
    SELECT i INTO repeated FROM unnest(event_ids) AS i GROUP BY i HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event id % appears more than once in one append; each event needs its own id', repeated
            USING ERRCODE = 'AL002';
    END IF;
END
$$;

DROP FUNCTION agentlog.append_event(text, text, jsonb, bigint, uuid, jsonb, integer, boolean);
DROP FUNCTION agentlog.append_events(text[], bigint[], uuid[], text[], integer[], jsonb[], jsonb[], boolean);

-- append_events: one call appends a batch of events over one or more streams, atomically.
--
--   stream_ids[i], event_ids[i], event_types[i], schema_versions[i], data[i], metadata[i] describe event i;
--   expected_versions[i] is read at the first event of each stream in the batch (later ones are ignored):
--     NULL = any version, 0 = the stream must not exist yet, n = the stream's current version must be n.
--   notify = true sends NOTIFY agentlog_events inside this transaction (convenient from psql; it serialises
--     commits database-wide, so the Python client sends its wake-up after the commit instead).
--
-- Checks before anything is written: equal arrays, no NULL id, no id twice (AL002), each data and metadata at
-- most 1 MiB of JSON text (AL003), and payloads of catalogued types against their schema (AL003: required and
-- unknown fields, JSON types; `agentlog types` lists the schemas). Types the catalogue does not know pass.
--
-- Idempotent by event id: if every event of a stream's part of the batch is already in the log with the same
-- stream, type and data, those rows are returned with duplicate = true and nothing is appended (whatever the
-- expected version: a retry of an append that succeeded carries a stale one). The same id with other content, or
-- a stream part that mixes recorded and new ids, is an error (AL002).
-- Errors: AL001 wrong expected version, AL002 event id conflict, AL003 malformed arguments or payload,
--         AL005 the log is in another cluster than its epoch (run `agentlog migrate`).
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
    orders           bigint[] := ARRAY[]::bigint[];
    recorded_streams text[] := ARRAY[]::text[];
    one_stream       text;
    head_version     bigint;
    head_transaction bigint;
    expected         bigint;
    own_transaction  bigint;
    expected_inserts integer := 0;
    inserted_count   integer;
    problem          text;
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
    IF event_count > 1 THEN
        PERFORM agentlog.check_unique_ids(event_ids);
    END IF;
    PERFORM agentlog.check_sizes(data, metadata);
    SELECT format('event %s (%s v%s): %s', i.ordinal, i.t, i.v, agentlog.payload_problem(i.t, i.v, i.d))
      INTO problem
      FROM unnest(event_types, schema_versions, data) WITH ORDINALITY AS i(t, v, d, ordinal)
     WHERE agentlog.payload_problem(i.t, i.v, i.d) IS NOT NULL
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'payload does not match its schema: %', problem USING ERRCODE = 'AL003';
    END IF;

    -- Before reading the epoch: an epoch advance waits for this transaction from here on (see TRANSACTION EPOCH).
    LOCK TABLE agentlog.events IN ROW EXCLUSIVE MODE;
    -- Lock every stream of the batch, in sorted order, before this transaction writes anything (see ORDERING).
    IF event_count = 1 THEN
        streams := stream_ids;
    ELSE
        streams := ARRAY(SELECT DISTINCT s FROM unnest(stream_ids) AS s ORDER BY s);
    END IF;
    FOREACH one_stream IN ARRAY streams LOOP
        PERFORM pg_advisory_xact_lock(1095524683, hashtext(one_stream));
    END LOOP;
    own_transaction := agentlog.current_transaction_id()::text::bigint;

    FOREACH one_stream IN ARRAY streams LOOP
        head_version := NULL;
        head_transaction := NULL;
        SELECT e.stream_version, e.transaction_id::text::bigint INTO head_version, head_transaction
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
            orders := orders || NULL::bigint;
            CONTINUE;
        END IF;
        heads := heads || head_version;
        -- See A STREAM'S ORDER: never below the stream's last event.
        orders := orders || greatest(own_transaction, coalesce(head_transaction, 0));
    END LOOP;
    expected_inserts := event_count;
    IF cardinality(recorded_streams) > 0 THEN
        expected_inserts := (SELECT count(*) FROM unnest(stream_ids) AS s WHERE s <> ALL (recorded_streams));
    END IF;

    IF event_count = 1 AND expected_inserts = 1 THEN
        RETURN QUERY
        INSERT INTO agentlog.events AS e
               (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
        VALUES (orders[1]::text::xid8, event_ids[1], stream_ids[1], heads[1] + 1, event_types[1], schema_versions[1],
                data[1], coalesce(metadata[1], '{}'::jsonb))
        ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
        RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
    ELSIF expected_inserts > 0 THEN
        RETURN QUERY
        WITH incoming AS (
            SELECT i.*, h.head_version + row_number() OVER (PARTITION BY i.stream_id ORDER BY i.ordinal) AS version,
                   h.sort_order
              FROM unnest(stream_ids, event_ids, event_types, schema_versions, data, metadata)
                     WITH ORDINALITY AS i(stream_id, event_id, event_type, schema_version, data, metadata, ordinal)
              JOIN unnest(streams, heads, orders) AS h(stream_id, head_version, sort_order)
                ON h.stream_id = i.stream_id
             WHERE h.head_version IS NOT NULL
        )
        INSERT INTO agentlog.events AS e
               (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
        SELECT i.sort_order::text::xid8, i.event_id, i.stream_id, i.version, i.event_type, i.schema_version, i.data,
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

-- append_to_stream: the Python client's common case, events to one stream in their own transaction, as one call
-- (the function above costs three statements per stream). Its payloads were validated by the client; sizes and
-- repeated ids are checked here as on every path. It only ever succeeds plainly: when the expected version does
-- not hold it returns no row; when an id is recorded, or a racing append took the version first, it fails on a
-- unique key. In every such case the client calls append_events, which decides with a fresh snapshot and raises
-- the right error. The stream lock is what append_events relies on: while it holds a stream's lock, no other
-- append has rows of that stream in flight.
--
-- `known_version`, when given, is a version the client knows the stream reached (`eventstore.stream_heads`): the
-- events go right after it with no head lookup (versions have no gaps and are never removed, so a stale one only
-- fails on the unique key). Called in its own transaction, the transaction id is assigned by the insert, after
-- the head it builds on committed, so stream order and log order agree; called in a transaction that already has
-- an id, it looks the head up and records at least the head's id (see A STREAM'S ORDER).
CREATE FUNCTION agentlog.append_to_stream(
    target_stream    text,
    expected_version bigint,
    known_version    bigint,
    event_ids        uuid[],
    event_types      text[],
    schema_versions  integer[],
    data             jsonb[],
    metadata         jsonb[]
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
    head_version     bigint := known_version;
    head_transaction bigint := 0;
BEGIN
    IF cardinality(event_ids) > 1 THEN
        PERFORM agentlog.check_unique_ids(event_ids);
    END IF;
    PERFORM agentlog.check_sizes(data, metadata);
    PERFORM pg_advisory_xact_lock(1095524683, hashtext(target_stream));
    IF head_version IS NULL OR pg_current_xact_id_if_assigned() IS NOT NULL THEN
        SELECT h.stream_version, h.transaction_id::text::bigint INTO head_version, head_transaction
          FROM agentlog.events AS h
         WHERE h.stream_id = target_stream
         ORDER BY h.stream_version DESC
         LIMIT 1;
        head_version := coalesce(known_version, head_version, 0);
        head_transaction := coalesce(head_transaction, 0);
        IF known_version IS NULL AND expected_version IS NOT NULL AND head_version <> expected_version THEN
            RETURN;
        END IF;
    END IF;
    -- The id is computed once (an init plan) inside the insert, which holds its lock on the log: an epoch advance
    -- cannot slip in between.
    RETURN QUERY
    INSERT INTO agentlog.events AS e
           (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
    SELECT (SELECT greatest(agentlog.current_transaction_id()::text::bigint, head_transaction)::text::xid8),
           n.event_id, target_stream, head_version + n.ordinal, n.event_type, n.schema_version, n.data,
           coalesce(n.metadata, '{}'::jsonb)
      FROM unnest(event_ids, event_types, schema_versions, data, metadata)
               WITH ORDINALITY AS n (event_id, event_type, schema_version, data, metadata, ordinal)
     ORDER BY n.ordinal
    RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
END
$$;

-- append_one_to_stream: append_to_stream for one event, with scalars (cheaper to send than one-element arrays).
CREATE FUNCTION agentlog.append_one_to_stream(
    target_stream    text,
    expected_version bigint,
    known_version    bigint,
    new_event_id     uuid,
    new_event_type   text,
    new_schema       integer,
    new_data         jsonb,
    new_metadata     jsonb
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
    head_version     bigint := known_version;
    head_transaction bigint := 0;
BEGIN
    IF octet_length(new_data::text) > 1048576 OR octet_length(coalesce(new_metadata, '{}')::text) > 1048576 THEN
        PERFORM agentlog.check_sizes(ARRAY[new_data], ARRAY[new_metadata]);
    END IF;
    PERFORM pg_advisory_xact_lock(1095524683, hashtext(target_stream));
    IF head_version IS NULL OR pg_current_xact_id_if_assigned() IS NOT NULL THEN
        SELECT h.stream_version, h.transaction_id::text::bigint INTO head_version, head_transaction
          FROM agentlog.events AS h
         WHERE h.stream_id = target_stream
         ORDER BY h.stream_version DESC
         LIMIT 1;
        head_version := coalesce(known_version, head_version, 0);
        head_transaction := coalesce(head_transaction, 0);
        IF known_version IS NULL AND expected_version IS NOT NULL AND head_version <> expected_version THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    INSERT INTO agentlog.events AS e
           (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
    VALUES (greatest(agentlog.current_transaction_id()::text::bigint, head_transaction)::text::xid8,
            new_event_id, target_stream, head_version + 1, new_event_type, new_schema, new_data,
            coalesce(new_metadata, '{}'::jsonb))
    RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
END
$$;

-- Lag of every handler, and the events it skipped because it could not decode them (see below).
DROP VIEW agentlog.log_head;

-- Who holds the visibility barrier: every transaction with an id that is still running, in a session or
-- prepared (PREPARE TRANSACTION: in no session, holding the barrier until COMMIT/ROLLBACK PREPARED), oldest
-- first. The first row is the one subscribers wait for. SECURITY DEFINER (set by the roles migration) so that the
-- application role sees other roles' sessions as the owner does.
CREATE FUNCTION agentlog.barrier_holders()
RETURNS TABLE (
    kind             text,
    pid              integer,
    prepared_gid     text,
    transaction_age  bigint,
    started_at       timestamptz,
    age_seconds      double precision,
    database_name    text,
    user_name        text,
    application_name text,
    state            text,
    query            text
)
LANGUAGE sql STABLE AS $$
    SELECT * FROM (
        SELECT 'session'::text, a.pid, NULL::text, age(a.backend_xid)::bigint, a.xact_start,
               extract(epoch FROM now() - a.xact_start)::double precision, a.datname::text, a.usename::text,
               a.application_name, a.state, left(a.query, 200)
          FROM pg_stat_activity AS a
         WHERE a.backend_xid IS NOT NULL
        UNION ALL
        SELECT 'prepared transaction', NULL, p.gid, age(p.transaction)::bigint, p.prepared,
               extract(epoch FROM now() - p.prepared)::double precision, p.database::text, p.owner::text,
               NULL, 'prepared', NULL
          FROM pg_prepared_xacts AS p
    ) AS holders
    ORDER BY 4 DESC;
$$;

-- The head of the log and the age of the visibility barrier: of the oldest transaction holding it, in a session or
-- prepared.
CREATE VIEW agentlog.log_head AS
SELECT (SELECT max(global_position) FROM agentlog.events) AS global_position,
       agentlog.visibility_barrier() AS barrier_transaction_id,
       coalesce((SELECT h.age_seconds FROM agentlog.barrier_holders() AS h LIMIT 1), 0)::double precision
           AS barrier_age_seconds;
