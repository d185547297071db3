-- Named SQL of the API's reads (loaded by `reads.py`): the projections, never the log, except the
-- checkpoints that say how far the projections have read it. Every value is a parameter.

-- caught_up --
-- Whether every named projection has applied the log up to a position (read-your-writes).
-- $1 projection names, $2 transaction id, $3 global position
SELECT count(*) = cardinality($1::text[])
  FROM agentlog.checkpoints
 WHERE name = ANY ($1::text[]) AND (transaction_id::text::bigint, global_position) >= ($2, $3);

-- agent --
-- $1 agent id
SELECT * FROM projections.registry WHERE agent_id = $1;

-- agents --
-- Agents by state (NULL: any), status (NULL: any), capability (NULL: any), in id order after a cursor.
-- $1 state, $2 status, $3 capability, $4 after agent id, $5 limit
SELECT * FROM projections.registry
 WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR status = $2)
   AND ($3::text IS NULL OR $3 = ANY (capabilities)) AND agent_id > $4
 ORDER BY agent_id LIMIT $5;

-- agent_statistics --
-- $1 agent id
SELECT r.heartbeats,
       (SELECT count(*) FROM projections.locks AS l WHERE l.holder = $1)                               AS locks_held,
       (SELECT count(*) FROM projections.claims AS c WHERE c.holder = $1 AND c.state = 'held')         AS claims_held,
       (SELECT count(*) FROM projections.inbox AS i WHERE i.recipient = $1 AND i.acknowledged_at IS NULL) AS unread_messages,
       (SELECT count(*) FROM projections.inbox AS i WHERE i.sender = $1 AND i.kind = 'direct')         AS messages_sent,
       (SELECT count(*) FROM projections.chat AS m WHERE m.author = $1)                                AS chat_posts,
       (SELECT count(*) FROM projections.memories AS k WHERE k.agent_id = $1 AND k.forgotten_at IS NULL) AS memories,
       (SELECT count(*) FROM projections.agent_checkpoints AS p WHERE p.agent_id = $1)                 AS checkpoints
  FROM projections.registry AS r WHERE r.agent_id = $1;

-- chat_after --
-- $1 after seq, $2 limit
SELECT * FROM projections.chat WHERE seq > $1 ORDER BY seq LIMIT $2;

-- chat_recent --
-- The last messages, oldest first.
-- $1 how many
SELECT * FROM (SELECT * FROM projections.chat ORDER BY seq DESC LIMIT $1) AS last ORDER BY seq;

-- inbox_after --
-- $1 recipient, $2 unread only, $3 after seq, $4 limit
SELECT * FROM projections.inbox
 WHERE recipient = $1 AND (NOT $2 OR acknowledged_at IS NULL) AND seq > $3
 ORDER BY seq LIMIT $4;

-- inbox_unread --
-- $1 recipient
SELECT count(*) FROM projections.inbox WHERE recipient = $1 AND acknowledged_at IS NULL;

-- inbox_unacknowledged --
-- Which of these messages are in the agent's inbox and not acknowledged yet.
-- $1 recipient, $2 message ids
SELECT message_id FROM projections.inbox
 WHERE recipient = $1 AND message_id = ANY ($2::text[]) AND acknowledged_at IS NULL;

-- checkpoint_latest --
-- $1 agent id
SELECT * FROM projections.agent_checkpoints WHERE agent_id = $1 ORDER BY version DESC LIMIT 1;

-- checkpoint_history --
-- $1 agent id, $2 before version, $3 limit
SELECT * FROM projections.agent_checkpoints WHERE agent_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3;

