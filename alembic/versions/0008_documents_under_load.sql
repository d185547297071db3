-- Documents under load.
--
-- SEVERAL SERVERS, ONE DOCUMENT
-- -----------------------------
-- Any number of document servers may serve the same document. Each stores the updates its sockets send, then
-- sends them on to its own sockets; the others follow the table as subscribers follow the log: rows are read
-- below the visibility barrier in (transaction_id, id) order (see ORDERING in 0001_event_log.sql; the same
-- transaction epoch as the log, 0005), so a server never skips an update that another server's transaction
-- commits late. `server_id` says who stored a row: a server does not read its own back. A NOTIFY on
-- `agentlog_documents` after each stored batch wakes the others; they poll as a fallback.

ALTER TABLE agentlog.document_updates
    ADD COLUMN server_id      text NOT NULL DEFAULT '',
    ADD COLUMN transaction_id xid8 NOT NULL DEFAULT agentlog.current_transaction_id();
CREATE INDEX document_updates_order_idx ON agentlog.document_updates (transaction_id, id);

-- TOKENS THAT CAN BE TAKEN BACK
-- -----------------------------
-- `TokenRevoked` events (`agentlog token revoke`), folded into one row per token: a server refuses a revoked
-- token at open and closes the sockets that use it.
CREATE TABLE projections.token_revocations (
    global_position bigint      PRIMARY KEY,
    token_id        text,
    kind            text,
    subject         text,
    issued_before   timestamptz,
    reason          text        NOT NULL,
    revoked_at      timestamptz NOT NULL
);
CREATE INDEX token_revocations_token_idx ON projections.token_revocations (token_id);
COMMENT ON TABLE projections.token_revocations IS
    'Every token revocation: one token (token_id), or every token of kind and subject issued before a moment.';
