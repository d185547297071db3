-- document_activity version 3 counts people present by the documents domain's presence rule, the one the
-- deciders fold (domains/documents/presence.py), instead of a count of joins and leaves reset at idle. The rule's
-- state: who is connected where, and which incarnation of each document server is running. `agentlog up` rebuilds
-- the projection (its version changed), filling these from the log.

CREATE TABLE projections.document_connections (
    document_id   text NOT NULL,
    connection_id text NOT NULL,
    server_id     text NOT NULL,
    PRIMARY KEY (document_id, connection_id)
);
CREATE INDEX document_connections_server ON projections.document_connections (server_id);
COMMENT ON TABLE projections.document_connections IS
    'Who is present in each document: one row per connection, from its PersonJoined to its PersonLeft or the loss of its server.';

CREATE TABLE projections.document_servers (
    server_id   text PRIMARY KEY,
    incarnation text NOT NULL
);
COMMENT ON TABLE projections.document_servers IS
    'The running incarnation of each document server (ManagerStarted, until its ManagerStopped).';
