-- Named SQL of the supervisor (loaded by `supervisor.py`).

-- running_here --
-- The agents the log says run under this manager and have not ended (to reconcile with after a restart).
-- $1 manager id
SELECT agent_id, document_id, agent_pid FROM projections.agent_connections
 WHERE manager_id = $1 AND status NOT IN ('disconnected', 'error');

-- managers_alive --
-- Each manager's latest start or stop, with its stream's head version (to record a dead manager as lost).
-- No parameters.
SELECT DISTINCT ON (e.stream_id) e.stream_id, e.event_type, e.data,
       (SELECT max(h.stream_version) FROM agentlog.events AS h WHERE h.stream_id = e.stream_id) AS head_version
  FROM agentlog.events AS e
 WHERE e.category = 'manager' AND e.event_type IN ('ManagerStarted', 'ManagerStopped')
 ORDER BY e.stream_id, e.stream_version DESC;

-- system_stats --
-- The agent system's figures now (reports.agent_system_stats). No parameters.
SELECT * FROM reports.agent_system_stats;

-- probe --
-- Whether the connection still answers. No parameters.
SELECT 1;
