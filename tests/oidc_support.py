"""A real identity provider for the OIDC tests: RSA keys made with ``cryptography``, a JWKS
served over local HTTP (keys can be rotated while it runs) and tokens minted with PyJWT."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.http_support import QuietHandler, serve_http

ISSUER = "https://idp.test/"
AUDIENCE = "dockyard-api"


class IdentityProvider:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []  # kids served in the JWKS
        self.fetches = 0
        self.url = ""
        self.rotate()

    def new_key(self) -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def rotate(self) -> str:
        """A new signing key, published alone (the old one is gone from the JWKS)."""
        kid = self.new_key()
        self.published = [kid]
        self.current = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, *, kid: str | None = None, ttl: float = 300, iss: str = ISSUER,
              aud: str = AUDIENCE, sub: str = "alice", key: rsa.RSAPrivateKey | None = None,
              **claims: Any) -> str:
        kid = kid or self.current
        now = int(time.time())
        payload = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + int(ttl),
                   **claims}
        signer = key or self.keys.get(kid) or self.keys[self.current]
        return jwt.encode(payload, signer, algorithm="RS256", headers={"kid": kid})


@contextmanager
def serve_idp(idp: IdentityProvider) -> Iterator[IdentityProvider]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            idp.fetches += 1
            body = json.dumps(idp.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_http(Handler) as base:
        idp.url = f"{base}/.well-known/jwks.json"
        yield idp


def oidc_env(idp: IdentityProvider, **extra: str) -> dict[str, str]:
    return {"DOCKYARD_OIDC_JWKS_URL": idp.url, "DOCKYARD_OIDC_ISSUER": ISSUER,
            "DOCKYARD_OIDC_AUDIENCE": AUDIENCE, **extra}
