-- The read side: projection tables, the registry of projection versions, the shadow-and-swap function used by
-- `agentlog replay`, and the report views people query from psql.

-- Each handler counts the events it has passed (applied or skipped): with the log_head projection's count this
-- gives "events behind" without scanning the log.
ALTER TABLE agentlog.checkpoints ADD COLUMN events_applied bigint NOT NULL DEFAULT 0;
UPDATE agentlog.checkpoints AS c
   SET events_applied = (SELECT count(*) FROM agentlog.events AS e
                          WHERE (e.transaction_id, e.global_position) <= (c.transaction_id, c.global_position));

-- Which version of each projection the live tables were built by; `agentlog up` rebuilds on a mismatch.
CREATE TABLE agentlog.projections (
    name       text        PRIMARY KEY,
    version    integer     NOT NULL CHECK (version >= 1),
    rebuilt_at timestamptz,
    CONSTRAINT projections_name_valid CHECK (name ~ '^[a-z][a-z0-9_]{0,49}$')
);

CREATE SCHEMA projections;
COMMENT ON SCHEMA projections IS 'Read models derived from agentlog.events; rebuilt by `agentlog replay`.';

-- stream_summary: one row per stream, updated by almost every event. No index but the key and room left in each
-- page, so that those updates stay HOT (no new index entries); the reports over it read it whole.
CREATE TABLE projections.stream_summary (
    stream_id         text        PRIMARY KEY,
    category          text        NOT NULL,
    current_version   bigint      NOT NULL,
    event_count       bigint      NOT NULL,
    last_event_type   text        NOT NULL,
    first_recorded_at timestamptz NOT NULL,
    last_recorded_at  timestamptz NOT NULL
) WITH (fillfactor = 70);

-- event_counts_daily: events per day (UTC), category and type.
CREATE TABLE projections.event_counts_daily (
    day        date   NOT NULL,
    category   text   NOT NULL,
    event_type text   NOT NULL,
    events     bigint NOT NULL,
    CONSTRAINT event_counts_daily_pkey PRIMARY KEY (day, category, event_type)
);

-- log_head: the head of the log as the projections know it (one row).
CREATE TABLE projections.log_head (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    events           bigint      NOT NULL,
    transaction_id   xid8        NOT NULL,
    global_position  bigint      NOT NULL,
    last_recorded_at timestamptz NOT NULL
);

