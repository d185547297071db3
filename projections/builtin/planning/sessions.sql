-- Named SQL of the planning projection (loaded by `sessions.py`). Table names are unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow. A batch reads the rows its events touch by key, and
-- writes each table's changed rows as one JSON array (jsonb_to_recordset), one statement per table.

-- session_rows --
-- The sessions a batch touches.
-- $1 session ids
SELECT session_id, opened_by, opened_by_kind, title, opened_at, turns, turns_done, turns_failed, last_activity_at,
       prompt_tokens, completion_tokens, model_calls, tool_calls, stream_version
  FROM planning_sessions WHERE session_id = ANY ($1::text[]);

-- turn_rows --
-- The turns a batch touches.
-- $1 session ids, $2 turn ids (pairwise)
SELECT t.session_id, t.turn_id, author, content, content_ref, strategy, analysis, plan_id, status, answer,
       answer_ref, error, asked_at, finished_at, state
  FROM planning_turns AS t
  JOIN unnest($1::text[], $2::text[]) AS k (session_id, turn_id)
    ON t.session_id = k.session_id AND t.turn_id = k.turn_id;

-- plan_rows --
-- The plans a batch touches.
-- $1 plan ids
SELECT plan_id, session_id, turn_id, planner_id, status, steps, steps_completed, steps_failed, cancel_requested_by,
       reason, created_at, finished_at
  FROM planning_plans WHERE plan_id = ANY ($1::text[]);

-- step_rows --
-- The steps a batch touches.
-- $1 plan ids, $2 step ids (pairwise)
SELECT s.plan_id, s.step_id, session_id, title, instructions, depends_on, executor, agent_id, status, result,
       result_ref, error, started_at, finished_at
  FROM planning_steps AS s
  JOIN unnest($1::text[], $2::text[]) AS k (plan_id, step_id) ON s.plan_id = k.plan_id AND s.step_id = k.step_id;

