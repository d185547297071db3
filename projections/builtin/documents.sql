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
-- One event's change to its document's row: status, people present (reset when idle), activations, last activity
-- (joins, edits and activations are work; leaving and going idle are not).
-- $1 document id, $2 kind (user_joined, user_left, edited, active, idle), $3 change in people present,
-- $4 recorded at
INSERT INTO documents AS d (document_id, status, people_present, activations, last_activity_at, became_active_at,
                            became_idle_at)
SELECT $1::text, CASE WHEN $2::text = 'active' THEN 'active' ELSE 'idle' END, greatest($3::integer, 0),
       CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END, $4::timestamptz,
       CASE WHEN $2::text = 'active' THEN $4::timestamptz END, CASE WHEN $2::text = 'idle' THEN $4::timestamptz END
ON CONFLICT (document_id) DO UPDATE
   SET status           = CASE $2::text WHEN 'active' THEN 'active' WHEN 'idle' THEN 'idle' ELSE d.status END,
       people_present   = CASE $2::text WHEN 'idle' THEN 0 ELSE greatest(d.people_present + $3::integer, 0) END,
       activations      = d.activations + CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END,
       last_activity_at = CASE WHEN $2::text IN ('user_joined', 'edited', 'active') THEN $4::timestamptz
                               ELSE d.last_activity_at END,
       became_active_at = CASE WHEN $2::text = 'active' THEN $4::timestamptz ELSE d.became_active_at END,
       became_idle_at   = CASE WHEN $2::text = 'idle' THEN $4::timestamptz ELSE d.became_idle_at END;
