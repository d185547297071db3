-- Named SQL of the token_revocations projection (loaded by `token_revocations.py`). The table is unqualified: the
-- runner points search_path at the live schema, a rebuild at its shadow.

-- insert_revocations --
-- A batch's revocations, one row each (a revocation seen again is kept once).
-- $1 global positions, $2 token ids, $3 kinds, $4 subjects, $5 issued before (or null), $6 reasons,
-- $7 revoked at
INSERT INTO token_revocations (global_position, token_id, kind, subject, issued_before, reason, revoked_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                     $7::timestamptz[])
ON CONFLICT (global_position) DO NOTHING;
