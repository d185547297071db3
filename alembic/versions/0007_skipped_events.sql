-- Skipped events: what a handler (or a rebuild) passed without applying because it could not decode it (a payload
-- failing its schema, or one no upcaster can take). The skip is part of the handler's batch: it commits with the
-- checkpoint that passes the event, so it is recorded exactly once per handler, and a rebuild of a projection
-- records its own under its rebuild checkpoint's name, which the swap hands over to the live name. See
-- eventstore/decoding.py for the rule every handler, rebuild and refold shares.

CREATE TABLE agentlog.skipped_events (
    handler_name    text        NOT NULL,
    global_position bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    reason          text        NOT NULL,
    skipped_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler_name, global_position)
);
COMMENT ON TABLE agentlog.skipped_events IS
    'Events each handler passed without applying because it could not decode them, and why.';

-- Lag of every handler, now with how many events it skipped.
DROP VIEW agentlog.handler_lag;
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
            LIMIT 1)), 0)::double precision AS seconds_behind,
       (SELECT count(*) FROM agentlog.skipped_events AS s WHERE s.handler_name = c.name) AS events_skipped
  FROM agentlog.checkpoints AS c;
-- A new view in the agentlog schema gets its default privileges, written for tables: reading is all a view needs.
REVOKE INSERT, UPDATE, DELETE ON agentlog.handler_lag FROM agentlog_application;

CREATE VIEW reports.skipped_events AS
SELECT handler_name AS handler, global_position, stream_id, event_type, schema_version, reason, skipped_at
  FROM agentlog.skipped_events
 WHERE handler_name NOT LIKE 'replay.%'
 ORDER BY handler_name, global_position;
COMMENT ON VIEW reports.skipped_events IS
    'Events handlers skipped because they could not decode them (agentlog handler skipped NAME).';
