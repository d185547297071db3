-- Named queries of the document server, loaded by `agentlog.documents.updates`. Each block starts with
-- "-- name --" and a purpose line; parameters are numbered and described under it.
--
-- Updates of every document share one table; each server reads what the others stored in the log's canonical
-- order, below the visibility barrier (see SEVERAL SERVERS, ONE DOCUMENT in alembic/versions/0008_documents_
-- under_load.sql).

-- insert_updates --
-- Store a batch of updates, of any documents, in one statement (the writer's batch).
-- $1 document ids, $2 bodies, $3 this server's id
INSERT INTO agentlog.document_updates (document_id, body, server_id)
SELECT document_id, body, $3 FROM unnest($1::text[], $2::bytea[]) AS u (document_id, body);

-- notify_stored --
-- Wake the other servers' followers (after the batch committed). $1 this server's id
SELECT pg_notify('agentlog_documents', $1::text);

-- select_document --
-- Every stored update of one document, oldest first, and the visibility barrier of the same snapshot: rows at or
-- above it may have committed after this read, and the room reads them again once it is open (the follower passes
-- over rows of documents not open yet, and a load is not open until it folded).
-- $1 document id
SELECT agentlog.visibility_barrier()::text::bigint AS barrier,
       coalesce(array_agg(id ORDER BY id), '{}') AS ids,
       coalesce(array_agg(body ORDER BY id), '{}') AS bodies
  FROM agentlog.document_updates
 WHERE document_id = $1;

-- select_document_since --
-- The updates of one document other servers stored at or above a load's barrier: what the load may not have seen.
-- $1 document id, $2 the load's barrier, $3 this server's id
SELECT body FROM agentlog.document_updates
 WHERE document_id = $1 AND transaction_id >= $2::bigint::text::xid8 AND server_id <> $3
 ORDER BY transaction_id, id;

-- compact_document --
-- Replace exactly the rows a load applied by the one update they fold into; rows stored meanwhile (by another
-- server) and rows the load could not apply stay as they are.
-- $1 document id, $2 the ids folded, $3 the folded update, $4 this server's id
WITH gone AS (DELETE FROM agentlog.document_updates WHERE document_id = $1 AND id = ANY ($2::bigint[]))
INSERT INTO agentlog.document_updates (document_id, body, server_id) VALUES ($1, $3, $4);

-- follow_position --
-- Where a follower starts: below the barrier, everything is already in the documents it will load.
SELECT agentlog.visibility_barrier()::text::bigint;

-- follow_updates --
-- Updates other servers stored after a position, in canonical order below the barrier, for the documents open
-- here, and the last position scanned (rows of other documents and of this server are passed, not returned).
-- $1 transaction_id, $2 id (the position to read after), $3 this server's id, $4 open document ids, $5 limit
WITH scanned AS MATERIALIZED (
    SELECT transaction_id, id, document_id, server_id, body
      FROM agentlog.document_updates
     WHERE transaction_id < agentlog.visibility_barrier()
       AND (transaction_id, id) > ($1::xid8, $2::bigint)
     ORDER BY transaction_id, id
     LIMIT $5
), last AS (
    SELECT transaction_id, id FROM scanned ORDER BY transaction_id DESC, id DESC LIMIT 1
)
SELECT s.document_id, s.body, l.transaction_id::text::bigint AS last_transaction_id, l.id AS last_id,
       (SELECT count(*) FROM scanned) AS scanned
  FROM last AS l
  LEFT JOIN scanned AS s ON s.server_id <> $3 AND s.document_id = ANY ($4::text[])
 ORDER BY s.transaction_id, s.id;

-- follow_held_back --
-- Whether stored updates after a position wait behind the barrier (a transaction below them still runs).
-- $1 transaction_id, $2 id
SELECT EXISTS (
    SELECT 1 FROM agentlog.document_updates
     WHERE transaction_id >= agentlog.visibility_barrier()
       AND (transaction_id, id) > ($1::xid8, $2::bigint));