-- memories --
-- Memories not forgotten, of one agent (NULL: every agent), with a tag (NULL: any) and kind (NULL: any), matching a
-- full-text query (NULL: all; websearch syntax: words, "phrases", -not, or), best match first, else newest first.
-- $1 agent id, $2 tag, $3 kind, $4 text query, $5 limit
SELECT memory_id, agent_id, kind, text, tags, stored_at,
       CASE WHEN $4::text IS NULL THEN NULL
            ELSE ts_rank(search, websearch_to_tsquery('english', $4)) END AS rank
  FROM projections.memories
 WHERE forgotten_at IS NULL AND ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR tags @> ARRAY[$2])
   AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR search @@ websearch_to_tsquery('english', $4))
 ORDER BY rank DESC NULLS LAST, global_position DESC
 LIMIT $5;

-- memory --
-- $1 memory id
SELECT * FROM projections.memories WHERE memory_id = $1;

-- locks --
-- Locks held now, by holder (NULL: any).
-- $1 holder, $2 limit
SELECT * FROM projections.locks WHERE holder IS NOT NULL AND ($1::text IS NULL OR holder = $1)
 ORDER BY resource LIMIT $2;

-- claims --
-- $1 holder (NULL: any), $2 state (NULL: any), $3 limit
SELECT * FROM projections.claims WHERE ($1::text IS NULL OR holder = $1) AND ($2::text IS NULL OR state = $2)
 ORDER BY made_at DESC, claim_id LIMIT $3;

-- claim --
-- $1 claim id
SELECT * FROM projections.claims WHERE claim_id = $1;

-- held_locks --
-- Locks held now, for the claim rule (a path claim conflicts with locks others hold inside it).
SELECT resource, holder, fencing_token FROM projections.locks WHERE holder IS NOT NULL;

-- lock_expires_at --
-- $1 resource
SELECT expires_at FROM projections.locks WHERE resource = $1;

