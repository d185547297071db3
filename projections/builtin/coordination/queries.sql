-- Named SQL of the coordination projections (loaded by `queries.py`). Table names are unqualified: the runner
-- points search_path at the live schema, a rebuild at its shadow. Rows go in as one JSON array per statement
-- (jsonb_to_recordset), one statement per table per batch.

-- registry_rows --
-- The registry rows of the agents a batch touches.
-- $1 agent ids
SELECT agent_id, name, state, status, working_on, capabilities, metadata, heartbeat_timeout_s, reason, version,
       registered_at, updated_at, last_seen_at, heartbeats, activity, last_active_at
  FROM registry WHERE agent_id = ANY ($1::text[]);

-- registry_upsert --
-- Write the folded registry rows (those a batch changed).
-- $1 JSON array of rows
INSERT INTO registry AS r (agent_id, name, state, status, working_on, capabilities, metadata, heartbeat_timeout_s,
                           reason, version, registered_at, updated_at, last_seen_at, heartbeats, activity,
                           last_active_at)
SELECT agent_id, name, state, status, working_on, capabilities, metadata, heartbeat_timeout_s, reason, version,
       registered_at, updated_at, last_seen_at, heartbeats, activity, last_active_at
  FROM jsonb_to_recordset($1::jsonb) AS x (agent_id text, name text, state text, status text, working_on text,
       capabilities text[], metadata jsonb, heartbeat_timeout_s float8, reason text, version int,
       registered_at timestamptz, updated_at timestamptz, last_seen_at timestamptz, heartbeats bigint,
       activity text, last_active_at timestamptz)
ON CONFLICT (agent_id) DO UPDATE
   SET name = excluded.name, state = excluded.state, status = excluded.status, working_on = excluded.working_on,
       capabilities = excluded.capabilities, metadata = excluded.metadata,
       heartbeat_timeout_s = excluded.heartbeat_timeout_s, reason = excluded.reason, version = excluded.version,
       updated_at = excluded.updated_at, last_seen_at = excluded.last_seen_at, heartbeats = excluded.heartbeats,
       activity = excluded.activity, last_active_at = excluded.last_active_at;

-- chat_insert --
-- Chat messages in canonical order, numbered on from the last one.
-- $1 JSON array of messages (in order)
INSERT INTO chat (seq, message_id, author, author_kind, body, mentions, data, global_position, posted_at)
SELECT (SELECT coalesce(max(seq), 0) FROM chat) + x.n, message_id, author, author_kind, body, mentions, data,
       global_position, posted_at
  FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (message_id text, author text, author_kind text, body text,
       mentions text[], data jsonb, global_position bigint, posted_at timestamptz))
       WITH ORDINALITY AS x (message_id, author, author_kind, body, mentions, data, global_position, posted_at, n)
ON CONFLICT (message_id) DO NOTHING;

-- inbox_insert --
-- Messages landing in inboxes, in canonical order, numbered on from the last one.
-- $1 JSON array of messages (in order)
INSERT INTO inbox (recipient, message_id, seq, kind, sender, sender_kind, body, data, thread_id, task_id,
                   global_position, sent_at)
SELECT recipient, message_id, (SELECT coalesce(max(seq), 0) FROM inbox) + x.n, kind, sender, sender_kind, body,
       data, thread_id, task_id, global_position, sent_at
  FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (recipient text, message_id text, kind text, sender text,
       sender_kind text, body text, data jsonb, thread_id text, task_id text, global_position bigint,
       sent_at timestamptz))
       WITH ORDINALITY AS x (recipient, message_id, kind, sender, sender_kind, body, data, thread_id, task_id,
                             global_position, sent_at, n)
ON CONFLICT (recipient, message_id) DO NOTHING;

-- inbox_acknowledge --
-- Read receipts; the first one counts.
-- $1 recipients, $2 message ids, $3 times
UPDATE inbox AS i SET acknowledged_at = a.at
  FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS a (recipient, message_id, at)
 WHERE i.recipient = a.recipient AND i.message_id = a.message_id AND i.acknowledged_at IS NULL;

-- checkpoint_insert --
-- $1 JSON array of checkpoints
INSERT INTO agent_checkpoints (agent_id, version, summary, state, global_position, saved_at)
SELECT agent_id, version, summary, state, global_position, saved_at
  FROM jsonb_to_recordset($1::jsonb) AS x (agent_id text, version int, summary text, state jsonb,
       global_position bigint, saved_at timestamptz)