-- execution_rows --
-- The executions (an agent's thread in a turn) a batch touches.
-- $1 session ids, $2 turn ids, $3 threads, $4 agent ids (pairwise)
SELECT e.session_id, e.turn_id, e.thread, e.agent_id, role, model, provider, model_calls, prompt_tokens,
       completion_tokens, duration_ms, tool_calls, refused_calls, message_count, first_at, last_at
  FROM planning_executions AS e
  JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k (session_id, turn_id, thread, agent_id)
    ON e.session_id = k.session_id AND e.turn_id = k.turn_id AND e.thread = k.thread AND e.agent_id = k.agent_id;

-- session_upsert --
-- Write the sessions a batch changed.
-- $1 JSON array of rows
INSERT INTO planning_sessions AS s (session_id, opened_by, opened_by_kind, title, opened_at, turns, turns_done,
                                    turns_failed, last_activity_at, prompt_tokens, completion_tokens, model_calls,
                                    tool_calls, stream_version)
SELECT session_id, opened_by, opened_by_kind, title, opened_at, turns, turns_done, turns_failed, last_activity_at,
       prompt_tokens, completion_tokens, model_calls, tool_calls, stream_version
  FROM jsonb_to_recordset($1::jsonb) AS x (session_id text, opened_by text, opened_by_kind text, title text,
       opened_at timestamptz, turns integer, turns_done integer, turns_failed integer,
       last_activity_at timestamptz, prompt_tokens bigint, completion_tokens bigint, model_calls bigint,
       tool_calls bigint, stream_version bigint)
ON CONFLICT (session_id) DO UPDATE
   SET opened_by = excluded.opened_by, opened_by_kind = excluded.opened_by_kind, title = excluded.title,
       opened_at = excluded.opened_at, turns = excluded.turns, turns_done = excluded.turns_done,
       turns_failed = excluded.turns_failed, last_activity_at = excluded.last_activity_at,
       prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
       model_calls = excluded.model_calls, tool_calls = excluded.tool_calls, stream_version = excluded.stream_version;

-- turn_upsert --
-- Write the turns a batch changed.
-- $1 JSON array of rows
INSERT INTO planning_turns AS t (session_id, turn_id, author, content, content_ref, strategy, analysis, plan_id,
                                 status, answer, answer_ref, error, asked_at, finished_at, state)
SELECT session_id, turn_id, author, content, content_ref, strategy, analysis, plan_id, status, answer, answer_ref,
       error, asked_at, finished_at, state
  FROM jsonb_to_recordset($1::jsonb) AS x (session_id text, turn_id text, author text, content text,
       content_ref text, strategy text, analysis text, plan_id text, status text, answer text, answer_ref text,
       error text, asked_at timestamptz, finished_at timestamptz, state jsonb)
ON CONFLICT (session_id, turn_id) DO UPDATE
   SET strategy = excluded.strategy, analysis = excluded.analysis, plan_id = excluded.plan_id,
       status = excluded.status, answer = excluded.answer, answer_ref = excluded.answer_ref, error = excluded.error,
       finished_at = excluded.finished_at, state = excluded.state;

-- plan_upsert --
-- Write the plans a batch changed.
-- $1 JSON array of rows
INSERT INTO planning_plans AS p (plan_id, session_id, turn_id, planner_id, status, steps, steps_completed,
                                 steps_failed, cancel_requested_by, reason, created_at, finished_at)
SELECT plan_id, session_id, turn_id, planner_id, status, steps, steps_completed, steps_failed, cancel_requested_by,
       reason, created_at, finished_at
  FROM jsonb_to_recordset($1::jsonb) AS x (plan_id text, session_id text, turn_id text, planner_id text,
       status text, steps integer, steps_completed integer, steps_failed integer, cancel_requested_by text,
       reason text, created_at timestamptz, finished_at timestamptz)
ON CONFLICT (plan_id) DO UPDATE
   SET status = excluded.status, steps_completed = excluded.steps_completed, steps_failed = excluded.steps_failed,
       cancel_requested_by = excluded.cancel_requested_by, reason = excluded.reason,
       finished_at = excluded.finished_at;

-- step_upsert --
-- Write the steps a batch changed.
-- $1 JSON array of rows
INSERT INTO planning_steps AS s (plan_id, step_id, session_id, title, instructions, depends_on, executor, agent_id,
                                 status, result, result_ref, error, started_at, finished_at)
SELECT plan_id, step_id, session_id, title, instructions, depends_on, executor, agent_id, status, result,
       result_ref, error, started_at, finished_at
  FROM jsonb_to_recordset($1::jsonb) AS x (plan_id text, step_id text, session_id text, title text,
       instructions text, depends_on text[], executor boolean, agent_id text, status text, result text,
       result_ref text, error text, started_at timestamptz, finished_at timestamptz)
ON CONFLICT (plan_id, step_id) DO UPDATE
   SET agent_id = excluded.agent_id, status = excluded.status, result = excluded.result,
       result_ref = excluded.result_ref, error = excluded.error, started_at = excluded.started_at,
       finished_at = excluded.finished_at;

-- execution_upsert --
-- Write the executions a batch changed.
-- $1 JSON array of rows
INSERT INTO planning_executions AS e (session_id, turn_id, thread, agent_id, role, model, provider, model_calls,
                                      prompt_tokens, completion_tokens, duration_ms, tool_calls, refused_calls,
                                      message_count, first_at, last_at)
SELECT session_id, turn_id, thread, agent_id, role, model, provider, model_calls, prompt_tokens, completion_tokens,
       duration_ms, tool_calls, refused_calls, message_count, first_at, last_at
  FROM jsonb_to_recordset($1::jsonb) AS x (session_id text, turn_id text, thread text, agent_id text, role text,
       model text, provider text, model_calls integer, prompt_tokens bigint, completion_tokens bigint,
       duration_ms float8, tool_calls integer, refused_calls integer, message_count integer,
       first_at timestamptz, last_at timestamptz)
ON CONFLICT (session_id, turn_id, thread, agent_id) DO UPDATE
   SET role = excluded.role, model = excluded.model, provider = excluded.provider,
       model_calls = excluded.model_calls, prompt_tokens = excluded.prompt_tokens,
       completion_tokens = excluded.completion_tokens, duration_ms = excluded.duration_ms,
       tool_calls = excluded.tool_calls, refused_calls = excluded.refused_calls,
       message_count = excluded.message_count, last_at = excluded.last_at;

-- message_insert --
-- A batch's new transcript messages (a message seen again is kept once).
-- $1 JSON array of messages
INSERT INTO planning_messages (session_id, global_position, message_index, turn_id, step_id, agent_id, role,
                               content, content_ref, tool_calls, tool_call_id, tool, ok, refused, error,
                               recorded_at)
SELECT session_id, global_position, message_index, turn_id, step_id, agent_id, role, content, content_ref,
       tool_calls, tool_call_id, tool, ok, refused, error, recorded_at
  FROM jsonb_to_recordset($1::jsonb) AS x (session_id text, global_position bigint, message_index integer,
       turn_id text, step_id text, agent_id text, role text, content text, content_ref text, tool_calls jsonb,
       tool_call_id text, tool text, ok boolean, refused boolean, error text, recorded_at timestamptz)
ON CONFLICT (session_id, global_position, message_index) DO NOTHING;
