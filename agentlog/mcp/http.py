"""The same tools over streamable HTTP at /mcp, with bearer tokens (agentlog JWTs, verified as the API does).

Each call uses the caller's own token against the API on the same server (loopback), so the API's scopes decide.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP
from pydantic import AnyHttpUrl

from agentlog.client import AgentlogClient
from agentlog.mcp.tools import agent_of, build
from agentlog.tokens import Keyring, TokenError, verify_refreshing


class AgentlogTokenVerifier:
    def __init__(self, keys: Keyring) -> None:
        self.keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            identity = await verify_refreshing(self.keys, token)
        except TokenError:
            return None
        return AccessToken(token=token, client_id=identity.name, scopes=[identity.kind],
                           expires_at=int(identity.expires_at), subject=identity.name)  # fmt: skip


class Clients:
    """One API client per token, kept while used (at most `size`), closed when dropped or at shutdown."""

    def __init__(self, api_url: Any, size: int = 1_000) -> None:
        self.api_url = api_url
        self.size = size
        self._clients: OrderedDict[str, AgentlogClient] = OrderedDict()

    async def get(self, token: str) -> AgentlogClient:
        client = self._clients.pop(token, None) or AgentlogClient(self.api_url(), token)
        self._clients[token] = client
        while len(self._clients) > self.size:
            _, dropped = self._clients.popitem(last=False)
            await dropped.close()
        return client

    async def close(self) -> None:
        while self._clients:
            await self._clients.popitem()[1].close()


def http_server(keys: Keyring, clients: Clients) -> FastMCP:
    """The tools at /mcp; each call goes to the API with the caller's own token (`clients`)."""

    async def session() -> tuple[AgentlogClient, str]:
        access = get_access_token()
        if access is None:
            raise PermissionError("no bearer token")
        return await clients.get(access.token), agent_of(access.token)

    return build(
        session,
        token_verifier=AgentlogTokenVerifier(keys),
        auth=AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1/"), resource_server_url=None),
        stateless_http=True,
        json_response=True,
        streamable_http_path="/mcp",
    )