ON CONFLICT (agent_id, version) DO NOTHING;

-- memory_insert --
-- $1 JSON array of memories
INSERT INTO memories (memory_id, agent_id, kind, text, tags, stored_at, global_position)
SELECT memory_id, agent_id, kind, text, tags, stored_at, global_position
  FROM jsonb_to_recordset($1::jsonb) AS x (memory_id text, agent_id text, kind text, text text, tags text[],
       stored_at timestamptz, global_position bigint)
ON CONFLICT (memory_id) DO NOTHING;

-- memory_forget --
-- $1 memory ids, $2 agent ids, $3 reasons, $4 times
UPDATE memories AS m SET forgotten_at = f.at, forgotten_reason = f.reason
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS f (memory_id, agent_id, reason, at)
 WHERE m.memory_id = f.memory_id AND m.agent_id = f.agent_id AND m.forgotten_at IS NULL;

-- lock_rows --
-- The lock rows of the streams a batch touches.
-- $1 lock stream ids
SELECT stream_id, resource, holder, fencing_token, last_fencing_token, ttl_s, reason, timer_id, acquired_at,
       expires_at, acquisitions, renewals, releases, expirations, last_end_reason, updated_at
  FROM locks WHERE stream_id = ANY ($1::text[]);

-- lock_upsert --
-- $1 JSON array of rows
INSERT INTO locks AS l (stream_id, resource, holder, fencing_token, last_fencing_token, ttl_s, reason, timer_id,
                        acquired_at, expires_at, acquisitions, renewals, releases, expirations, last_end_reason,
                        updated_at)
SELECT stream_id, resource, holder, fencing_token, last_fencing_token, ttl_s, reason, timer_id, acquired_at,
       expires_at, acquisitions, renewals, releases, expirations, last_end_reason, updated_at
  FROM jsonb_to_recordset($1::jsonb) AS x (stream_id text, resource text, holder text, fencing_token bigint,
       last_fencing_token bigint, ttl_s float8, reason text, timer_id text, acquired_at timestamptz,
       expires_at timestamptz, acquisitions bigint, renewals bigint, releases bigint, expirations bigint,
       last_end_reason text, updated_at timestamptz)
ON CONFLICT (stream_id) DO UPDATE
   SET holder = excluded.holder, fencing_token = excluded.fencing_token,
       last_fencing_token = excluded.last_fencing_token, ttl_s = excluded.ttl_s, reason = excluded.reason,
       timer_id = excluded.timer_id, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at,
       acquisitions = excluded.acquisitions, renewals = excluded.renewals, releases = excluded.releases,
       expirations = excluded.expirations, last_end_reason = excluded.last_end_reason,
       updated_at = excluded.updated_at;

-- claim_rows --
-- Claims in force (the fold starts from them; ended ones change no more).
SELECT claim_id, holder, pattern, kind, exclusive, ttl_s, reason, timer_id, context, handed_off_from, made_at,
       expires_at
  FROM claims WHERE claim_id = ANY ($1::text[]) AND state = 'held';

-- claim_upsert --
-- $1 JSON array of rows
INSERT INTO claims AS c (claim_id, holder, pattern, kind, exclusive, ttl_s, reason, timer_id, context,
                         handed_off_from, state, made_at, expires_at, ended_at, end_reason)
SELECT claim_id, holder, pattern, kind, exclusive, ttl_s, reason, timer_id, context, handed_off_from, state,
       made_at, expires_at, ended_at, end_reason
  FROM jsonb_to_recordset($1::jsonb) AS x (claim_id text, holder text, pattern text, kind text, exclusive boolean,
       ttl_s float8, reason text, timer_id text, context jsonb, handed_off_from text, state text,
       made_at timestamptz, expires_at timestamptz, ended_at timestamptz, end_reason text)
ON CONFLICT (claim_id) DO UPDATE
   SET holder = excluded.holder, ttl_s = excluded.ttl_s, timer_id = excluded.timer_id, context = excluded.context,
       handed_off_from = excluded.handed_off_from, state = excluded.state, expires_at = excluded.expires_at,
       ended_at = excluded.ended_at, end_reason = excluded.end_reason;
