-- Named SQL of a decider's saved state (loaded by `decider_state.py`): a head row in agentlog.decider_states, one
-- row per entry of its keyed collections in agentlog.decider_rows, keyed `kind/id`.

-- load_head --
-- The saved head of one decider's state.
-- $1 decider
SELECT sequence, state_version, state, row_count FROM agentlog.decider_states WHERE name = $1;

-- load_rows --
-- Every saved row of one decider's state.
-- $1 decider
SELECT key, state FROM agentlog.decider_rows WHERE name = $1 ORDER BY key;

-- save --
-- Save a state in one statement: the head moves by compare-and-set on `sequence`, the changed rows are written and
-- the removed ones deleted; nothing is written when the sequence moved. The saved sequence, or no row.
-- $1 decider, $2 sequence loaded, $3 state version, $4 head, $5 row count, $6 keys to write, $7 their rows,
-- $8 keys to delete
WITH updated AS (
    UPDATE agentlog.decider_states
       SET sequence = sequence + 1, state_version = $3, state = $4::jsonb, row_count = $5, updated_at = now()
     WHERE name = $1 AND sequence = $2
    RETURNING sequence
), inserted AS (
    -- The first save only where none was loaded: a state saved meanwhile by another instance is not overwritten.
    INSERT INTO agentlog.decider_states (name, sequence, state_version, state, row_count, updated_at)
    SELECT $1, 1, $3, $4::jsonb, $5, now()
     WHERE $2::bigint = 0 AND NOT EXISTS (SELECT 1 FROM updated)
    ON CONFLICT (name) DO NOTHING
    RETURNING sequence
), saved AS (
    SELECT sequence FROM updated UNION ALL SELECT sequence FROM inserted
), written AS (
    INSERT INTO agentlog.decider_rows AS r (name, key, state)
    SELECT $1, w.key, w.state FROM unnest($6::text[], $7::jsonb[]) AS w(key, state)
     WHERE EXISTS (SELECT 1 FROM saved)
    ON CONFLICT (name, key) DO UPDATE SET state = excluded.state
)
-- Deletes go through a function that plans them afresh (see 0009_decider_rows.sql): this statement is prepared,
-- and a DELETE here would keep the plan made while the table was small, a sequential scan.
SELECT s.sequence,
       CASE WHEN cardinality($8::text[]) > 0 THEN agentlog.delete_decider_rows($1, $8::text[]) END AS deleted
  FROM saved AS s;

-- write_rows --
-- More rows of a state written whole (after a refold), a chunk at a time, after `save` wrote the first chunk.
-- $1 decider, $2 keys, $3 their rows
INSERT INTO agentlog.decider_rows (name, key, state)
SELECT $1, w.key, w.state FROM unnest($2::text[], $3::jsonb[]) AS w(key, state);

-- delete_all_rows --
-- Every row of one decider's state, before it is written whole (after a refold).
-- $1 decider
DELETE FROM agentlog.decider_rows WHERE name = $1;
