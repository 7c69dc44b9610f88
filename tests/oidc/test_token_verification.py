"""Checking a token this server issued, again: `TokenMinter.verify` and its memo.

A process remembers the tokens whose signature it checked (`VerifiedTokens`), so an
agent presenting the same tokens exchange after exchange costs one signature check. A
remembered token must still be refused for everything that can change after the first
check: its expiry, its key leaving the JWKS (tests/oidc/test_key_rotation.py withdraws
a key after its token introspected as active), and a `typ` the caller did not ask for.
"""

from __future__ import annotations

import time

import jwt
import pytest

from authserver.models import now
from authserver.tokens import (
    ACCESS_TOKEN_TYP,
    CLOCK_SKEW_SECONDS,
    VERIFIED_TOKEN_MAX_LENGTH,
    InvalidOwnToken,
    VerifiedToken,
    VerifiedTokens,
)


def signed(runtime, typ: str = ACCESS_TOKEN_TYP, **claims) -> str:
    """A token signed with this server's current ES256 key, as the minter signs them."""
    key = runtime.signing_keys.signing_key("ES256")
    moment = now()
    body = {
        "iss": runtime.settings.issuer,
        "sub": "user-1",
        "iat": moment,
        "exp": moment + 300,
        "jti": f"test-{time.monotonic_ns()}",
        **claims,
    }
    return jwt.encode(
        body, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": typ}
    )


def test_a_remembered_token_is_refused_once_it_expires(runtime):
    """Expiry is checked at every use, not only when the signature was: a token valid
    for about one more second verifies, then is refused the same way PyJWT refuses it."""
    minter = runtime.minter
    deadline = now() + 1
    token = signed(runtime, exp=deadline - CLOCK_SKEW_SECONDS)
    assert minter.verify(token)["sub"] == "user-1"
    assert minter.verify(token)["sub"] == "user-1"
    while now() < deadline:
        time.sleep(0.05)
    with pytest.raises(InvalidOwnToken):
        minter.verify(token)
    # Callers that judge expiry from the token's record still read it.
    assert minter.verify(token, verify_exp=False)["sub"] == "user-1"


def test_an_expired_token_first_read_without_expiry_is_still_refused_with_it(runtime):
    """A token first verified with `verify_exp=False` (introspection reads expiry from the
    record) must not come back as valid to a caller that checks expiry."""
    minter = runtime.minter
    token = signed(runtime, iat=now() - 7200, exp=now() - 3600)
    assert minter.verify(token, verify_exp=False)["sub"] == "user-1"
    with pytest.raises(InvalidOwnToken):
        minter.verify(token)


def test_a_remembered_token_is_checked_for_the_typ_asked_each_time(runtime):
    minter = runtime.minter
    token = signed(runtime, typ=ACCESS_TOKEN_TYP)
    assert minter.verify(token, typ=ACCESS_TOKEN_TYP)["sub"] == "user-1"
    with pytest.raises(InvalidOwnToken):
        minter.verify(token, typ="jwt")
    id_token = signed(runtime, typ="JWT")
    assert minter.verify(id_token, typ="jwt")["sub"] == "user-1"
    with pytest.raises(InvalidOwnToken):
        minter.verify(id_token, typ=ACCESS_TOKEN_TYP)


def test_each_caller_gets_its_own_claims(runtime):
    """Changing what one verification returned does not change what the next returns."""
    minter = runtime.minter
    token = signed(runtime, act={"sub": "agent", "act": {"sub": "planner"}})
    first = minter.verify(token)
    first["sub"] = "someone-else"
    first["act"]["act"]["sub"] = "intruder"
    again = minter.verify(token)
    assert again["sub"] == "user-1"
    assert again["act"] == {"sub": "agent", "act": {"sub": "planner"}}


@pytest.mark.parametrize(
    "forged",
    [
        "not-a-jwt",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ],
)
def test_tokens_that_fail_are_not_remembered(runtime, forged):
    minter = runtime.minter
    before = len(minter.verified)
    with pytest.raises(InvalidOwnToken):
        minter.verify(forged)
    assert len(minter.verified) <= before
    assert minter.verified.get(forged) is None


def test_a_token_with_a_wrong_signature_is_refused_after_the_genuine_one_was_seen(runtime):
    """The memo is keyed by the whole token: the same header and claims under another
    signature are a different token and get their own (failing) check."""
    minter = runtime.minter
    token = signed(runtime)
    minter.verify(token)
    head, body, signature = token.split(".")
    other = signed(runtime)
    forged = ".".join([head, body, other.split(".")[2]])
    with pytest.raises(InvalidOwnToken):
        minter.verify(forged)


def test_tokens_already_expired_or_very_long_are_checked_every_time(runtime):
    """Only tokens that are still valid and of a usual length are remembered: expired ones
    (introspection verifies without expiry) and long ones would only take room."""
    minter = runtime.minter
    expired = signed(runtime, iat=now() - 7200, exp=now() - 3600)
    long = signed(runtime, padding="p" * VERIFIED_TOKEN_MAX_LENGTH)
    for token in (expired, long):
        assert minter.verify(token, verify_exp=False)["sub"] == "user-1"
        assert minter.verified.get(token) is None
    assert minter.verify(long)["padding"] == "p" * VERIFIED_TOKEN_MAX_LENGTH
    usual = signed(runtime)
    minter.verify(usual)
    assert minter.verified.get(usual) is not None


def _entry(name: str) -> VerifiedToken:
    return VerifiedToken.of("kid", None, "at+jwt", {"sub": name, "exp": now() + 300})


def test_the_memo_keeps_only_the_most_recently_used():
    memo = VerifiedTokens(size=2)
    entries = {name: _entry(name) for name in ("a", "b", "c")}
    memo.put("a", entries["a"])
    memo.put("b", entries["b"])
    assert memo.get("a") is entries["a"]  # now the most recent
    memo.put("c", entries["c"])
    assert len(memo) == 2
    assert memo.get("b") is None
    assert memo.get("a") is entries["a"]
    assert memo.get("c") is entries["c"]
