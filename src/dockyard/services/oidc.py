"""OIDC / JWT bearer tokens: verification against the issuer's JWKS, claims → a ``Principal``.

Framework-free. ``OidcVerifier.authenticate(token)`` checks the signature (only asymmetric
algorithms: a JWKS holds public keys, and accepting ``HS*`` would let anyone who knows a
public key forge tokens), ``exp``/``nbf``/``iat``, the issuer and the audience, then maps the
tenant and role claims. Failures raise ``AuthFailure`` with a reason and a message that never
repeats the token or its claims.

The JWKS is fetched with httpx and cached: keys are kept ``JWKS_TTL_SECONDS`` and an unknown
``kid`` refetches at once (a rotated-in key works on its first use), from a small budget
(``REFETCH_BURST`` refetches, refilled one per ``REFETCH_EVERY_SECONDS``) — so a flood of
tokens with invented kids cannot make us hammer the identity provider. One fetch at a time:
concurrent misses wait for the same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from dockyard.errors import ConfigError
from dockyard.services.auth import ROLE_NAMES, AuthFailure, Principal

log = logging.getLogger("dockyard.auth")

# Asymmetric algorithms only (see the module docstring).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA")
NO_ROLE = "none"  # a principal whose token names no Dockyard role: authenticated, may do nothing


@dataclass(frozen=True)
class OidcConfig:
    jwks_url: str
    issuer: str
    audience: str
    tenant_claim: str | None = None   # dotted path, e.g. "org" or "ext.tenant"
    roles_claim: str = "roles"        # dotted path, e.g. "realm_access.roles" (Keycloak)
    default_tenant: str | None = None
    default_role: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> OidcConfig:
        missing = [f"DOCKYARD_OIDC_{n.upper()}" for n in ("jwks_url", "issuer", "audience")
                   if not getattr(settings, f"oidc_{n}")]
        if missing:
            raise ConfigError(f"DOCKYARD_AUTH includes oidc, which needs {', '.join(missing)}",
                              key=missing[0])
        if settings.oidc_default_role and settings.oidc_default_role not in ROLE_NAMES:
            raise ConfigError(f"DOCKYARD_OIDC_DEFAULT_ROLE must be one of {list(ROLE_NAMES)}",
                              key="DOCKYARD_OIDC_DEFAULT_ROLE")
        return cls(
            jwks_url=settings.oidc_jwks_url, issuer=settings.oidc_issuer,
            audience=settings.oidc_audience, tenant_claim=settings.oidc_tenant_claim,
            roles_claim=settings.oidc_roles_claim or "roles",
            default_tenant=settings.oidc_default_tenant,
            default_role=settings.oidc_default_role,
        )


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``); a literal key with dots wins."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def pick_role(value: Any, default: str | None) -> str:
    """The most privileged Dockyard role named by the claim (a list or a space/comma string)."""
    if isinstance(value, str):
        names = set(value.replace(",", " ").split())
    elif isinstance(value, list | tuple):
        names = {v for v in value if isinstance(v, str)}
    else:
        names = set()
    names = {n.removeprefix("dockyard:") for n in names}
    for role in reversed(ROLE_NAMES):  # ROLES is ordered least → most privileged
        if role in names:
            return role
    return default or NO_ROLE


class OidcVerifier:
    JWKS_TTL_SECONDS = 300.0
    REFETCH_BURST = 2.0
    REFETCH_EVERY_SECONDS = 10.0
    CACHE_SECONDS = 30.0  # a verified token (by hash) is trusted this long, never past exp
    CACHE_MAX = 10_000

    def __init__(self, config: OidcConfig, *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.config = config
        self._transport = transport
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -1e18  # monotonic time of the last fetch attempt
        self._loaded_at = -1e18   # monotonic time of the last successful fetch
        self._lock = asyncio.Lock()
        self._budget = self.REFETCH_BURST  # unknown-kid refetches left (token bucket)
        self._budget_at = time.monotonic()
        self._verified: dict[str, tuple[Principal, float, float]] = {}
        self.fetches = 0

    # ---- the key set --------------------------------------------------------------------
    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=5.0) as http:
                resp = await http.get(self.config.jwks_url)
                resp.raise_for_status()
                data = resp.json()
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in data.get("keys", []):
                if jwk.get("use", "sig") != "sig":
                    continue
                try:
                    key = jwt.PyJWK.from_dict(jwk)
                except jwt.PyJWKError:
                    continue  # an algorithm we cannot use; the others still work
                keys[str(jwk.get("kid", ""))] = key
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            # The old keys stay usable: an IdP outage does not log everyone out.
            log.warning("oidc_jwks_fetch_failed url=%s error=%s", self.config.jwks_url,
                        type(exc).__name__)
            return
        self._keys = keys
        self._loaded_at = time.monotonic()
        log.info("oidc_jwks_loaded keys=%d", len(keys))

    def _may_refetch(self, now: float) -> bool:
        self._budget = min(self.REFETCH_BURST, self._budget
                           + (now - self._budget_at) / self.REFETCH_EVERY_SECONDS)
        self._budget_at = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    async def key_for(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        # A stale key set is refreshed; while the IdP fails, retried every REFETCH_EVERY_SECONDS.
        stale = (now - self._loaded_at > self.JWKS_TTL_SECONDS
                 and now - self._fetched_at >= self.REFETCH_EVERY_SECONDS)
        if stale or (kid not in self._keys and self._may_refetch(now)):
            async with self._lock:
                seen = self._fetched_at
                if seen < now:  # nobody fetched while we waited for the lock
                    await self._fetch()
        return self._keys.get(kid)

    # ---- tokens ---------------------------------------------------------------------------
    async def authenticate(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._verified.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now and hit[2] > time.time():
            return hit[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("malformed", "Malformed bearer token (not a JWT)") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthFailure("malformed", "Bearer token algorithm is not accepted "
                              f"(accepted: {', '.join(ALGORITHMS)})")
        kid = str(header.get("kid", ""))
        key = await self.key_for(kid)
        if key is None:
            raise AuthFailure("unknown_kid", "Bearer token is signed by a key that the "
                              "identity provider's JWKS does not list")
        cfg = self.config
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=cfg.audience, issuer=cfg.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]}, leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("expired", "Bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("wrong_audience", "Bearer token is not for this audience "
                              "(DOCKYARD_OIDC_AUDIENCE)") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure("wrong_issuer", "Bearer token is from another issuer "
                              "(DOCKYARD_OIDC_ISSUER)") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("bad_signature", "Bearer token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure("malformed", f"Bearer token lacks the '{exc.claim}' claim") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("not_yet_valid", "Bearer token is not valid yet (nbf/iat)") from None
        except jwt.PyJWTError:
            raise AuthFailure("malformed", "Malformed bearer token") from None
        principal = self.principal(claims)
        if len(self._verified) > self.CACHE_MAX:
            self._verified.clear()
        self._verified[digest] = (principal, now + self.CACHE_SECONDS, float(claims["exp"]))
        return principal

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        cfg = self.config
        tenant = claim(claims, cfg.tenant_claim) if cfg.tenant_claim else None
        if tenant is None:
            tenant = cfg.default_tenant
        if not isinstance(tenant, str) or not tenant:
            raise AuthFailure("no_tenant", f"Bearer token has no '{cfg.tenant_claim}' claim "
                              "and no DOCKYARD_OIDC_DEFAULT_TENANT is set")
        role = pick_role(claim(claims, cfg.roles_claim), cfg.default_role)
        return Principal(tenant, role, key_id=f"oidc:{claims['sub']}")
