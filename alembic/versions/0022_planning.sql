-- Planner sessions (seed 004): the store of large texts, the read models of sessions, and reports over them.
--
-- `agentlog.contents` is not a projection: the runtime writes a text there once, by its hash, before it appends
-- the event that names it (`content_ref`). Everything else is a projection: every row is derived from the session
-- events (domains/planning) and rebuilt by `agentlog replay`. What a session does next is never decided from
-- them: the runtime folds the session's stream (`domains.planning.session`) and appends at the version it folded.

-- Large texts (prompts, answers, tool results), each kept once by the hash of its body.
CREATE TABLE agentlog.contents (
    content_hash    text        PRIMARY KEY CHECK (content_hash ~ '^sha256:[0-9a-f]{64}$'),
    body            text        NOT NULL,
    chars           integer,                -- the body's length in characters
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE agentlog.contents IS
    'Large texts of planner sessions, each kept once by content hash (sha256:<hex>) and named by the events.';

-- The `planning` projection: one session, its turns, its plans and their steps, its transcript and what each
-- agent's thread cost. The projection folds on from the session rows (`stream_version`, the last event applied)
-- and from each turn's `state` (what its threads were already given: a call recorded twice counts once).
CREATE TABLE projections.planning_sessions (
    session_id        text        PRIMARY KEY,
    opened_by         text        NOT NULL,   -- '' until SessionOpened
    opened_by_kind    text        NOT NULL,   -- admin, person, agent ('' until SessionOpened)
    title             text        NOT NULL,
    opened_at         timestamptz,
    turns             integer     NOT NULL,   -- requests asked
    turns_done        integer     NOT NULL,   -- answered
    turns_failed      integer     NOT NULL,   -- ended in error (cancelled ones are neither done nor failed)
    last_activity_at  timestamptz NOT NULL,   -- the session's last event
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    model_calls       bigint      NOT NULL,
    tool_calls        bigint      NOT NULL,
    stream_version    bigint      NOT NULL    -- the last event of the session's stream applied
);
CREATE INDEX planning_sessions_activity_idx ON projections.planning_sessions (last_activity_at DESC);
COMMENT ON TABLE projections.planning_sessions IS
    'Planner sessions: who opened them, turns asked, done and failed, tokens, model calls and tool calls.';

CREATE TABLE projections.planning_turns (
    session_id   text        NOT NULL,
    turn_id      text        NOT NULL,   -- the id of the message that asked it
    author       text        NOT NULL,
    content      text        NOT NULL,   -- the request ('' when kept by reference)
    content_ref  text,                   -- agentlog.contents
    strategy     text,                   -- simple, tool, complex (null until analysed)
    analysis     text        NOT NULL,
    plan_id      text,                   -- its plan, when it was planned
    status       text        NOT NULL,   -- running, done, error, cancelled
    answer       text,
    answer_ref   text,
    error        text        NOT NULL,
    asked_at     timestamptz NOT NULL,
    finished_at  timestamptz,
    state        jsonb       NOT NULL,   -- per thread: model calls and tool calls answered (the fold goes on from it)
    PRIMARY KEY (session_id, turn_id)
);
CREATE INDEX planning_turns_status_idx ON projections.planning_turns (status, asked_at);
COMMENT ON TABLE projections.planning_turns IS
    'Requests of planner sessions: who asked what, how the planner read it, its plan, its answer or error.';

CREATE TABLE projections.planning_plans (
    plan_id             text        PRIMARY KEY,
    session_id          text        NOT NULL,
    turn_id             text        NOT NULL,
    planner_id          text        NOT NULL,
    status              text        NOT NULL,   -- running, completed, failed, cancelled
    steps               integer     NOT NULL,
    steps_completed     integer     NOT NULL,
    steps_failed        integer     NOT NULL,
    cancel_requested_by text,
    reason              text        NOT NULL,   -- why it was cancelled or ended so
    created_at          timestamptz NOT NULL,
    finished_at         timestamptz
);
CREATE INDEX planning_plans_session_idx ON projections.planning_plans (session_id, turn_id);
COMMENT ON TABLE projections.planning_plans IS
    'Plans of planner sessions: their turn and planner, status, steps completed and failed, cancellation.';

CREATE TABLE projections.planning_steps (
    plan_id       text        NOT NULL,
    step_id       text        NOT NULL,
    session_id    text        NOT NULL,
    title         text        NOT NULL,
    instructions  text        NOT NULL,
    depends_on    text[]      NOT NULL,   -- the steps whose results it is given
    executor      boolean     NOT NULL,   -- done by a read-only executor (else by the planner)
    agent_id      text,
    status        text        NOT NULL,   -- pending, running, completed, failed
    result        text,
    result_ref    text,
    error         text        NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (plan_id, step_id)
);
CREATE INDEX planning_steps_session_idx ON projections.planning_steps (session_id);
COMMENT ON TABLE projections.planning_steps IS
    'Steps of plans: instructions, dependencies, who did them, status, result or error, when.';

-- The transcript: one row per message, in the log's order (global_position, then message_index in its event).
CREATE TABLE projections.planning_messages (
    session_id      text        NOT NULL,
    global_position bigint      NOT NULL,   -- the event's
    message_index   integer     NOT NULL,   -- the message's within its event
    turn_id         text        NOT NULL,
    step_id         text,                   -- the thread: null the turn's own, a step's id, or 'final'
    agent_id        text,                   -- null for the person's request
    role            text        NOT NULL,   -- user, assistant, tool
    content         text        NOT NULL,
    content_ref     text,
    tool_calls      jsonb,                  -- an assistant's: [{call_id, tool, arguments}]
    tool_call_id    text,                   -- a tool's: the call it answers
    tool            text,
    ok              boolean,                -- a tool's: it gave a result
    refused         boolean     NOT NULL,   -- a tool's: the server refused it
    error           text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (session_id, global_position, message_index)
);
CREATE INDEX planning_messages_tool_idx ON projections.planning_messages (tool) WHERE role = 'tool';
COMMENT ON TABLE projections.planning_messages IS
    'Transcripts of planner sessions: requests, model answers and tool answers, in the log''s order.';

-- An execution is one agent's thread in one turn: its model calls and what they cost, and its tool calls.
CREATE TABLE projections.planning_executions (
    session_id        text             NOT NULL,
    turn_id           text             NOT NULL,
    thread            text             NOT NULL,   -- '' the turn's own, a step's id, or 'final'
    agent_id          text             NOT NULL,
    role              text             NOT NULL,   -- planner, executor ('' before its first model call)
    model             text             NOT NULL,   -- of its last model call
    provider          text             NOT NULL,
    model_calls       integer          NOT NULL,
    prompt_tokens     bigint           NOT NULL,
    completion_tokens bigint           NOT NULL,
    duration_ms       double precision NOT NULL,   -- of its model calls
    tool_calls        integer          NOT NULL,
    refused_calls     integer          NOT NULL,
    message_count     integer          NOT NULL,   -- the most messages a model call was sent
    first_at          timestamptz      NOT NULL,
    last_at           timestamptz      NOT NULL,
    PRIMARY KEY (session_id, turn_id, thread, agent_id)
);
COMMENT ON TABLE projections.planning_executions IS
    'Each agent''s thread in each turn: model, model calls, tokens, time, tool calls and refused calls.';

-- The `tool_refusals` projection: every tool call or write a server refused.
CREATE TABLE projections.tool_refusals (
    event_id        uuid        PRIMARY KEY,
    global_position bigint      NOT NULL,
    agent_id        text        NOT NULL,
    tool            text        NOT NULL,   -- the tool, or the route
    arguments       jsonb       NOT NULL,
    session_id      text,
    step_id         text,
    reason          text        NOT NULL,
    refused_at      timestamptz NOT NULL
);
CREATE INDEX tool_refusals_position_idx ON projections.tool_refusals (global_position DESC);
COMMENT ON TABLE projections.tool_refusals IS
    'Tool calls and writes the server refused: which agent, which tool and arguments, in which session, why.';

CREATE VIEW reports.session_costs AS
SELECT s.session_id, s.title, s.opened_by, s.opened_at, s.last_activity_at, s.turns, s.turns_done, s.turns_failed,
       s.prompt_tokens, s.completion_tokens, s.prompt_tokens + s.completion_tokens AS total_tokens, s.model_calls,
       s.tool_calls, coalesce(e.refused_calls, 0) AS refused_calls, coalesce(e.duration_ms, 0) AS duration_ms
  FROM projections.planning_sessions AS s
  LEFT JOIN (SELECT session_id, sum(refused_calls) AS refused_calls, sum(duration_ms) AS duration_ms
               FROM projections.planning_executions GROUP BY session_id) AS e USING (session_id)
 ORDER BY s.last_activity_at DESC, s.session_id;
COMMENT ON VIEW reports.session_costs IS
    'Per planner session: turns, tokens in and out, model calls, tool calls, refused calls, model time (ms).';

CREATE VIEW reports.plan_costs AS
SELECT p.plan_id, p.session_id, p.turn_id, p.planner_id, p.status, p.steps, p.steps_completed, p.steps_failed,
       coalesce(sum(e.prompt_tokens), 0) AS prompt_tokens, coalesce(sum(e.completion_tokens), 0) AS completion_tokens,
       coalesce(sum(e.prompt_tokens + e.completion_tokens), 0) AS total_tokens,
       coalesce(sum(e.model_calls), 0) AS model_calls, coalesce(sum(e.tool_calls), 0) AS tool_calls,
       coalesce(sum(e.refused_calls), 0) AS refused_calls, coalesce(sum(e.duration_ms), 0) AS duration_ms,
       count(DISTINCT e.agent_id) AS agents, p.created_at, p.finished_at
  FROM projections.planning_plans AS p
  LEFT JOIN projections.planning_executions AS e ON e.session_id = p.session_id AND e.turn_id = p.turn_id
 GROUP BY p.plan_id
 ORDER BY p.created_at DESC, p.plan_id;
COMMENT ON VIEW reports.plan_costs IS
    'Per plan: its steps, and the tokens, model calls, tool calls and model time (ms) of every thread of its turn.';

CREATE VIEW reports.tool_call_counts AS
SELECT tool, count(*) AS calls,
       count(*) FILTER (WHERE NOT ok AND NOT refused) AS failed,
       count(*) FILTER (WHERE refused) AS refused,
       count(DISTINCT agent_id) AS agents
  FROM projections.planning_messages
 WHERE role = 'tool'
 GROUP BY tool
 ORDER BY calls DESC, tool;
COMMENT ON VIEW reports.tool_call_counts IS
    'Per tool, the calls planner sessions made: calls, failed (not refused), refused by the server, agents.';

CREATE VIEW reports.refused_tool_calls AS
SELECT refused_at, agent_id, tool, arguments, session_id, step_id, reason, event_id, global_position
  FROM projections.tool_refusals
 ORDER BY global_position DESC;
COMMENT ON VIEW reports.refused_tool_calls IS
    'Tool calls and writes the server refused, newest first: agent, tool, arguments, session and step, why.';
