-- Named SQL of the tool_refusals projection (loaded by `refusals.py`). The table is unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow.

-- refusal_insert --
-- A batch's refusals, one row each (a refusal seen again is kept once).
-- $1 JSON array of rows
INSERT INTO tool_refusals (event_id, global_position, agent_id, tool, arguments, session_id, step_id, reason,
                           refused_at)
SELECT event_id, global_position, agent_id, tool, arguments, session_id, step_id, reason, refused_at
  FROM jsonb_to_recordset($1::jsonb) AS x (event_id uuid, global_position bigint, agent_id text, tool text,
       arguments jsonb, session_id text, step_id text, reason text, refused_at timestamptz)
ON CONFLICT (event_id) DO NOTHING;
