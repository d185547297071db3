-- The log after a hostile review (issue 9). Each part answers one way the review broke it.

-- DDL FUNCTIONS ACT ON PROJECTIONS ONLY
-- -------------------------------------
-- create_shadow and swap_projection run with the owner's rights (the application role rebuilds projections), and
-- took any schema: `swap_projection('projections', 'agentlog', '{}')` dropped the log itself. They now act only on
-- tables of `projections` and on shadow schemas `agentlog_shadow_*`; the unchecked bodies stay, callable by the
-- owner alone.
ALTER FUNCTION agentlog.create_shadow(text, text, text[]) RENAME TO create_shadow_unchecked;
ALTER FUNCTION agentlog.swap_projection(text, text, text[]) RENAME TO swap_projection_unchecked;
REVOKE EXECUTE ON FUNCTION agentlog.create_shadow_unchecked(text, text, text[]),
                           agentlog.swap_projection_unchecked(text, text, text[])
    FROM PUBLIC, agentlog_application;

CREATE FUNCTION agentlog.check_projection_tables(live_schema text, shadow_schema text, tables text[],
                                                 in_shadow boolean) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    missing text;
BEGIN
    IF live_schema IS DISTINCT FROM 'projections' THEN
        RAISE EXCEPTION 'only tables of the projections schema are rebuilt, not of %', live_schema
            USING ERRCODE = 'AL003';
    END IF;
    IF shadow_schema IS NULL OR shadow_schema !~ '^agentlog_shadow_[a-z0-9_]{1,46}$' THEN
        RAISE EXCEPTION 'a shadow schema is named agentlog_shadow_<projection>, not %', shadow_schema
            USING ERRCODE = 'AL003';
    END IF;
    IF tables IS NULL OR cardinality(tables) = 0 OR array_position(tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'name the projection''s tables' USING ERRCODE = 'AL003';
    END IF;
    SELECT t INTO missing
      FROM unnest(tables) AS t
     WHERE NOT EXISTS (SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'projections' AND c.relname = t AND c.relkind = 'r')
        OR (in_shadow AND NOT EXISTS (SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                                       WHERE n.nspname = shadow_schema AND c.relname = t AND c.relkind = 'r'))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'projections.% is not a table of a projection (or its shadow lacks it)', missing
            USING ERRCODE = 'AL003';
    END IF;
END
$$;

CREATE FUNCTION agentlog.create_shadow(live_schema text, shadow_schema text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM agentlog.check_projection_tables(live_schema, shadow_schema, tables, false);
    PERFORM agentlog.create_shadow_unchecked(live_schema, shadow_schema, tables);
END
$$;

CREATE FUNCTION agentlog.swap_projection(live_schema text, shadow_schema text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM agentlog.check_projection_tables(live_schema, shadow_schema, tables, true);
    PERFORM agentlog.swap_projection_unchecked(live_schema, shadow_schema, tables);
END
$$;

-- PAYLOADS EVERY READER CAN READ
-- ------------------------------
-- PostgreSQL's jsonb takes numbers beyond a double's range and nesting thousands of levels deep; most JSON
-- readers (orjson, JavaScript's JSON.parse for numbers) cannot, and one such event stopped every Python handler
-- inside the driver, before any of agentlog's own code ran. Every path refuses them now (AL003), with the size
-- limit, in data and in metadata.
CREATE FUNCTION agentlog.json_problem(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IS NULL THEN NULL
        WHEN jsonb_path_exists(value, 'strict $.** ? (@.type() == "number" && (@ > 1.7976931348623157e308 || '
                                      '@ < -1.7976931348623157e308))')
            THEN 'a number beyond the range of a double'
        WHEN jsonb_path_exists(value, 'strict $.**{256 to last}') THEN 'nesting deeper than 256 levels'
    END;
$$;

-- What is wrong with one event for every reader: its size, JSON no reader can read, a payload failing its
-- catalogued schema; NULL when nothing is. The one check of every append path, so it runs on every event: the cheap
-- tests come first, and the scans and the schema only when they can find something.
CREATE FUNCTION agentlog.event_problem(event_type text, schema_version integer, data jsonb, metadata jsonb)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    data_text     text := data::text;
    metadata_text text := coalesce(metadata, '{}'::jsonb)::text;
    problem       text;
BEGIN
    IF event_type IS NULL OR schema_version IS NULL OR data IS NULL THEN
        RETURN 'every event needs a type, a schema version and data';
    END IF;
    IF octet_length(data_text) > 1048576 OR octet_length(metadata_text) > 1048576 THEN
        RETURN format('it has %s bytes of %s; the limit is 1048576 (1 MiB) of JSON text',
                      greatest(octet_length(data_text), octet_length(metadata_text)),
                      CASE WHEN octet_length(data_text) > 1048576 THEN 'data' ELSE 'metadata' END);
    END IF;
    -- A number beyond a double has an exponent or hundreds of digits; nesting 256 deep takes 512 characters.
    IF octet_length(data_text) > 255 OR data_text ~ '[0-9][eE]' THEN
        problem := agentlog.json_problem(data) || ' in its data';
    END IF;
    IF problem IS NULL AND metadata_text <> '{}'
       AND (octet_length(metadata_text) > 255 OR metadata_text ~ '[0-9][eE]') THEN
        problem := agentlog.json_problem(metadata) || ' in its metadata';
    END IF;
    IF problem IS NOT NULL THEN
        RETURN 'it has ' || problem || ', which JSON readers cannot read';
    END IF;
    IF EXISTS (SELECT 1 FROM agentlog.event_schemas AS s WHERE s.event_type = event_problem.event_type) THEN
        problem := agentlog.payload_problem(event_type, schema_version, data);
        IF problem IS NOT NULL THEN
            RETURN 'payload does not match its schema: ' || problem;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Raise AL003 for the first event of a batch with a problem.
CREATE FUNCTION agentlog.check_events(event_types text[], schema_versions integer[], data jsonb[],
                                      metadata jsonb[]) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    problem text;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(data), 0) LOOP
        problem := agentlog.event_problem(event_types[i], schema_versions[i], data[i], metadata[i]);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'event % (% v%): %', i, event_types[i], schema_versions[i], problem
                USING ERRCODE = 'AL003';
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION agentlog.check_sizes(data jsonb[], metadata jsonb[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    ordinal bigint;
    what    text;
    bytes   integer;
    problem text;
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
    SELECT i.ordinal, i.problem INTO ordinal, problem
      FROM (SELECT o, coalesce(CASE WHEN octet_length(d::text) > 255 OR d::text ~ '[0-9][eE]'
                                    THEN agentlog.json_problem(d) || ' in its data' END,
                               CASE WHEN octet_length(m::text) > 255 OR m::text ~ '[0-9][eE]'
                                    THEN agentlog.json_problem(m) || ' in its metadata' END)
              FROM unnest(data, metadata) WITH ORDINALITY AS u(d, m, o)) AS i(ordinal, problem)
     WHERE i.problem IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event % has %, which JSON readers cannot read', ordinal, problem USING ERRCODE = 'AL003';
    END IF;
END
$$;

-- payload_problem, again: one lookup that reads the checks but not the (big) JSON schema, and set-based checks (it
-- runs on every append of a catalogued type now; PL/pgSQL keeps the plans, which an SQL function would not).
CREATE OR REPLACE FUNCTION agentlog.payload_problem(payload_type text, payload_version integer, payload jsonb)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    known   record;
    problem text;
BEGIN
    SELECT s.schema_version, s.required, s.allowed, s.property_types INTO known
      FROM agentlog.event_schemas AS s
     WHERE s.event_type = payload_type
     ORDER BY s.schema_version = payload_version DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;  -- not a catalogued type: another writer's own
    END IF;
    IF known.schema_version IS DISTINCT FROM payload_version THEN
        RETURN format('%s has no schema version %s', payload_type, payload_version);
    END IF;
    IF jsonb_typeof(payload) IS DISTINCT FROM 'object' THEN
        RETURN 'the payload must be a JSON object';
    END IF;
    IF NOT payload ?& known.required THEN
        RETURN format('missing field(s) %s',
                      (SELECT string_agg(r, ', ') FROM unnest(known.required) AS r WHERE NOT payload ? r));
    END IF;
    IF known.allowed IS NOT NULL THEN
        SELECT string_agg(k, ', ' ORDER BY k) INTO problem
          FROM jsonb_object_keys(payload) AS k WHERE k <> ALL (known.allowed);
        IF problem IS NOT NULL THEN
            RETURN format('unknown field(s) %s', problem);
        END IF;
    END IF;
    SELECT format('field %s is %s, not %s', p.field, jsonb_typeof(payload -> p.field),
                  (SELECT string_agg(t, ' or ') FROM jsonb_array_elements_text(p.types) AS t))
      INTO problem
      FROM jsonb_each(known.property_types) AS p(field, types)
     WHERE payload ? p.field
       AND NOT p.types ? jsonb_typeof(payload -> p.field)
       AND NOT (jsonb_typeof(payload -> p.field) = 'number' AND p.types ? 'integer'
                AND (payload ->> p.field)::numeric = trunc((payload ->> p.field)::numeric))
     LIMIT 1;
    RETURN problem;
END
$$;

-- THE ONE-STATEMENT APPENDS, CHECKED AS THE OTHERS
-- ------------------------------------------------
-- append_to_stream and append_one_to_stream skipped the payload checks (the Python client checks first, but any
-- client may call them), and trusted `known_version`: a version ahead of the stream's head left a gap, and put the
-- stream's later events out of version order. Now the payloads are checked as in append_events, a known version
-- must be one the stream has (else no row: the caller goes to append_events, which looks the head up), and it
-- must agree with an exact expected version.
CREATE OR REPLACE FUNCTION agentlog.append_to_stream(
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
    IF cardinality(event_ids) IS DISTINCT FROM cardinality(event_types)
       OR cardinality(event_ids) IS DISTINCT FROM cardinality(schema_versions)
       OR cardinality(event_ids) IS DISTINCT FROM cardinality(data)
       OR cardinality(event_ids) IS DISTINCT FROM cardinality(metadata) OR array_position(event_ids, NULL) IS NOT NULL
    THEN
        RAISE EXCEPTION 'append_to_stream needs arrays of equal length with an id for every event'
            USING ERRCODE = 'AL003';
    END IF;
    IF cardinality(event_ids) > 1 THEN
        PERFORM agentlog.check_unique_ids(event_ids);
    END IF;
    PERFORM agentlog.check_events(event_types, schema_versions, data, metadata);
    IF known_version < 0 OR (known_version IS NOT NULL AND expected_version IS NOT NULL
                             AND known_version <> expected_version) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1095524683, hashtext(target_stream));
    IF known_version > 0 AND NOT EXISTS (SELECT 1 FROM agentlog.events AS k
                                          WHERE k.stream_id = target_stream AND k.stream_version = known_version) THEN
        RETURN;
    END IF;
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
    SELECT (SELECT greatest(agentlog.current_transaction_id()::text::bigint, head_transaction)::text::xid8),
           n.event_id, target_stream, head_version + n.ordinal, n.event_type, n.schema_version, n.data,
           coalesce(n.metadata, '{}'::jsonb)
      FROM unnest(event_ids, event_types, schema_versions, data, metadata)
               WITH ORDINALITY AS n (event_id, event_type, schema_version, data, metadata, ordinal)
     ORDER BY n.ordinal
    RETURNING e.event_id, e.stream_id, e.stream_version, e.global_position, e.transaction_id, false;
END
$$;

CREATE OR REPLACE FUNCTION agentlog.append_one_to_stream(
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
    problem          text;
BEGIN
    IF new_event_id IS NULL THEN
        RAISE EXCEPTION 'append_one_to_stream needs an event id' USING ERRCODE = 'AL003';
    END IF;
    problem := agentlog.event_problem(new_event_type, new_schema, new_data, new_metadata);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'event 1 (% v%): %', new_event_type, new_schema, problem USING ERRCODE = 'AL003';
    END IF;
    IF known_version < 0 OR (known_version IS NOT NULL AND expected_version IS NOT NULL
                             AND known_version <> expected_version) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1095524683, hashtext(target_stream));
    IF known_version > 0 AND NOT EXISTS (SELECT 1 FROM agentlog.events AS k
                                          WHERE k.stream_id = target_stream AND k.stream_version = known_version) THEN
        RETURN;
    END IF;
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

-- THE SQL PATH'S SCHEMA VERSION DEFAULTS TO THE NEWEST
-- ---------------------------------------------------
-- append_event defaulted `schema_version` to 1, so a payload in today's shape appended without `schema_version =>
-- 2` was upcast as if old. The default is now the newest version the catalogue registered for the type (1 for
-- types it does not know).
DROP FUNCTION agentlog.append_event(text, text, jsonb, bigint, uuid, jsonb, integer, boolean);
CREATE FUNCTION agentlog.append_event(
    stream_id        text,
    event_type       text,
    data             jsonb,
    expected_version bigint  DEFAULT NULL,
    event_id         uuid    DEFAULT gen_random_uuid(),
    metadata         jsonb   DEFAULT '{}'::jsonb,
    schema_version   integer DEFAULT NULL,
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
        ARRAY[coalesce(schema_version,
                       (SELECT max(s.schema_version) FROM agentlog.event_schemas AS s WHERE s.event_type = $2), 1)],
        ARRAY[data], ARRAY[metadata], notify);
$$;

-- THE EPOCH CHECK WITHOUT A FILE READ
-- -----------------------------------
-- transaction_id_offset() runs on every append; pg_control_system() reads the control file each time (8 us of the
-- ~14 the check cost). A server's system identifier never changes while it runs, and a session lives in one
-- server: the session keeps it in a setting after the first read.
CREATE OR REPLACE FUNCTION agentlog.transaction_id_offset() RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    epoch agentlog.log_epoch;
    here  text := current_setting('agentlog.system_identifier', true);
BEGIN
    IF here IS NULL OR here = '' THEN
        here := (pg_control_system()).system_identifier::text;
        PERFORM set_config('agentlog.system_identifier', here, false);
    END IF;
    SELECT * INTO epoch FROM agentlog.log_epoch;
    IF epoch.cluster_id IS DISTINCT FROM here THEN
        RAISE EXCEPTION 'this log was restored or moved into another PostgreSQL cluster; its order is not sealed here'
            USING ERRCODE = 'AL005',
                  HINT = 'Run `agentlog migrate` (or `agentlog up`) before appending: it moves the epoch past the log.';
    END IF;
    RETURN epoch.transaction_id_offset;
END
$$;

-- A RESTORE INTO A COPY OF THE SAME CLUSTER IS SEALED TOO
-- -------------------------------------------------------
-- The epoch was advanced only in another cluster (another system identifier). A physical copy made earlier (a
-- standby, a staging copy) has the same identifier and older transaction ids: a logical restore into it needs the
-- same advance. `agentlog migrate` now advances whenever the oldest running transaction's id, shifted, would not
-- sort above everything recorded; in a cluster that only moved forward this changes nothing.
CREATE OR REPLACE FUNCTION agentlog.advance_transaction_epoch()
RETURNS TABLE (previous_offset bigint, transaction_id_offset bigint, cluster_changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    epoch          agentlog.log_epoch;
    here           text := (pg_control_system()).system_identifier::text;
    newest         bigint;
    oldest_running bigint;
BEGIN
    LOCK TABLE agentlog.events IN SHARE MODE;  -- no append in flight while the order is checked and sealed
    SELECT * INTO epoch FROM agentlog.log_epoch FOR UPDATE;
    newest := greatest(
        (SELECT e.transaction_id::text::bigint FROM agentlog.events AS e
          ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1),
        (SELECT max(c.transaction_id::text::bigint) FROM agentlog.checkpoints AS c),
        0);
    oldest_running := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    previous_offset := epoch.transaction_id_offset;
    transaction_id_offset := greatest(previous_offset, newest - oldest_running + 1);
    cluster_changed := epoch.cluster_id IS DISTINCT FROM here;
    IF cluster_changed OR transaction_id_offset <> previous_offset THEN
        UPDATE agentlog.log_epoch AS l
           SET transaction_id_offset = advance_transaction_epoch.transaction_id_offset, cluster_id = here,
               updated_at = now();
    END IF;
    RETURN NEXT;
END
$$;

-- A REWOUND CHECKPOINT IS NOT A BROKEN ORDER
-- ------------------------------------------
-- A checkpoint with *more* events at or before it than it passed has events behind it it never read: the order is
-- broken, and `up` refuses. One with fewer was moved back by hand (its handler will read events again): not a
-- broken order, and not a reason to restore anything.
CREATE OR REPLACE FUNCTION agentlog.checkpoints_out_of_order()
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
     WHERE counted.events > c.events_applied
     ORDER BY c.name;
$$;
