-- Named SQL of the stream_summary projection (loaded by `stream_summary.py`). The table is unqualified: the
-- runner points search_path at the live schema, a rebuild at its shadow.

-- upsert_streams --
-- A batch's change to each stream it touched (one row per stream): its version, events, last event type, and
-- first and last recorded times.
-- $1 stream ids, $2 categories, $3 current versions, $4 events in the batch, $5 last event types,
-- $6 first recorded at, $7 last recorded at
INSERT INTO stream_summary AS s
       (stream_id, category, current_version, event_count, last_event_type, first_recorded_at, last_recorded_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[])
ON CONFLICT (stream_id) DO UPDATE
   SET current_version   = excluded.current_version,
       event_count       = s.event_count + excluded.event_count,
       last_event_type   = excluded.last_event_type,
       first_recorded_at = least(s.first_recorded_at, excluded.first_recorded_at),
       last_recorded_at  = greatest(s.last_recorded_at, excluded.last_recorded_at);
