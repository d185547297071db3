"""One token system (issue 12, item 2): JWTs with the kind and holder, keys by `kid` in the database, rotation
and retirement, revocation kinds."""

from __future__ import annotations

import time

import jwt
import pytest

from agentlog.eventstore import EventStore
from agentlog.tokens import TokenError, issue, retire_key, rotate_key, signing_key, verify, verify_refreshing


async def test_kinds_claims_and_forgeries(store: EventStore) -> None:
    keys = await signing_key(store.pool)
    token = issue(keys, "agent", "claude-1", ttl_s=60)
    assert jwt.get_unverified_header(token)["kid"] == keys.current
    identity = verify(keys, token)
    assert (identity.kind, identity.name, identity.document_id) == ("agent", "claude-1", None)
    assert identity.expires_at == pytest.approx(time.time() + 60, abs=2)
    person = verify(keys, issue(keys, "person", "ada", ttl_s=60, documents=("team-*",)))
    assert person.revocation_kind == "user" and person.opens("team-a") and not person.opens("payroll")
    narrowed = verify(keys, issue(keys, "agent", "a1", ttl_s=60, document_id="trip"))
    assert narrowed.opens("trip") and not narrowed.opens("other")
    with pytest.raises(ValueError, match="kind"):
        issue(keys, "root", "x", ttl_s=60)  # type: ignore[arg-type]
    header, _claims, _ = token.split(".")
    other = issue(keys, "admin", "eve", ttl_s=60).split(".")[1]
    for forged, why in [
        (f"{header}.{other}.{token.split('.')[2]}", "bad signature"),  # another token's claims, this signature
        (
            jwt.encode(
                {"iss": "agentlog", "sub": "x", "kind": "admin", "iat": 1, "exp": 2**40},
                b"k" * 32,
                headers={"kid": keys.current},
            ),
            "bad signature",
        ),
        (jwt.encode({"sub": "x"}, b"k" * 32, headers={"kid": "nope"}), "key"),
        ("al1.abc.def", "format"),
        (
            jwt.encode(
                {"iss": "agentlog", "sub": "x", "kind": "admin", "iat": 1, "exp": 2},
                keys.secret,
                headers={"kid": keys.current},
            ),
            "expired",
        ),
        (
            jwt.encode(
                {"iss": "agentlog", "sub": "x", "kind": "god", "iat": 1, "exp": 2**40},
                keys.secret,
                headers={"kid": keys.current},
            ),
            "kind",
        ),
    ]:
        with pytest.raises(TokenError, match=why):
            verify(keys, forged)
    assert verify(keys, issue(keys, "person", "bob", ttl_s=0.001), now=0).name == "bob", "expired, for revoking"


async def test_rotation_keeps_old_tokens_until_their_key_is_retired(store: EventStore) -> None:
    keys = await signing_key(store.pool)
    again = await signing_key(store.pool)
    assert again.keys == keys.keys, "a second process made a key of its own"
    old = issue(keys, "person", "ada", ttl_s=60)
    new_kid = await rotate_key(store.pool)
    # Another process signs with the new key; this one reads the keys again when it meets an unknown kid.
    other = await signing_key(store.pool)
    assert other.current == new_kid
    fresh = issue(other, "person", "bob", ttl_s=60)
    keys._refreshed_at = 0.0
    assert (await verify_refreshing(keys, fresh)).name == "bob"
    assert keys.current == new_kid
    assert verify(keys, old).name == "ada"
    old_kid = jwt.get_unverified_header(old)["kid"]
    assert await retire_key(store.pool, old_kid)
    retired = await signing_key(store.pool)
    with pytest.raises(TokenError, match="retired"):
        verify(retired, old)
    with pytest.raises(ValueError, match="only signing key"):
        await retire_key(store.pool, new_kid)
