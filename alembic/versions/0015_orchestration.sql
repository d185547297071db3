-- Orchestration (issue 13): the read models of the task queue and of token budgets, and reports over them.
--
-- These are projections: every row is derived from the task and budget events (domains/tasks, domains/budgets)
-- and rebuilt by `agentlog replay`. What a command may do is never decided from them: the API folds the task's
-- or budget's stream and appends at the version it folded, the dispatcher decides from its own state.

-- One row per task: its lifecycle as the tasks domain folds its stream (`lifecycle`, the fold's state, which the
-- projection folds on from), and what people and reports read of it.
CREATE TABLE projections.tasks (
    task_id           text        PRIMARY KEY,
    task_type         text        NOT NULL,
    priority          integer     NOT NULL,   -- 1 lowest, 10 highest
    status            text        NOT NULL,   -- waiting, queued, assigned, running, failed, completed,
                                              -- dead_lettered, cancelled
    attempt           integer     NOT NULL,   -- the last attempt assigned (0 before the first)
    agent_id          text,                   -- the last attempt's agent
    attempts_spent    integer     NOT NULL,   -- failed attempts since creation or the last requeue
    max_attempts      integer     NOT NULL,
    capabilities      text[]      NOT NULL,
    depends_on        text[]      NOT NULL,
    concurrency_key   text,
    dedupe_key        text,
    payload           jsonb       NOT NULL,
    payload_ref       text,
    result            jsonb,
    last_error        text,
    reason            text,                   -- why it was dead-lettered or cancelled
    refusals          bigint      NOT NULL,   -- commands refused (stale attempts, other agents, finished task)
    created_at        timestamptz,
    assigned_at       timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    last_heartbeat_at timestamptz,
    updated_at        timestamptz,
    lifecycle         jsonb       NOT NULL
);
CREATE INDEX tasks_status_idx ON projections.tasks (status, priority DESC, created_at);
CREATE INDEX tasks_agent_idx ON projections.tasks (agent_id, status);
COMMENT ON TABLE projections.tasks IS 'Every task: status, attempt and agent, result or error, and its timestamps.';

-- One row per token budget: its limit and reset, and its current period.
CREATE TABLE projections.budgets (
    budget_id         text        PRIMARY KEY,   -- global, or agent-<agent id>
    limit_tokens      bigint      NOT NULL,
    reset_hour        integer     NOT NULL,
    time_zone         text        NOT NULL,
    period            text        NOT NULL,      -- the date the current period began on (YYYY-MM-DD)
    settled_tokens    bigint      NOT NULL,
    reserved_tokens   bigint      NOT NULL,      -- held by open reservations
    open_reservations integer     NOT NULL,
    remaining_tokens  bigint      NOT NULL,
    warned            integer[]   NOT NULL,      -- thresholds (50, 75, 90) warned of in this period
    unbudgeted_tokens bigint      NOT NULL,      -- used in this period beyond what the budget had left
    updated_at        timestamptz NOT NULL,
    ledger            jsonb       NOT NULL       -- the domain's fold, which the projection folds on from
);
COMMENT ON TABLE projections.budgets IS
    'Token budgets: limit, reset, and the current period''s settled, reserved and remaining tokens and warnings.';

CREATE VIEW reports.task_queue AS
SELECT status, priority, count(*) AS tasks, min(created_at) AS oldest_created_at
  FROM projections.tasks
 GROUP BY status, priority
 ORDER BY status, priority DESC;
COMMENT ON VIEW reports.task_queue IS 'Queue depth: tasks by status and priority, with the oldest of each.';

CREATE VIEW reports.task_agents AS
SELECT agent_id, count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status IN ('dead_lettered', 'failed')) AS failed,
       count(*) FILTER (WHERE status IN ('assigned', 'running')) AS active,
       round(avg(extract(epoch FROM finished_at - started_at)) FILTER (WHERE status = 'completed')::numeric, 3)
           AS average_execution_s
  FROM projections.tasks
 WHERE agent_id IS NOT NULL
 GROUP BY agent_id
 ORDER BY agent_id;
COMMENT ON VIEW reports.task_agents IS
    'Per agent, tasks whose last attempt it held: total, completed, failed, active, average execution time (s).';
