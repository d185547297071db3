-- Coordination of agents (issue 12): the read models of the registry, chat, inboxes, checkpoints, memories,
-- locks and claims, and the reports over them.
--
-- These are projections: every row is derived from the coordination events (domains/coordination) and rebuilt
-- by `agentlog replay`. What a command may do is never decided from them (the API folds the entity's stream and
-- appends at the version it folded); they serve reads, the hot-start bundle and psql.

-- One row per agent ever registered: its entry as the `member-<agent>` stream folds it, and its liveness.
CREATE TABLE projections.registry (
    agent_id            text             PRIMARY KEY,
    name                text             NOT NULL,
    state               text             NOT NULL,   -- registered, deregistered, gone
    status              text             NOT NULL,   -- active, idle, busy, blocked, offline (the agent's word)
    working_on          text             NOT NULL,
    capabilities        text[]           NOT NULL,
    metadata            jsonb            NOT NULL,
    heartbeat_timeout_s double precision NOT NULL,
    reason              text             NOT NULL,   -- why it was deregistered or marked gone
    version             integer          NOT NULL,   -- the member stream's version (If-Match)
    registered_at       timestamptz      NOT NULL,
    updated_at          timestamptz      NOT NULL,
    last_seen_at        timestamptz      NOT NULL,
    heartbeats          bigint           NOT NULL
);
CREATE INDEX registry_state_idx ON projections.registry (state, agent_id);
COMMENT ON TABLE projections.registry IS
    'Every agent that registered for coordination: its status, what it works on, and whether it is still there.';

-- The chat, in the order of the log. `seq` is the projection's own order (1, 2, 3 ... as applied, which is the
-- log's canonical order), so "after seq N" never skips a message that committed late.
CREATE TABLE projections.chat (
    seq             bigint      PRIMARY KEY,
    message_id      text        NOT NULL UNIQUE,
    author          text        NOT NULL,
    author_kind     text        NOT NULL,
    body            text        NOT NULL,
    mentions        text[]      NOT NULL,
    data            jsonb       NOT NULL,
    global_position bigint      NOT NULL,
    posted_at       timestamptz NOT NULL
);
COMMENT ON TABLE projections.chat IS 'The fleet''s chat; @mentions also land in the mentioned agents'' inboxes.';

-- Inboxes: direct messages, and chat messages that mention the agent, until acknowledged (and after).
CREATE TABLE projections.inbox (
    recipient       text        NOT NULL,
    message_id      text        NOT NULL,
    seq             bigint      NOT NULL,   -- the projection's order, as in chat
    kind            text        NOT NULL,   -- direct, mention
    sender          text        NOT NULL,
    sender_kind     text        NOT NULL,
    body            text        NOT NULL,
    data            jsonb       NOT NULL,
    thread_id       text,
    task_id         text,
    global_position bigint      NOT NULL,
    sent_at         timestamptz NOT NULL,
    acknowledged_at timestamptz,
    PRIMARY KEY (recipient, message_id)
);
CREATE UNIQUE INDEX inbox_seq_idx ON projections.inbox (seq);
CREATE INDEX inbox_unread_idx ON projections.inbox (recipient, seq) WHERE acknowledged_at IS NULL;
CREATE INDEX inbox_recipient_seq_idx ON projections.inbox (recipient, seq);
COMMENT ON TABLE projections.inbox IS
    'Each agent''s messages: direct ones and chat mentions; acknowledged_at is the read receipt.';

-- Every checkpoint an agent saved; its latest is the highest version.
CREATE TABLE projections.agent_checkpoints (
    agent_id        text        NOT NULL,
    version         integer     NOT NULL,   -- the checkpoint stream's version
    summary         text        NOT NULL,
    state           jsonb       NOT NULL,
    global_position bigint      NOT NULL,
    saved_at        timestamptz NOT NULL,
    PRIMARY KEY (agent_id, version)
);
COMMENT ON TABLE projections.agent_checkpoints IS 'Agents'' checkpoints, for picking their work up after a crash.';

-- Agents' memories, searchable by tag and by text (PostgreSQL full-text search, English configuration).
CREATE TABLE projections.memories (
    memory_id       text        PRIMARY KEY,
    agent_id        text        NOT NULL,
    kind            text        NOT NULL,   -- learning, pattern, fact
    text            text        NOT NULL,
    tags            text[]      NOT NULL,
    stored_at       timestamptz NOT NULL,
    forgotten_at    timestamptz,
    forgotten_reason text,
    global_position bigint      NOT NULL,
    search          tsvector    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED
);
CREATE INDEX memories_agent_idx ON projections.memories (agent_id, global_position) WHERE forgotten_at IS NULL;
CREATE INDEX memories_search_idx ON projections.memories USING gin (search);
CREATE INDEX memories_tags_idx ON projections.memories USING gin (tags);
COMMENT ON TABLE projections.memories IS 'What agents learned; full-text search on text, containment on tags.';

-- Each lock resource ever used: its current grant (holder NULL when free) and its counters. The history is the
-- lock's stream (`lock-<digest>`).
CREATE TABLE projections.locks (
    stream_id          text             PRIMARY KEY,
    resource           text             NOT NULL UNIQUE,
    holder             text,
    fencing_token      bigint,
    last_fencing_token bigint           NOT NULL,
    ttl_s              double precision,
    reason             text,
    timer_id           text,
    acquired_at        timestamptz,
    expires_at         timestamptz,
    acquisitions       bigint           NOT NULL,
    renewals           bigint           NOT NULL,
    releases           bigint           NOT NULL,
    expirations        bigint           NOT NULL,
    last_end_reason    text,
    updated_at         timestamptz      NOT NULL
);
CREATE INDEX locks_holder_idx ON projections.locks (holder) WHERE holder IS NOT NULL;
COMMENT ON TABLE projections.locks IS
    'Lock resources: who holds each now (fencing token, expiry) and how often it was taken, released, expired.';

-- Every claim: in force (`held`) or ended (released, expired), with its holder and handoffs.
CREATE TABLE projections.claims (
    claim_id        text             PRIMARY KEY,
    holder          text             NOT NULL,
    pattern         text             NOT NULL,
    kind            text             NOT NULL,   -- path, topic
    exclusive       boolean          NOT NULL,
    ttl_s           double precision NOT NULL,
    reason          text             NOT NULL,
    timer_id        text             NOT NULL,
    context         jsonb            NOT NULL,
    handed_off_from text,
    state           text             NOT NULL,   -- held, released, expired
    made_at         timestamptz      NOT NULL,
    expires_at      timestamptz      NOT NULL,
    ended_at        timestamptz,
    end_reason      text
);
CREATE INDEX claims_held_idx ON projections.claims (holder) WHERE state = 'held';
COMMENT ON TABLE projections.claims IS 'Claims of path globs and topics, in force and ended.';

CREATE VIEW reports.coordination_agents AS
SELECT r.agent_id, r.state, r.status, r.working_on, r.last_seen_at, r.heartbeats,
       (SELECT count(*) FROM projections.locks AS l WHERE l.holder = r.agent_id)                     AS locks_held,
       (SELECT count(*) FROM projections.claims AS c WHERE c.holder = r.agent_id AND c.state = 'held') AS claims_held,
       (SELECT count(*) FROM projections.inbox AS i
         WHERE i.recipient = r.agent_id AND i.acknowledged_at IS NULL)                               AS unread_messages,
       (SELECT count(*) FROM projections.inbox AS i WHERE i.sender = r.agent_id AND i.kind = 'direct') AS messages_sent,
       (SELECT count(*) FROM projections.chat AS m WHERE m.author = r.agent_id)                       AS chat_posts,
       r.registered_at, r.reason
  FROM projections.registry AS r
 ORDER BY r.state, r.agent_id;
COMMENT ON VIEW reports.coordination_agents IS
    'Each coordinating agent: state, status, last heartbeat, locks and claims held, unread and sent messages.';

CREATE VIEW reports.message_traffic AS
SELECT day, sum(chat_posts)::bigint AS chat_posts, sum(mentions)::bigint AS mentions,
       sum(direct_messages)::bigint AS direct_messages, sum(acknowledged)::bigint AS acknowledged
  FROM (SELECT date_trunc('day', posted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS chat_posts,
               sum(cardinality(mentions)) AS mentions, 0 AS direct_messages, 0 AS acknowledged
          FROM projections.chat GROUP BY 1
        UNION ALL
        SELECT date_trunc('day', sent_at AT TIME ZONE 'UTC')::date, 0, 0, count(*) FILTER (WHERE kind = 'direct'),
               count(*) FILTER (WHERE acknowledged_at IS NOT NULL)
          FROM projections.inbox GROUP BY 1) AS per_day
 GROUP BY day
 ORDER BY day DESC;
COMMENT ON VIEW reports.message_traffic IS
    'Per day (UTC): chat posts, mentions, direct messages sent, and how many of those messages were acknowledged.';

CREATE VIEW reports.lock_contention AS
SELECT resource, holder, fencing_token, expires_at, acquisitions, renewals, releases, expirations,
       round(expirations::numeric / nullif(acquisitions, 0), 3) AS expired_share, last_end_reason, updated_at
  FROM projections.locks
 ORDER BY acquisitions DESC, resource;
COMMENT ON VIEW reports.lock_contention IS
    'Lock resources by use: acquisitions, renewals, releases, expirations (a high expired share: holders crash or '
    'forget to release), and the current holder.';