-- swap_projection: replace a projection's live tables by the ones rebuilt in `shadow_schema`, in the caller's
-- transaction. Views that depend on the live tables (the reports) are dropped and recreated from their own
-- definitions, so they read the new tables; indexes and constraints get back the names the live ones had, so
-- later migrations can name them. The caller holds the projection's live checkpoint row and moves it.
CREATE FUNCTION agentlog.swap_projection(live_schema text, shadow_schema text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    one_table  text;
    saved      record;
    old_index  record;
    views       jsonb := '[]'::jsonb;
    index_names jsonb;
BEGIN
    IF live_schema !~ '^[a-z][a-z0-9_]{0,62}$' OR shadow_schema !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'swap_projection: invalid schema name' USING ERRCODE = 'AL003';
    END IF;

    -- The live tables before anything else (the caller already holds the live checkpoint row, which a live batch
    -- claims before it writes: the same lock order, so no deadlock).
    FOREACH one_table IN ARRAY tables LOOP
        EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', live_schema, one_table);
    END LOOP;

    -- Views reading these tables, directly or through other views, oldest first.
    FOR saved IN
        WITH RECURSIVE dependents(view_oid) AS (
            SELECT DISTINCT r.ev_class
              FROM pg_depend AS d
              JOIN pg_rewrite AS r ON r.oid = d.objid
             WHERE d.classid = 'pg_rewrite'::regclass
               AND d.refobjid IN (SELECT format('%I.%I', live_schema, t)::regclass FROM unnest(tables) AS t)
               AND r.ev_class NOT IN (SELECT format('%I.%I', live_schema, t)::regclass FROM unnest(tables) AS t)
            UNION
            SELECT r.ev_class
              FROM dependents AS dep
              JOIN pg_depend AS d ON d.refobjid = dep.view_oid AND d.classid = 'pg_rewrite'::regclass
              JOIN pg_rewrite AS r ON r.oid = d.objid
             WHERE r.ev_class <> dep.view_oid
        )
        SELECT c.oid, n.nspname, c.relname, pg_get_viewdef(c.oid) AS definition,
               obj_description(c.oid, 'pg_class') AS description
          FROM dependents JOIN pg_class AS c ON c.oid = dependents.view_oid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         ORDER BY c.oid
    LOOP
        views := views || jsonb_build_object('schema', saved.nspname, 'name', saved.relname,
                                             'definition', saved.definition, 'description', saved.description);
    END LOOP;
    FOR saved IN SELECT * FROM jsonb_array_elements(views) WITH ORDINALITY AS v(view, position)
                 ORDER BY position DESC LOOP
        EXECUTE format('DROP VIEW %I.%I', saved.view->>'schema', saved.view->>'name');
    END LOOP;

    FOREACH one_table IN ARRAY tables LOOP
        -- Remember the live indexes by what they index, to give their names to the new ones.
        SELECT coalesce(jsonb_object_agg(regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', ''),
                                         ic.relname), '{}'::jsonb)
          INTO index_names
          FROM pg_index AS i
          JOIN pg_class AS ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = format('%I.%I', live_schema, one_table)::regclass;
        EXECUTE format('DROP TABLE %I.%I', live_schema, one_table);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', shadow_schema, one_table, live_schema);
        FOR old_index IN
            SELECT ic.relname AS current_name,
                   index_names->>regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '') AS live_name
              FROM pg_index AS i
              JOIN pg_class AS ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = format('%I.%I', live_schema, one_table)::regclass
        LOOP
            CONTINUE WHEN old_index.live_name IS NULL OR old_index.live_name = old_index.current_name;
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', live_schema, old_index.current_name,
                           old_index.live_name);
        END LOOP;
    END LOOP;

    FOR saved IN SELECT * FROM jsonb_array_elements(views) WITH ORDINALITY AS v(view, position)
                 ORDER BY position LOOP
        EXECUTE format('CREATE VIEW %I.%I AS %s', saved.view->>'schema', saved.view->>'name',
                       saved.view->>'definition');
        IF saved.view->>'description' IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %I.%I IS %L', saved.view->>'schema', saved.view->>'name',
                           saved.view->>'description');
        END IF;
    END LOOP;
    EXECUTE format('DROP SCHEMA %I CASCADE', shadow_schema);
END
$$;

-- create_shadow: an empty copy of a projection's tables in `shadow_schema` (replacing any earlier copy).
CREATE FUNCTION agentlog.create_shadow(live_schema text, shadow_schema text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    one_table text;
    storage   text;
BEGIN
    IF live_schema !~ '^[a-z][a-z0-9_]{0,62}$' OR shadow_schema !~ '^agentlog_shadow_[a-z0-9_]{1,46}$' THEN
        RAISE EXCEPTION 'create_shadow: invalid schema name' USING ERRCODE = 'AL003';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', shadow_schema);
    EXECUTE format('CREATE SCHEMA %I', shadow_schema);
    FOREACH one_table IN ARRAY tables LOOP
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL)', shadow_schema, one_table, live_schema,
                       one_table);
        -- LIKE does not copy storage parameters (fillfactor...): copy them, or a swap would drop them.
        SELECT array_to_string(c.reloptions, ', ') INTO storage
          FROM pg_class AS c WHERE c.oid = format('%I.%I', live_schema, one_table)::regclass;
        IF storage IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I SET (%s)', shadow_schema, one_table, storage);
        END IF;
    END LOOP;
END
$$;

