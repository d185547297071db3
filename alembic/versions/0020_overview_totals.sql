-- The overview's agent counts add up as seed 003's do (hostile review 14): every agent the registry knows is
-- running (registered: healthy, degraded or unhealthy by its inferred activity) or stopped (deregistered, gone).
-- Before, the total left out the stopped agents it counted, and running left out the unhealthy.
CREATE OR REPLACE VIEW reports.system_overview AS
SELECT count(*)                                                                      AS total_agents,
       count(*) FILTER (WHERE r.state = 'registered')                               AS running_agents,
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
    'Agents: total = running (registered; healthy active, degraded idle, unhealthy offline) + stopped; tasks by lifecycle.';
