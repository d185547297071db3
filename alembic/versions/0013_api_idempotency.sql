-- The API's Idempotency-Key (issue 12): the first answer to a POST with a key, kept so that a retry with the same
-- key gets the same answer, and a retry with another body is refused (422). The events a keyed request appends
-- have ids derived from the key, so two retries racing append once whatever this table says.
CREATE TABLE agentlog.api_idempotency (
    principal    text        NOT NULL,   -- the token's holder: kind and name
    key          text        NOT NULL,
    request_hash text        NOT NULL,   -- method, path and body
    status_code  integer     NOT NULL,
    body         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key),
    CONSTRAINT api_idempotency_key_length CHECK (length(key) BETWEEN 1 AND 200)
);
CREATE INDEX api_idempotency_created_idx ON agentlog.api_idempotency (created_at);
COMMENT ON TABLE agentlog.api_idempotency IS
    'First answers to API requests sent with an Idempotency-Key, for 24 hours.';