-- drop_shadow: remove a shadow schema (an abandoned or verified rebuild).
CREATE FUNCTION agentlog.drop_shadow(shadow_schema text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF shadow_schema !~ '^agentlog_shadow_[a-z0-9_]{1,46}$' THEN
        RAISE EXCEPTION 'drop_shadow: invalid schema name' USING ERRCODE = 'AL003';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', shadow_schema);
END
$$;

-- table_differences: rows of one table that are only live or only in the shadow (as JSON), for --verify.
CREATE FUNCTION agentlog.table_differences(live_schema text, shadow_schema text, one_table text, max_rows integer)
RETURNS TABLE (side text, row_data json)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        '(SELECT ''live only'', row_to_json(d) FROM (TABLE %1$I.%3$I EXCEPT ALL TABLE %2$I.%3$I) AS d LIMIT $1)
         UNION ALL
         (SELECT ''rebuilt only'', row_to_json(d) FROM (TABLE %2$I.%3$I EXCEPT ALL TABLE %1$I.%3$I) AS d LIMIT $1)',
        live_schema, shadow_schema, one_table) USING max_rows;
END
$$;

-- report_rows: the rows of one report view, as JSON objects in column order.
CREATE FUNCTION agentlog.report_rows(report text) RETURNS SETOF json
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.views WHERE table_schema = 'reports' AND table_name = report)
    THEN
        RAISE EXCEPTION 'no report named %', report USING ERRCODE = 'AL004';
    END IF;
    RETURN QUERY EXECUTE format('SELECT row_to_json(r) FROM reports.%I AS r', report);
END
$$;

-- Reports: views over projections only (never the log), for psql and `agentlog report`.
CREATE SCHEMA reports;
COMMENT ON SCHEMA reports IS 'Report views over the projections; `agentlog report` lists and prints them.';

CREATE VIEW reports.categories AS
SELECT category,
       count(*)               AS streams,
       sum(event_count)::bigint AS events,
       max(current_version)   AS longest_stream,
       min(first_recorded_at) AS first_recorded_at,
       max(last_recorded_at)  AS last_recorded_at
  FROM projections.stream_summary
 GROUP BY category
 ORDER BY category;
COMMENT ON VIEW reports.categories IS 'Streams and events per category, with first and last activity.';

CREATE VIEW reports.recent_streams AS
SELECT stream_id, category, current_version, last_event_type, last_recorded_at
  FROM projections.stream_summary
 ORDER BY last_recorded_at DESC, stream_id
 LIMIT 50;
COMMENT ON VIEW reports.recent_streams IS 'The 50 streams with the most recent events.';

CREATE VIEW reports.event_types_daily AS
SELECT day, event_type, sum(events)::bigint AS events
  FROM projections.event_counts_daily
 GROUP BY day, event_type
 ORDER BY day DESC, event_type;
COMMENT ON VIEW reports.event_types_daily IS 'Events per type and day (UTC).';

CREATE VIEW reports.categories_daily AS
SELECT day, category, sum(events)::bigint AS events
  FROM projections.event_counts_daily
 GROUP BY day, category
 ORDER BY day DESC, category;
COMMENT ON VIEW reports.categories_daily IS 'Events per category and day (UTC).';

CREATE VIEW reports.handler_lag AS
SELECT c.name AS handler,
       c.global_position AS checkpoint,
       greatest(coalesce(h.events, 0) - c.events_applied, 0) AS events_behind,
       greatest(coalesce(extract(epoch FROM h.last_recorded_at - c.last_recorded_at), 0), 0)::double precision
           AS seconds_behind,
       c.updated_at
  FROM agentlog.checkpoints AS c
  LEFT JOIN projections.log_head AS h ON true
 WHERE c.name NOT LIKE 'replay.%'
 ORDER BY c.name;
COMMENT ON VIEW reports.handler_lag IS
    'Each handler''s checkpoint against the head of the log as the log_head projection knows it.';
