-- Conflicts and activity (issue 13 items 5 and 6, seed 002): the read model of operations on entity keys, the
-- registry's inferred activity, and reports over them.
--
-- These are projections: every row is derived from the operation events (domains/operations) and the status
-- keeper's inferences (domains/activity), and rebuilt by `agentlog replay`. Whether an operation conflicts is
-- never decided from them: the API folds the key's stream and appends at the version it folded.

-- One row per operation registered on an entity key (an operation id reused on its key after it ended replaces
-- the ended row).
CREATE TABLE projections.operations (
    key            text        NOT NULL,   -- the entity key (email:1234, customer-42); stream operation-<key>
    operation_id   text        NOT NULL,
    agent_id       text        NOT NULL,
    action         text        NOT NULL,   -- what the agent does to it, in its words
    state          text        NOT NULL,   -- open, finished, expired
    in_window      boolean     NOT NULL,   -- its conflict window is open: another agent registering is refused
    data           jsonb       NOT NULL,
    registered_at  timestamptz NOT NULL,
    window_ends_at timestamptz NOT NULL,   -- registered_at + window (the window timer fires then or a little after)
    expires_at     timestamptz NOT NULL,   -- registered_at + TTL, unless finished before
    ended_at       timestamptz,
    end_reason     text,                   -- the agent's outcome, or why it expired
    updated_at     timestamptz NOT NULL,
    operation      jsonb       NOT NULL,   -- the domain's fold of it, which the projection folds on from
    PRIMARY KEY (key, operation_id)
);
CREATE INDEX operations_open_idx ON projections.operations (key) WHERE state = 'open';
CREATE INDEX operations_agent_idx ON projections.operations (agent_id, state);
COMMENT ON TABLE projections.operations IS
    'Operations agents registered on entity keys: who does what to which key, its conflict window, how it ended.';

-- The status keeper's inference (active / idle / offline, from timers), and the last thing the agent did.
ALTER TABLE projections.registry
    ADD COLUMN activity       text NOT NULL DEFAULT 'active',   -- active, idle, offline (inferred)
    ADD COLUMN last_active_at timestamptz;                      -- the last event the activity rule counts

CREATE VIEW reports.operations_under_way AS
SELECT key, operation_id, agent_id, action, in_window, registered_at, window_ends_at, expires_at
  FROM projections.operations
 WHERE state = 'open'
 ORDER BY registered_at, key;
COMMENT ON VIEW reports.operations_under_way IS
    'Operations under way on entity keys: agent, action, whether its conflict window is open, when it expires.';

-- The coordinating agents' report, with their inferred activity at the end (a view may only gain columns there).
CREATE OR REPLACE VIEW reports.coordination_agents AS
SELECT r.agent_id, r.state, r.status, r.working_on, r.last_seen_at, r.heartbeats,
       (SELECT count(*) FROM projections.locks AS l WHERE l.holder = r.agent_id)                     AS locks_held,
       (SELECT count(*) FROM projections.claims AS c WHERE c.holder = r.agent_id AND c.state = 'held') AS claims_held,
       (SELECT count(*) FROM projections.inbox AS i
         WHERE i.recipient = r.agent_id AND i.acknowledged_at IS NULL)                               AS unread_messages,
       (SELECT count(*) FROM projections.inbox AS i WHERE i.sender = r.agent_id AND i.kind = 'direct') AS messages_sent,
       (SELECT count(*) FROM projections.chat AS m WHERE m.author = r.agent_id)                       AS chat_posts,
       r.registered_at, r.reason, r.activity, r.last_active_at
  FROM projections.registry AS r
 ORDER BY r.state, r.agent_id;
COMMENT ON VIEW reports.coordination_agents IS
    'Each coordinating agent: state, status, inferred activity, last heartbeat, locks and claims held, messages.';
