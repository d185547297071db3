-- Named SQL of the token keys (loaded by `tokens.py`): signing keys live in agentlog.secrets as `jwt-key/<kid>`.

-- ensure_key --
-- Make a first key unless one exists.
-- $1 name of the new key, $2 its secret, $3 the keys' name prefix
WITH made AS (
    INSERT INTO agentlog.secrets (name, value)
    SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM agentlog.secrets WHERE starts_with(name, $3))
    ON CONFLICT (name) DO NOTHING
)
SELECT 1;

-- add_key --
-- $1 name, $2 secret
INSERT INTO agentlog.secrets (name, value) VALUES ($1, $2);

-- select_keys --
-- Every key, oldest first (the last one signs).
-- $1 the keys' name prefix
SELECT substr(name, length($1) + 1) AS kid, value FROM agentlog.secrets WHERE starts_with(name, $1)
 ORDER BY created_at, name;

-- delete_key --
-- $1 name
DELETE FROM agentlog.secrets WHERE name = $1 RETURNING 1;
