"""The document server: Y.js documents over WebSocket, stored in PostgreSQL, with people's presence in the log."""
