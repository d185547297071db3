-- The system overview (issue 13 item 7): what the fleet and its queue look like now, from the projections.

-- Tasks waiting for an agent that no registered agent can be: accepted (an agent with the capability may register
-- later), and named here so that nobody waits on them unknowingly.
CREATE VIEW reports.unroutable_tasks AS
SELECT t.task_id, t.task_type, t.priority, t.capabilities, t.status, t.created_at
  FROM projections.tasks AS t
 WHERE t.status IN ('queued', 'waiting')
   AND NOT EXISTS (SELECT 1 FROM projections.registry AS r
                    WHERE r.state = 'registered' AND r.capabilities @> t.capabilities)
 ORDER BY t.priority DESC, t.created_at, t.task_id;
COMMENT ON VIEW reports.unroutable_tasks IS
    'Queued tasks needing capabilities no registered agent has (accepted; they wait for such an agent).';

-- One row: agents by state and inferred activity (healthy = active, degraded = idle, unhealthy = offline), and
-- tasks by where they are in their lifecycle.
CREATE VIEW reports.system_overview AS
SELECT count(*) FILTER (WHERE r.state = 'registered')                               AS total_agents,
       count(*) FILTER (WHERE r.state = 'registered' AND r.activity <> 'offline')   AS running_agents,
       count(*) FILTER (WHERE r.state IN ('deregistered', 'gone'))                   AS stopped_agents,
       count(*) FILTER (WHERE r.state = 'registered' AND r.activity = 'active')     AS healthy_agents,
       count(*) FILTER (WHERE r.state = 'registered' AND r.activity = 'idle')       AS degraded_agents,
       count(*) FILTER (WHERE r.state = 'registered' AND r.activity = 'offline')    AS unhealthy_agents,
       (SELECT count(*) FROM projections.tasks WHERE status IN ('queued', 'waiting')) AS pending_tasks,
       (SELECT count(*) FROM projections.tasks WHERE status IN ('assigned', 'running')) AS running_tasks,
       (SELECT count(*) FROM projections.tasks WHERE status = 'completed')           AS completed_tasks,
       (SELECT count(*) FROM projections.tasks WHERE status = 'dead_lettered')       AS dead_lettered_tasks,
       (SELECT count(*) FROM reports.unroutable_tasks)                               AS unroutable_tasks
  FROM projections.registry AS r;
COMMENT ON VIEW reports.system_overview IS
    'Agents by state and activity (healthy active, degraded idle, unhealthy offline) and tasks by lifecycle.';
