-- Least privilege: the log cannot be forged by the processes that use it.
--
-- Three roles:
--   the owner                 the role that runs the migrations and owns every object (the embedded server's
--                             `agentlog` superuser, or whoever runs `agentlog migrate` on your server);
--   agentlog_application      what `agentlog up`, handlers and clients connect as: reads the log, appends only
--                             through the append functions (SECURITY DEFINER, pinning transaction ids and
--                             positions), writes checkpoints, projections and its own tables; never INSERT,
--                             UPDATE, DELETE or TRUNCATE on the log, and no superuser powers
--                             (session_replication_role cannot switch the log's triggers off);
--   agentlog_reporting        read-only: the `projections` and `reports` schemas, nothing else.
-- Both are NOLOGIN group roles here; give logins membership (CREATE ROLE ada LOGIN IN ROLE agentlog_reporting),
-- or let them log in (the embedded server does, with generated passwords).
--
-- grant_privileges() holds every grant and runs again at every `agentlog migrate`, so a database restored
-- without its privileges (pg_restore --no-privileges, into a cluster without these roles) gets them back.

-- Copy the privileges on one table or view to another (a shadow table taking over from a live one).
CREATE FUNCTION agentlog.grant_like(target regclass, acl aclitem[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT a.privilege_type, a.grantee
          FROM aclexplode(coalesce(acl, '{}'::aclitem[])) AS a
          JOIN pg_class AS c ON c.oid = target
         WHERE a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s', item.privilege_type, target,
                       CASE WHEN item.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(item.grantee)) END);
    END LOOP;
END
$$;

CREATE FUNCTION agentlog.grant_privileges() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    role_name text;
    writable  regclass;
    definer   regprocedure;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['agentlog_application', 'agentlog_reporting'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION
                WHEN duplicate_object THEN NULL;  -- another database of this cluster made it meanwhile
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'agentlog needs the role % and may not create it', role_name
                        USING ERRCODE = 'AL006',
                              HINT = format('CREATE ROLE %I NOLOGIN as an administrator, or migrate as a role '
                                            'with CREATEROLE.', role_name);
            END;
        END IF;
    END LOOP;

    -- The application role: the log read-only, everything else of agentlog read-write.
    GRANT USAGE ON SCHEMA agentlog, projections, reports TO agentlog_application;
    GRANT SELECT ON ALL TABLES IN SCHEMA agentlog TO agentlog_application;
    FOR writable IN
        SELECT c.oid::regclass FROM pg_class AS c
         WHERE c.relnamespace = 'agentlog'::regnamespace AND c.relkind = 'r'
           AND c.oid NOT IN ('agentlog.events'::regclass, 'agentlog.log_epoch'::regclass,
                             'agentlog.event_schemas'::regclass)
    LOOP
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO agentlog_application', writable);
    END LOOP;
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON agentlog.events, agentlog.log_epoch, agentlog.event_schemas
        FROM agentlog_application;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA agentlog TO agentlog_application;
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM agentlog_application',
                   pg_get_serial_sequence('agentlog.events', 'global_position'));
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projections TO agentlog_application;
    GRANT SELECT ON ALL TABLES IN SCHEMA reports TO agentlog_application;
    IF to_regclass('alembic_version') IS NOT NULL THEN  -- so that `agentlog up` can tell the schema is at head
        EXECUTE format('GRANT SELECT ON %s TO agentlog_application', to_regclass('alembic_version'));
    END IF;
    ALTER DEFAULT PRIVILEGES IN SCHEMA agentlog
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO agentlog_application;
    ALTER DEFAULT PRIVILEGES IN SCHEMA agentlog GRANT USAGE, SELECT ON SEQUENCES TO agentlog_application;
    ALTER DEFAULT PRIVILEGES IN SCHEMA projections
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO agentlog_application;
    ALTER DEFAULT PRIVILEGES IN SCHEMA reports GRANT SELECT ON TABLES TO agentlog_application;

    -- The reporting role: projections and reports, read-only.
    GRANT USAGE ON SCHEMA projections, reports TO agentlog_reporting;
    GRANT SELECT ON ALL TABLES IN SCHEMA projections, reports TO agentlog_reporting;
    ALTER DEFAULT PRIVILEGES IN SCHEMA projections GRANT SELECT ON TABLES TO agentlog_reporting;
    ALTER DEFAULT PRIVILEGES IN SCHEMA reports GRANT SELECT ON TABLES TO agentlog_reporting;

    -- Functions that act with the owner's rights: the appends (the only way into the log), the rebuild's DDL
    -- (shadow schemas, the swap) and the view of other roles' sessions. They name every object with its schema
    -- and run with a search path of pg_catalog alone, so no caller can slip its own objects in.
    FOR definer IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
         WHERE p.pronamespace = 'agentlog'::regnamespace
           AND p.proname IN ('append_events', 'append_to_stream', 'append_one_to_stream', 'create_shadow',
                             'swap_projection', 'drop_shadow', 'barrier_holders')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', definer);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', definer);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO agentlog_application', definer);
    END LOOP;
    -- The owner's own.
    REVOKE EXECUTE ON FUNCTION agentlog.advance_transaction_epoch(), agentlog.grant_privileges(),
        agentlog.grant_like(regclass, aclitem[]), agentlog.register_event_schemas(jsonb) FROM PUBLIC;

    -- barrier_holders reads other roles' sessions with the owner's eyes: those need pg_read_all_stats.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') THEN
        BEGIN
            EXECUTE format('GRANT pg_read_all_stats TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'agentlog.barrier_holders() shows other roles'' sessions only if % has pg_read_all_stats',
                current_user;
        END;
    END IF;
END
$$;

-- create_shadow, again: the shadow's tables get the privileges of the live ones (the application role writes
-- them during the rebuild, and they become the live tables at the swap), and its schema the same users.
CREATE OR REPLACE FUNCTION agentlog.create_shadow(live_schema text, shadow_schema text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    one_table text;
    storage   text;
    live_acl  aclitem[];
    item      record;
BEGIN
    IF live_schema !~ '^[a-z][a-z0-9_]{0,62}$' OR shadow_schema !~ '^agentlog_shadow_[a-z0-9_]{1,46}$' THEN
        RAISE EXCEPTION 'create_shadow: invalid schema name' USING ERRCODE = 'AL003';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', shadow_schema);
    EXECUTE format('CREATE SCHEMA %I', shadow_schema);
    FOR item IN
        SELECT DISTINCT a.grantee
          FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
         WHERE n.nspname = live_schema AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', shadow_schema,
                       CASE WHEN item.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(item.grantee)) END);
    END LOOP;
    FOREACH one_table IN ARRAY tables LOOP
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL)', shadow_schema, one_table, live_schema,
                       one_table);
        -- LIKE copies neither storage parameters (fillfactor...) nor privileges: copy them, or a swap drops them.
        SELECT array_to_string(c.reloptions, ', '), c.relacl INTO storage, live_acl
          FROM pg_class AS c WHERE c.oid = format('%I.%I', live_schema, one_table)::regclass;
        IF storage IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I SET (%s)', shadow_schema, one_table, storage);
        END IF;
        PERFORM agentlog.grant_like(format('%I.%I', shadow_schema, one_table)::regclass, live_acl);
    END LOOP;
END
$$;

-- swap_projection, again: the report views it drops and recreates keep their privileges.
CREATE OR REPLACE FUNCTION agentlog.swap_projection(live_schema text, shadow_schema text, tables text[])
RETURNS void
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
               obj_description(c.oid, 'pg_class') AS description, c.relacl::text AS acl
          FROM dependents JOIN pg_class AS c ON c.oid = dependents.view_oid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         ORDER BY c.oid
    LOOP
        views := views || jsonb_build_object('schema', saved.nspname, 'name', saved.relname,
                                             'definition', saved.definition, 'description', saved.description,
                                             'acl', saved.acl);
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
        PERFORM agentlog.grant_like(format('%I.%I', saved.view->>'schema', saved.view->>'name')::regclass,
                                    (saved.view->>'acl')::aclitem[]);
    END LOOP;
    EXECUTE format('DROP SCHEMA %I CASCADE', shadow_schema);
END
$$;

SELECT agentlog.grant_privileges();
