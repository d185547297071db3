-- Named SQL of the content store (loaded by `contents.py`): large texts of planner sessions, kept once by hash.

-- put_contents --
-- Keep texts not kept yet (the same text under the same hash is kept once, whoever writes it first).
-- $1 content hashes, $2 texts
INSERT INTO agentlog.contents (content_hash, body, chars)
SELECT content_hash, body, length(body) FROM unnest($1::text[], $2::text[]) AS given(content_hash, body)
ON CONFLICT (content_hash) DO NOTHING;

-- get_contents --
-- $1 content hashes
SELECT content_hash, body FROM agentlog.contents WHERE content_hash = ANY($1::text[]);
