-- Documents and agents: what deciders remember between batches, the content of collaborative documents, the
-- secret that signs access tokens, and the read side of the agent system.

-- A decider's folded state, saved in the transaction that moves its checkpoint (compare-and-set on `sequence`),
-- so a restarted decider resumes without refolding the log. Derived data: dropping a row only costs a refold.
CREATE TABLE agentlog.decider_states (
    name          text        PRIMARY KEY,
    sequence      bigint      NOT NULL,
    state_version integer     NOT NULL,
    state         jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Y.js document content: every update as the document server received it, in order. Kept out of the event log
-- (a keystroke is an update; the log records who is in a document and what agents do, not every keystroke).
-- `compact` rewrites a document's updates as one when they pile up, so rows here can be replaced, unlike events.
CREATE TABLE agentlog.document_updates (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id text        NOT NULL,
    body        bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_updates_document_idx ON agentlog.document_updates (document_id, id);

-- Secrets shared by every agentlog process on this database (the token signing key).
CREATE TABLE agentlog.secrets (
    name       text        PRIMARY KEY,
    value      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- timers: every timer deciders scheduled, and whether it fired or was cancelled. The timer service fires the
-- scheduled ones whose due time the database clock has passed.
CREATE TABLE projections.timers (
    timer_id     text        PRIMARY KEY,
    stream_id    text        NOT NULL,
    purpose      text        NOT NULL,
    subject      text        NOT NULL,
    due_at       timestamptz NOT NULL,
    state        text        NOT NULL CHECK (state IN ('scheduled', 'fired', 'cancelled')),
    scheduled_at timestamptz NOT NULL
);
CREATE INDEX timers_due_idx ON projections.timers (due_at) WHERE state = 'scheduled';

-- agent_connections: one row per agent (a new agent id for every spawn, restarts included).
CREATE TABLE projections.agent_connections (
    agent_id               text        PRIMARY KEY,
    document_id            text        NOT NULL,
    manager_id             text        NOT NULL,
    agent_pid              integer,
    status                 text        NOT NULL
        CHECK (status IN ('connecting', 'active', 'idle', 'detaching', 'disconnected', 'error')),
    attempt                integer     NOT NULL,
    llm_calls_count        bigint      NOT NULL DEFAULT 0,
    tokens_spent           bigint      NOT NULL DEFAULT 0,
    locations_marked_count bigint      NOT NULL DEFAULT 0,
    memory_mb              double precision,
    cpu_percent            double precision,
    spawn_reason           text        NOT NULL,
    end_reason             text,
    exit_code              integer,
    requested_at           timestamptz NOT NULL,
    connected_at           timestamptz,
    ended_at               timestamptz,
    last_activity_at       timestamptz NOT NULL
);
CREATE INDEX agent_connections_document_idx ON projections.agent_connections (document_id);
CREATE INDEX agent_connections_status_idx ON projections.agent_connections (status);

-- documents: each document's activity now. document_activity: its history, one row per join, leave,
-- activation and idling (what seed 000's document_activity table held).
CREATE TABLE projections.documents (
    document_id      text        PRIMARY KEY,
    status           text        NOT NULL CHECK (status IN ('active', 'idle')),
    people_present   integer     NOT NULL,
    activations      integer     NOT NULL,
    last_activity_at timestamptz NOT NULL,
    became_active_at timestamptz,
    became_idle_at   timestamptz
);

CREATE TABLE projections.document_activity (
    global_position bigint      PRIMARY KEY,
    document_id     text        NOT NULL,
    event_type      text        NOT NULL CHECK (event_type IN ('user_joined', 'user_left', 'active', 'idle')),
    user_id         text,
    user_count      integer     NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX document_activity_document_idx ON projections.document_activity (document_id, global_position);

-- agent_metrics: the figures each worker reports, as a time series.
CREATE TABLE projections.agent_metrics (
    global_position      bigint           PRIMARY KEY,
    agent_id             text             NOT NULL,
    document_id          text             NOT NULL,
    memory_mb            double precision NOT NULL,
    cpu_percent          double precision NOT NULL,
    llm_calls            bigint           NOT NULL,
    locations_marked     bigint           NOT NULL,
    websocket_latency_ms double precision,
    llm_response_time_ms double precision,
    recorded_at          timestamptz      NOT NULL
);
CREATE INDEX agent_metrics_agent_idx ON projections.agent_metrics (agent_id, recorded_at);

-- What seed 000's get_agent_system_stats() showed, from psql: `SELECT * FROM reports.agent_system_stats`.
CREATE VIEW reports.agent_system_stats AS
SELECT count(*)                                                                       AS total_agents,
       count(*) FILTER (WHERE status IN ('connecting', 'active', 'idle', 'detaching')) AS running_agents,
       count(*) FILTER (WHERE status = 'active')                                      AS active_agents,
       count(*) FILTER (WHERE status = 'connecting')                                  AS connecting_agents,
       count(*) FILTER (WHERE status = 'error')                                       AS failed_agents,
       count(DISTINCT document_id)                                                    AS unique_documents,
       round(avg(memory_mb) FILTER (WHERE status IN ('connecting', 'active', 'idle', 'detaching'))::numeric, 2)
                                                                                      AS avg_memory_mb,
       coalesce(sum(llm_calls_count), 0)                                              AS total_llm_calls,
       coalesce(sum(locations_marked_count), 0)                                       AS total_locations,
       coalesce(sum(tokens_spent), 0)                                                 AS total_tokens
  FROM projections.agent_connections;

CREATE VIEW reports.documents_now AS
SELECT d.document_id, d.status, d.people_present, d.activations, d.last_activity_at,
       a.agent_id, a.status AS agent_status, a.manager_id, a.locations_marked_count
  FROM projections.documents AS d
  LEFT JOIN LATERAL (SELECT * FROM projections.agent_connections AS c
                      WHERE c.document_id = d.document_id
                      ORDER BY c.requested_at DESC LIMIT 1) AS a ON true
 ORDER BY d.last_activity_at DESC;
