-- A request with an Idempotency-Key is recorded as under way before it runs (hostile review 5): a second request
-- with the same key while the first runs is answered 409 (retry shortly) instead of appending the first's event
-- ids again. A row without a status code is a request under way since `created_at`; one older than its lease
-- (the process running it died) may be taken over by a retry.
ALTER TABLE agentlog.api_idempotency ALTER COLUMN status_code DROP NOT NULL;
ALTER TABLE agentlog.api_idempotency ALTER COLUMN body DROP NOT NULL;
ALTER TABLE agentlog.api_idempotency ADD CONSTRAINT api_idempotency_answer_whole
    CHECK ((status_code IS NULL) = (body IS NULL));
COMMENT ON COLUMN agentlog.api_idempotency.status_code IS
    'The answer''s status; NULL while the first request with the key is still under way.';
