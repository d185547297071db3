-- Named SQL of the planner runtime (loaded by `runtime.py`).

-- running_turns --
-- Sessions with a turn not finished, as the planning projection shows them (up to its checkpoint; the runtime
-- reads the log after it for the rest).
SELECT DISTINCT session_id FROM projections.planning_turns WHERE status = 'running';
