"""Proof Key for Code Exchange (RFC 7636), S256 only.

``plain`` is refused and a ``code_challenge`` without ``code_challenge_method=S256``
is refused too (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1), rather than defaulting to
``plain`` as RFC 7636 §4.3 allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from .errors import InvalidRequest

METHODS_SUPPORTED = ["S256"]
# §4.2: BASE64URL(SHA256(verifier)) is 43 characters without padding.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """§4.3: the validated challenge; InvalidRequest (redirectable) otherwise."""
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636)")
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256; plain is not supported")
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters")
    return challenge


def s256(verifier: str) -> str:
    """§4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def verify(verifier: str | None, challenge: str) -> bool:
    """§4.6: the verifier is well formed and hashes to the stored challenge."""
    if not verifier or not _VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
