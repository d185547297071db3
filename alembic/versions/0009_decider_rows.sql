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