-- take_key --
-- Record a request with this Idempotency-Key as under way, unless one is (within its lease) or was answered: a row
-- back means this request runs. A request under way past its lease (its process died) is taken over.
-- $1 principal, $2 key, $3 request hash, $4 lease in seconds
INSERT INTO agentlog.api_idempotency AS kept (principal, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (principal, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, created_at = now()
    WHERE kept.status_code IS NULL AND kept.created_at < now() - make_interval(secs => $4)
RETURNING principal;

-- idempotent_answer --
-- What the first request with this Idempotency-Key answered, or NULLs while it is under way.
-- $1 principal, $2 key
SELECT request_hash, status_code, body FROM agentlog.api_idempotency WHERE principal = $1 AND key = $2;

-- keep_answer --
-- The answer of the request that held the key, for its retries.
-- $1 principal, $2 key, $3 request hash, $4 status code, $5 body
UPDATE agentlog.api_idempotency SET status_code = $4, body = $5
WHERE principal = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL;

-- give_key_back --
-- The request that held the key gave no answer worth keeping (5xx, 429, gone): a retry runs it again.
-- $1 principal, $2 key, $3 request hash
DELETE FROM agentlog.api_idempotency
WHERE principal = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL;

-- forget_old_answers --
-- Answers are kept for 24 hours.
DELETE FROM agentlog.api_idempotency WHERE created_at < now() - interval '24 hours';

-- task --
-- $1 task id
SELECT * FROM projections.tasks WHERE task_id = $1;

-- tasks --
-- Tasks by status, agent and type (NULL: any), in id order after a cursor.
-- $1 status, $2 agent id, $3 task type, $4 after task id, $5 limit
SELECT * FROM projections.tasks
 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR agent_id = $2)
   AND ($3::text IS NULL OR task_type = $3) AND task_id > $4
 ORDER BY task_id LIMIT $5;

-- agent_tasks --
-- The tasks an agent holds an attempt of (assigned or running), most urgent first.
-- $1 agent id
SELECT * FROM projections.tasks WHERE agent_id = $1 AND status IN ('assigned', 'running')
 ORDER BY priority DESC, assigned_at, task_id;

-- task_dependencies --
-- What the named tasks depend on, and what those depend on, all the way down (for the cycle check of a create).
-- $1 task ids
WITH RECURSIVE reached (task_id, depends_on) AS (
    SELECT task_id, depends_on FROM projections.tasks WHERE task_id = ANY ($1::text[])
    UNION
    SELECT t.task_id, t.depends_on FROM projections.tasks t JOIN reached r ON t.task_id = ANY (r.depends_on)
)
SELECT task_id, depends_on FROM reached;

-- queue_depth --
-- The queue's depth per status and priority, with the age of its oldest task, for GET /tasks/queue.
SELECT status, priority, tasks, oldest_created_at FROM reports.task_queue;

-- budget --
-- $1 budget id
SELECT * FROM projections.budgets WHERE budget_id = $1;

-- budgets --
-- Every budget with its spending today, for GET /budgets.
SELECT * FROM projections.budgets ORDER BY budget_id;

-- agent_budgets --
-- The budgets an agent's calls count against: the global one and its own, those that are set.
-- $1 agent id
SELECT * FROM projections.budgets WHERE budget_id IN ('global', 'agent-' || $1) ORDER BY budget_id;

-- operations_under_way --
-- Operations not finished or expired, of one key and one agent (NULL: any), oldest first.
-- $1 key, $2 agent id, $3 limit
SELECT key, operation_id, agent_id, action, in_window, data, registered_at, window_ends_at, expires_at
  FROM projections.operations
 WHERE state = 'open' AND ($1::text IS NULL OR key = $1) AND ($2::text IS NULL OR agent_id = $2)
 ORDER BY registered_at, operation_id LIMIT $3;

-- task_statistics --
-- Tasks whose last attempt the agent held (seed 003's statistics).
-- $1 agent id
SELECT total, completed, failed, active, average_execution_s FROM reports.task_agents WHERE agent_id = $1;

-- overview --
-- The one-row summary of agents and tasks behind GET /overview.
SELECT * FROM reports.system_overview;

-- agents_by_type --
-- Registered agents by their metadata's `type` (untyped when it has none).
SELECT coalesce(metadata ->> 'type', 'untyped') AS type, count(*) AS agents
  FROM projections.registry WHERE state = 'registered' GROUP BY 1 ORDER BY 1;

-- unroutable_tasks --
-- $1 limit
SELECT task_id, task_type, priority, capabilities FROM reports.unroutable_tasks LIMIT $1;

-- programs --
-- Every agent program, for GET /programs.
SELECT * FROM projections.programs ORDER BY agent_id;

-- schedules --
-- Every schedule not deleted, for GET /schedules.
SELECT * FROM projections.schedules WHERE status <> 'deleted' ORDER BY schedule_id;

-- schedule --
-- $1 schedule id
SELECT * FROM projections.schedules WHERE schedule_id = $1;

-- planning_sessions --
-- Planner sessions, the last active first, for GET /sessions.
-- $1 limit
SELECT session_id, opened_by, opened_by_kind, title, opened_at, turns, turns_done, turns_failed, last_activity_at,
       prompt_tokens, completion_tokens, model_calls, tool_calls
  FROM projections.planning_sessions
 WHERE opened_at IS NOT NULL
 ORDER BY last_activity_at DESC, session_id
 LIMIT $1;

-- planning_executions --
-- One session's executions (an agent's thread in a turn), in the order they began, for GET /sessions/{id}/executions.
-- $1 session id
SELECT session_id, turn_id, thread, agent_id, role, provider, model, model_calls, prompt_tokens, completion_tokens,
       duration_ms, tool_calls, refused_calls, message_count, first_at, last_at
  FROM projections.planning_executions
 WHERE session_id = $1
 ORDER BY first_at, turn_id, thread, agent_id;

-- tool_refusals --
-- Refused tool calls and writes, newest first, for GET /refusals.
-- $1 limit
SELECT agent_id, tool, arguments, session_id, step_id, reason, refused_at
  FROM projections.tool_refusals
 ORDER BY global_position DESC
 LIMIT $1;
