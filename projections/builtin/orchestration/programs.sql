-- Named SQL of the programs projection (loaded by `programs.py`). The table is unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow.

-- program_rows --
-- The folded state of the programs a batch touches.
-- $1 agent ids
SELECT agent_id, state FROM programs WHERE agent_id = ANY ($1::text[]);

-- program_upsert --
-- Write the rows of the programs a batch changed.
-- $1 JSON array of rows
INSERT INTO programs AS p (agent_id, status, command, max_restarts, run, restart, pid, host, last_exit_code, reason,
                           runs_started, crashes, started_at, updated_at, state)
SELECT agent_id, status, command, max_restarts, run, restart, pid, host, last_exit_code, reason, runs_started,
       crashes, started_at, updated_at, state
  FROM jsonb_to_recordset($1::jsonb) AS x (agent_id text, status text, command jsonb, max_restarts integer,
       run integer, restart integer, pid integer, host text, last_exit_code integer, reason text,
       runs_started bigint, crashes bigint, started_at timestamptz, updated_at timestamptz, state jsonb)
ON CONFLICT (agent_id) DO UPDATE
   SET status = excluded.status, command = excluded.command, max_restarts = excluded.max_restarts,
       run = excluded.run, restart = excluded.restart, pid = excluded.pid, host = excluded.host,
       last_exit_code = excluded.last_exit_code, reason = excluded.reason, runs_started = excluded.runs_started,
       crashes = excluded.crashes, started_at = excluded.started_at, updated_at = excluded.updated_at,
       state = excluded.state;
