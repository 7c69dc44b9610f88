"""The stack's floor: a Flask endpoint that only signs an ES256 JWT, under our gunicorn.

The foundation issue quotes this figure (about 2,400 requests/s on one core on a machine
where node-oidc-provider does about 5,400). `make bench` measures it in every round,
with the same worker, core pinning and wrk load as our server, so the report can say how
much of the gap to the reference server is the stack itself (gunicorn, Flask, PyJWT)
and how much is what a grant does on top (client authentication, policy, the token
record and audit row, the durable COMMIT).

It reads the form and the `Authorization` header as a grant would, checks nothing,
writes nothing and signs a client-credentials-shaped token with a key made at start.
"""

from __future__ import annotations

import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)
_key = ec.generate_private_key(ec.SECP256R1())


@app.get("/ready")
def ready() -> ResponseReturnValue:
    return "ok"


@app.post("/token")
def token() -> ResponseReturnValue:
    issued_at = int(time.time())
    claims = {
        "iss": "http://127.0.0.1",
        "sub": request.authorization.username if request.authorization else "anonymous",
        "aud": request.form.get("resource", ""),
        "scope": request.form.get("scope", ""),
        "iat": issued_at,
        "exp": issued_at + 300,
        "jti": secrets.token_urlsafe(18),
    }
    headers = {"typ": "at+jwt", "kid": "floor"}
    signed = jwt.encode(claims, _key, algorithm="ES256", headers=headers)
    response = jsonify(access_token=signed, token_type="Bearer", expires_in=300)
    response.headers["Cache-Control"] = "no-store"
    return response
