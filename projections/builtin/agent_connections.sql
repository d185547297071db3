-- Named SQL of the agent_connections projection (loaded by `agent_connections.py`): one statement per event type,
-- run once per event. The table is unqualified: the runner points search_path at the live schema, a rebuild at its
-- shadow. An agent that ended (status 'disconnected' or 'error') stays ended: the statements that would move it
-- again say so with `status NOT IN ('disconnected', 'error')`.

-- agent_spawn_requested --
-- AgentSpawnRequested: the agent's row, connecting (the first request wins).
-- $1 agent id, $2 document id, $3 manager id, $4 attempt, $5 spawn reason, $6 recorded at
INSERT INTO agent_connections (agent_id, document_id, manager_id, status, attempt, spawn_reason,
                               requested_at, last_activity_at)
VALUES ($1, $2, $3, 'connecting', $4, $5, $6, $6)
ON CONFLICT (agent_id) DO NOTHING;

-- agent_process_started --
-- AgentProcessStarted: the worker's process id.
-- $1 agent id, $2 pid, $3 recorded at
UPDATE agent_connections SET agent_pid = $2, last_activity_at = $3 WHERE agent_id = $1;

-- agent_connected --
-- AgentConnected: active, unless it went idle, was asked to stop or ended meanwhile.
-- $1 agent id, $2 recorded at
UPDATE agent_connections SET status = 'active', connected_at = $2, last_activity_at = $2
 WHERE agent_id = $1 AND status NOT IN ('idle', 'detaching', 'disconnected', 'error');

-- document_idled --
-- DocumentIdled: the document's connecting and active agents go idle.
-- $1 document id, $2 recorded at
UPDATE agent_connections SET status = 'idle', last_activity_at = $2
 WHERE document_id = $1 AND status IN ('connecting', 'active');

-- agent_detach_requested --
-- AgentDetachRequested: detaching, with the reason, unless it ended.
-- $1 agent id, $2 reason, $3 recorded at
UPDATE agent_connections SET status = 'detaching', end_reason = $2, last_activity_at = $3
 WHERE agent_id = $1 AND status NOT IN ('disconnected', 'error');

-- agent_unresponsive --
-- AgentUnresponsive: the pongs it missed, as the reason it is about to end, unless it ended.
-- $1 agent id, $2 reason, $3 recorded at
UPDATE agent_connections SET end_reason = $2, last_activity_at = $3
 WHERE agent_id = $1 AND status NOT IN ('disconnected', 'error');

-- agent_process_exited --
-- AgentProcessExited: disconnected when the exit was expected (keeping the reason it was asked to stop for),
-- error otherwise, unless it ended.
-- $1 agent id, $2 expected, $3 exit code, $4 reason, $5 recorded at
UPDATE agent_connections
   SET status = CASE WHEN $2 THEN 'disconnected' ELSE 'error' END, exit_code = $3,
       end_reason = CASE WHEN $2 THEN coalesce(end_reason, $4) ELSE $4 END, ended_at = $5,
       last_activity_at = $5
 WHERE agent_id = $1 AND status NOT IN ('disconnected', 'error');

-- agent_abandoned --
-- AgentAbandoned: error (it kept crashing), unless it ended.
-- $1 agent id, $2 reason, $3 recorded at
UPDATE agent_connections SET status = 'error', end_reason = $2, ended_at = $3, last_activity_at = $3
 WHERE agent_id = $1 AND status NOT IN ('disconnected', 'error');

-- agent_failed --
-- AgentFailed: error, with the reason.
-- $1 agent id, $2 reason, $3 recorded at
UPDATE agent_connections SET status = 'error', end_reason = $2, last_activity_at = $3 WHERE agent_id = $1;

-- manager_stopped --
-- ManagerStopped: the manager's agents that had not ended are disconnected.
-- $1 manager id, $2 reason, $3 recorded at
UPDATE agent_connections SET status = 'disconnected', end_reason = $2, ended_at = $3, last_activity_at = $3
 WHERE manager_id = $1 AND status NOT IN ('disconnected', 'error');

-- locations_marked --
-- LocationsMarked: count the places marked.
-- $1 agent id, $2 places marked, $3 recorded at
UPDATE agent_connections SET locations_marked_count = locations_marked_count + $2, last_activity_at = $3
 WHERE agent_id = $1;

-- tokens_spent --
-- TokensSpent: one more LLM call, and its tokens.
-- $1 agent id, $2 tokens (prompt and completion), $3 recorded at
UPDATE agent_connections SET llm_calls_count = llm_calls_count + 1, tokens_spent = tokens_spent + $2,
                             last_activity_at = $3
 WHERE agent_id = $1;

-- agent_metrics_reported --
-- AgentMetricsReported: the worker's latest memory and CPU figures.
-- $1 agent id, $2 memory (MB), $3 CPU (percent)
UPDATE agent_connections SET memory_mb = $2, cpu_percent = $3 WHERE agent_id = $1;
