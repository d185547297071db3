-- Named SQL of the log_head projection (loaded by `log_head.py`). The table is unqualified: the runner points
-- search_path at the live schema, a rebuild at its shadow.

-- advance_head --
-- Count a batch's events and move the head to its last one (the table's one row).
-- $1 events in the batch, $2 the last one's transaction id, $3 its global position, $4 its recorded at
INSERT INTO log_head AS h (singleton, events, transaction_id, global_position, last_recorded_at)
VALUES (true, $1, $2::xid8, $3, $4)
ON CONFLICT (singleton) DO UPDATE
   SET events = h.events + excluded.events,
       transaction_id = excluded.transaction_id,
       global_position = excluded.global_position,
       last_recorded_at = excluded.last_recorded_at;
