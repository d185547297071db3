"""`agentlog token admin|user NAME|agent ID [--document] [--ttl]` prints only the token on its last line (issue 12,
item 2); `rotate-key` prints the new key's id."""

from __future__ import annotations

import jwt

from tests.acceptance.test_cli import agentlog
from tests.acceptance.test_cli import environment as cli_environment


def test_the_cli_prints_only_the_token_on_its_last_line(database_url: str) -> None:
    environment = cli_environment(AGENTLOG_DATABASE_URL=database_url)
    admin = agentlog("token", "admin", "--ttl", "15m", env=environment)
    assert admin.returncode == 0, admin.stderr
    token = admin.stdout.strip().splitlines()[-1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["kind"], claims["sub"]) == ("admin", "admin")
    assert claims["exp"] - claims["iat"] == 900
    agent = agentlog("token", "agent", "claude-1", "--ttl", "2h", env=environment)
    claims = jwt.decode(agent.stdout.strip().splitlines()[-1], options={"verify_signature": False})
    assert (claims["kind"], claims["sub"], claims.get("doc")) == ("agent", "claude-1", None)
    narrowed = agentlog("token", "agent", "claude-1", "--document", "trip", env=environment)
    assert jwt.decode(narrowed.stdout.split()[-1], options={"verify_signature": False})["doc"] == "trip"
    user = agentlog("token", "user", "ada", "--document", "team-*", env=environment)
    assert jwt.decode(user.stdout.split()[-1], options={"verify_signature": False})["docs"] == ["team-*"]
    bad = agentlog("token", "agent", "claude-1", "--ttl", "soon", env=environment)
    assert bad.returncode == 3 and "--ttl" in bad.stderr and not bad.stdout
    rotated = agentlog("token", "rotate-key", env=environment)
    assert rotated.returncode == 0 and len(rotated.stdout.strip()) == 16
