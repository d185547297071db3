-- Decider state saved by key.
--
-- A decider's state was one jsonb value rewritten with every batch: with 1,750 documents known that was 325 KB per
-- batch, and every decision cost as much as the number of documents. Now the head (settings, managers, counters)
-- stays in `agentlog.decider_states` and each entry of the state's large collections (a document, an agent) is one
-- row here, keyed `kind/id`; a batch writes the head and only the rows it changed, in the transaction that moves
-- the decider's checkpoint. `row_count` is how many rows the head was saved with: a load that finds another
-- number (a row lost or added by hand) does not trust them and refolds the log. Derived data, like the head:
-- dropping a decider's rows and head only costs a refold.

ALTER TABLE agentlog.decider_states ADD COLUMN row_count bigint NOT NULL DEFAULT 0;

CREATE TABLE agentlog.decider_rows (
    name  text  NOT NULL,
    key   text  NOT NULL,
    state jsonb NOT NULL,
    PRIMARY KEY (name, key)
);

-- Rows are deleted by key through this function, which plans its DELETE anew each time (EXECUTE): the decider's
-- save is a prepared statement, and a prepared DELETE keeps the generic plan made while the table was small — a
-- sequential scan — which then reads every row of every decider at each save once the table has grown (measured:
-- 65 ms per save at 100,000 documents, against 1 ms planned afresh).
CREATE FUNCTION agentlog.delete_decider_rows(decider text, keys text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    EXECUTE 'DELETE FROM agentlog.decider_rows WHERE name = $1 AND key = ANY ($2)' USING decider, keys;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
