-- Named SQL of the document_activity projection (loaded by `documents.py`). Tables are unqualified: the runner
-- points search_path at the live schema, a rebuild at its shadow.

-- insert_history --
-- A batch's history rows: people joining and leaving, the document becoming active and idle.
-- $1 global positions, $2 document ids, $3 kinds (user_joined, user_left, active, idle), $4 user ids,
-- $5 people present, $6 recorded at
INSERT INTO document_activity (global_position, document_id, event_type, user_id, user_count, recorded_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::timestamptz[])
ON CONFLICT (global_position) DO NOTHING;

-- upsert_document --
-- One event's change to its document's row: status, people present (as the presence rule counts them, after the
-- event), activations, last activity (joins, edits and activations are work; leaving, going idle and people taken
-- away by a lost server are not).
-- $1 document id, $2 kind (user_joined, user_left, edited, active, idle, people), $3 people present,
-- $4 recorded at
INSERT INTO documents AS d (document_id, status, people_present, activations, last_activity_at, became_active_at,
                            became_idle_at)
SELECT $1::text, CASE WHEN $2::text = 'active' THEN 'active' ELSE 'idle' END, $3::integer,
       CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END, $4::timestamptz,
       CASE WHEN $2::text = 'active' THEN $4::timestamptz END, CASE WHEN $2::text = 'idle' THEN $4::timestamptz END
ON CONFLICT (document_id) DO UPDATE
   SET status           = CASE $2::text WHEN 'active' THEN 'active' WHEN 'idle' THEN 'idle' ELSE d.status END,
       people_present   = $3::integer,
       activations      = d.activations + CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END,
       last_activity_at = CASE WHEN $2::text IN ('user_joined', 'edited', 'active') THEN $4::timestamptz
                               ELSE d.last_activity_at END,
       became_active_at = CASE WHEN $2::text = 'active' THEN $4::timestamptz ELSE d.became_active_at END,
       became_idle_at   = CASE WHEN $2::text = 'idle' THEN $4::timestamptz ELSE d.became_idle_at END;

-- select_connections --
-- Every connection of the given documents, and of every document the given servers hold a connection of.
-- $1 document ids, $2 server ids
SELECT document_id, connection_id, server_id
  FROM document_connections
 WHERE document_id = ANY ($1::text[])
    OR document_id IN (SELECT document_id FROM document_connections WHERE server_id = ANY ($2::text[]));

-- select_servers --
-- The current incarnation of the given servers (those the log saw start and not stop).
-- $1 server ids
SELECT server_id, incarnation FROM document_servers WHERE server_id = ANY ($1::text[]);

-- delete_connections --
-- The given documents' connections, before they are written again as they are now.
-- $1 document ids
DELETE FROM document_connections WHERE document_id = ANY ($1::text[]);

-- insert_connections --
-- $1 document id, $2 connection id, $3 server id of each connection
INSERT INTO document_connections (document_id, connection_id, server_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[]);

-- delete_servers --
-- The given servers' incarnations, before the running ones are written again.
-- $1 server ids
DELETE FROM document_servers WHERE server_id = ANY ($1::text[]);

-- insert_servers --
-- $1 server ids still running, $2 their incarnations
INSERT INTO document_servers (server_id, incarnation) SELECT * FROM unnest($1::text[], $2::text[]);
