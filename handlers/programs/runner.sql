-- Named SQL of the program runner (loaded by `runner.py`).

-- ensure_fleet --
-- Make the log's fleet id (which marks its programs' processes) unless it exists.
-- $1 a new fleet id
INSERT INTO agentlog.secrets (name, value) VALUES ('program-runner/fleet', convert_to($1, 'UTF8'))
ON CONFLICT (name) DO NOTHING;

-- select_fleet --
-- No parameters.
SELECT convert_from(value, 'UTF8') FROM agentlog.secrets WHERE name = 'program-runner/fleet';

-- program_streams --
-- Every program's stream (to reconcile with when this runner's turn starts). No parameters.
SELECT DISTINCT stream_id FROM agentlog.events WHERE category = 'program' AND event_type = 'ProgramDefined';

-- server_identity --
-- The server's system identifier (new for every cluster, kept by its physical replicas) and the database's oid.
-- No parameters.
SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || d.oid::text
  FROM pg_database AS d WHERE d.datname = current_database();

-- database_identity --
-- The database's oid, where the server's identifier is withheld. No parameters.
SELECT d.oid::text FROM pg_database AS d WHERE d.datname = current_database();

-- turn_held_by --
-- Whether the handler lock of the runner is held by the session with this server pid (the runner's own).
-- $1 handler name, $2 server pid
SELECT EXISTS (
    SELECT 1 FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND pid = $2
       AND classid = 1095524685::oid AND objid = hashtext($1)::oid
);
