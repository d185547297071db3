-- Named SQL of the operations projection (loaded by `operations.py`). Table names are unqualified: the runner
-- points search_path at the live schema, a rebuild at its shadow.

-- open_operations --
-- The operations under way on the keys a batch touches: the fold starts from them (ended ones change no more).
-- $1 entity keys
SELECT key, operation_id, agent_id, action, state, in_window, data, registered_at, window_ends_at, expires_at,
       ended_at, end_reason, updated_at, operation
  FROM operations WHERE key = ANY ($1::text[]) AND state = 'open';

-- operation_upsert --
-- Write the rows of the operations a batch changed (a registration reusing an ended operation's id replaces it).
-- $1 JSON array of rows
INSERT INTO operations AS o (key, operation_id, agent_id, action, state, in_window, data, registered_at,
                             window_ends_at, expires_at, ended_at, end_reason, updated_at, operation)
SELECT key, operation_id, agent_id, action, state, in_window, data, registered_at, window_ends_at, expires_at,
       ended_at, end_reason, updated_at, operation
  FROM jsonb_to_recordset($1::jsonb) AS x (key text, operation_id text, agent_id text, action text, state text,
       in_window boolean, data jsonb, registered_at timestamptz, window_ends_at timestamptz,
       expires_at timestamptz, ended_at timestamptz, end_reason text, updated_at timestamptz, operation jsonb)
ON CONFLICT (key, operation_id) DO UPDATE
   SET agent_id = excluded.agent_id, action = excluded.action, state = excluded.state,
       in_window = excluded.in_window, data = excluded.data, registered_at = excluded.registered_at,
       window_ends_at = excluded.window_ends_at, expires_at = excluded.expires_at, ended_at = excluded.ended_at,
       end_reason = excluded.end_reason, updated_at = excluded.updated_at, operation = excluded.operation;
