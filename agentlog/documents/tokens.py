"""Access tokens for document sockets: the one token system of agentlog (`agentlog.tokens`, JWTs), as the document
server uses it. A token opens a document when its `doc` names it, or when its `docs` patterns match it (a person's),
or when it names neither."""

from __future__ import annotations

from agentlog.tokens import Identity, Keyring, Kind, TokenError, check_name, issue, signing_key, verify

__all__ = ["Identity", "Keyring", "Kind", "TokenError", "check_name", "issue", "signing_key", "verify"]
