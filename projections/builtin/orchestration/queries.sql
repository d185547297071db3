-- task_rows --
-- The task rows of the tasks a batch touches.
-- $1 task ids
SELECT task_id, task_type, priority, status, attempt, agent_id, attempts_spent, max_attempts, capabilities,
       depends_on, concurrency_key, dedupe_key, payload, payload_ref, result, last_error, reason, refusals,
       created_at, assigned_at, started_at, finished_at, last_heartbeat_at, updated_at, lifecycle
  FROM tasks WHERE task_id = ANY ($1::text[]);

-- task_upsert --
-- Write the rows of the tasks a batch changed.
-- $1 JSON array of rows
INSERT INTO tasks AS t (task_id, task_type, priority, status, attempt, agent_id, attempts_spent, max_attempts,
                        capabilities, depends_on, concurrency_key, dedupe_key, payload, payload_ref, result,
                        last_error, reason, refusals, created_at, assigned_at, started_at, finished_at,
                        last_heartbeat_at, updated_at, lifecycle)
SELECT task_id, task_type, priority, status, attempt, agent_id, attempts_spent, max_attempts, capabilities,
       depends_on, concurrency_key, dedupe_key, payload, payload_ref, result, last_error, reason, refusals,
       created_at, assigned_at, started_at, finished_at, last_heartbeat_at, updated_at, lifecycle
  FROM jsonb_to_recordset($1::jsonb) AS x (task_id text, task_type text, priority integer, status text,
       attempt integer, agent_id text, attempts_spent integer, max_attempts integer, capabilities text[],
       depends_on text[], concurrency_key text, dedupe_key text, payload jsonb, payload_ref text, result jsonb,
       last_error text, reason text, refusals bigint, created_at timestamptz, assigned_at timestamptz,
       started_at timestamptz, finished_at timestamptz, last_heartbeat_at timestamptz, updated_at timestamptz,
       lifecycle jsonb)
ON CONFLICT (task_id) DO UPDATE
   SET task_type = excluded.task_type, priority = excluded.priority, status = excluded.status,
       attempt = excluded.attempt, agent_id = excluded.agent_id, attempts_spent = excluded.attempts_spent,
       max_attempts = excluded.max_attempts, capabilities = excluded.capabilities,
       depends_on = excluded.depends_on, concurrency_key = excluded.concurrency_key,
       dedupe_key = excluded.dedupe_key, payload = excluded.payload, payload_ref = excluded.payload_ref,
       result = excluded.result, last_error = excluded.last_error, reason = excluded.reason,
       refusals = excluded.refusals, created_at = excluded.created_at, assigned_at = excluded.assigned_at,
       started_at = excluded.started_at, finished_at = excluded.finished_at,
       last_heartbeat_at = excluded.last_heartbeat_at, updated_at = excluded.updated_at,
       lifecycle = excluded.lifecycle;

-- budget_rows --
-- The rows of the budgets a batch touches.
-- $1 budget ids
SELECT budget_id, limit_tokens, reset_hour, time_zone, period, settled_tokens, reserved_tokens,
       open_reservations, remaining_tokens, warned, unbudgeted_tokens, updated_at, ledger
  FROM budgets WHERE budget_id = ANY ($1::text[]);

-- budget_upsert --
-- Write the rows of the budgets a batch changed.
-- $1 JSON array of rows
INSERT INTO budgets AS b (budget_id, limit_tokens, reset_hour, time_zone, period, settled_tokens, reserved_tokens,
                          open_reservations, remaining_tokens, warned, unbudgeted_tokens, updated_at, ledger)
SELECT budget_id, limit_tokens, reset_hour, time_zone, period, settled_tokens, reserved_tokens, open_reservations,
       remaining_tokens, warned, unbudgeted_tokens, updated_at, ledger
  FROM jsonb_to_recordset($1::jsonb) AS x (budget_id text, limit_tokens bigint, reset_hour integer,
       time_zone text, period text, settled_tokens bigint, reserved_tokens bigint, open_reservations integer,
       remaining_tokens bigint, warned integer[], unbudgeted_tokens bigint, updated_at timestamptz, ledger jsonb)
ON CONFLICT (budget_id) DO UPDATE
   SET limit_tokens = excluded.limit_tokens, reset_hour = excluded.reset_hour, time_zone = excluded.time_zone,
       period = excluded.period, settled_tokens = excluded.settled_tokens,
       reserved_tokens = excluded.reserved_tokens, open_reservations = excluded.open_reservations,
       remaining_tokens = excluded.remaining_tokens, warned = excluded.warned,
       unbudgeted_tokens = excluded.unbudgeted_tokens, updated_at = excluded.updated_at, ledger = excluded.ledger;
