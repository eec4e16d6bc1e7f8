"""OIDC bearer tokens: a real JWKS over local HTTP, tokens signed with generated RSA keys;
refusals (401 + audit), claim mapping, key rotation and the refetch rate limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.errors import ConfigError
from dockyard.services.auth import KeyService
from dockyard.services.oidc import OidcVerifier, claim, pick_role
from tests.conftest import ONE_NODE_GRAPH as GRAPHS
from tests.conftest import NewDatabase
from tests.oidc_support import AUDIENCE, ISSUER, IdentityProvider, serve_idp


@dataclass
class Env:
    client: TestClient
    auth: KeyService
    idp: IdentityProvider

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def audit(self, tenant: str, action: str = "auth.failed") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.portal.call(  # type: ignore[union-attr]
            lambda: self.auth.audit_log.search(tenant, action=action))
        return rows


def _settings(tmp_path: Path, database_url: str, idp: IdentityProvider, **kw: Any) -> Settings:
    return Settings.from_env({
        "data_dir": str(tmp_path / "data"), "database_url": database_url, "auth": "keys,oidc",
        "oidc_jwks_url": idp.url, "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE,
        "oidc_tenant_claim": "org", "oidc_roles_claim": "realm_access.roles", **kw,
    }, environ={})


@pytest.fixture
def env(tmp_path: Path, new_database: NewDatabase) -> Iterator[Env]:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    with serve_idp(IdentityProvider()) as idp:
        app = create_app(load_project(tmp_path), _settings(tmp_path, new_database(), idp))
        with TestClient(app) as client:
            auth: KeyService = app.state.dockyard.auth
            client.portal.call(auth.create_tenant, "acme")  # type: ignore[union-attr]
            yield Env(client, auth, idp)


def _dev(idp: IdentityProvider, **kw: Any) -> str:
    return idp.token(org="acme", realm_access={"roles": ["developer", "offline_access"]}, **kw)


def test_token_maps_tenant_and_role(env: Env) -> None:
    c = env.client
    token = _dev(env.idp)
    created = c.post("/threads", json={}, headers=env.bearer(token))
    assert created.status_code == 200, created.text
    assert [t["thread_id"] for t in c.post("/threads/search", json={},
                                          headers=env.bearer(token)).json()] == [
        created.json()["thread_id"]]
    # same subject, another tenant: sees nothing of acme's
    other = env.idp.token(org="default", realm_access={"roles": ["viewer"]})
    assert c.post("/threads/search", json={}, headers=env.bearer(other)).json() == []
    # a viewer may not create; a token naming no Dockyard role may do nothing
    assert c.post("/threads", json={}, headers=env.bearer(other)).status_code == 403
    nobody = env.idp.token(org="acme", realm_access={"roles": ["offline_access"]})
    assert c.get("/info", headers=env.bearer(nobody)).status_code == 403
    # the audit log names the token's subject, never the token
    admin = env.idp.token(org="acme", realm_access={"roles": ["admin"]}, sub="root")
    c.post("/threads/search", json={}, headers=env.bearer(admin))
    run = c.post(f"/threads/{created.json()['thread_id']}/runs/wait",
                 json={"assistant_id": "g", "input": {}}, headers=env.bearer(token))
    assert run.status_code == 200, run.text
    rows = c.get("/admin/audit", params={"action": "run.create"},
                 headers=env.bearer(admin)).json()
    assert rows and rows[0]["actor"] == "oidc:alice"
    # API keys keep working next to tokens
    key = c.portal.call(lambda: env.auth.create_key("acme", "viewer"))["key"]  # type: ignore[union-attr]
    assert c.get("/info", headers={"X-Api-Key": key}).status_code == 200
    assert c.get("/info", headers=env.bearer(key)).status_code == 200


def test_bad_tokens_get_401_and_are_audited(env: Env) -> None:
    idp, c = env.idp, env.client
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**40},
                          "s" * 32, algorithm="HS256", headers={"kid": idp.current})
    cases = {
        "expired": _dev(idp, ttl=-120),
        "wrong_issuer": _dev(idp, iss="https://evil.test/"),
        "wrong_audience": _dev(idp, aud="another-app"),
        "unknown_kid": _dev(idp, kid="nope"),
        "bad_signature": _dev(idp, key=stranger),
        "malformed": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.bad!",
        "unknown_tenant": idp.token(org="ghost", realm_access={"roles": ["admin"]}),
        "no_tenant": idp.token(realm_access={"roles": ["admin"]}),
    }
    for reason, token in cases.items():
        resp = c.post("/threads/search", json={}, headers=env.bearer(token))
        assert resp.status_code == 401, (reason, resp.text)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), reason
        assert token not in resp.text and token.split(".")[1] not in resp.text, reason
    assert c.get("/info", headers=env.bearer(unsigned)).status_code == 401
    assert "HS256" not in c.get("/info", headers=env.bearer(unsigned)).json()["detail"].split(":")[0]
    audited = env.audit("")
    assert set(cases) <= {r["detail"]["reason"] for r in audited}
    for row in audited:
        assert not any(t in json.dumps(row) for t in cases.values())


def test_key_rotation_and_refetch_rate_limit(env: Env) -> None:
    idp, c = env.idp, env.client
    old = _dev(idp)
    assert c.get("/info", headers=env.bearer(old)).status_code == 200
    fetches = idp.fetches
    idp.rotate()  # the old key is gone from the JWKS, a new one signs
    new = _dev(idp, sub="bob")
    assert c.get("/info", headers=env.bearer(new)).status_code == 200  # unknown kid → refetch
    assert idp.fetches == fetches + 1
    # a token of the retired key that was never verified here is refused
    assert c.get("/info", headers=env.bearer(_dev(idp, kid=next(iter(idp.keys)),
                                                  sub="carol"))).status_code == 401
    # invented kids cannot make Dockyard hammer the identity provider
    for i in range(20):
        assert c.get("/info", headers=env.bearer(_dev(idp, kid=f"x{i}"))).status_code == 401
    assert idp.fetches <= fetches + 2


async def test_verifier_ttl_and_claim_helpers(tmp_path: Path) -> None:
    assert claim({"a": {"b": ["x"]}}, "a.b") == ["x"]
    assert claim({"a.b": 1}, "a.b") == 1
    assert claim({"a": 1}, "a.b") is None
    assert pick_role(["viewer", "admin"], None) == "admin"
    assert pick_role("dockyard:operator openid", None) == "operator"
    assert pick_role(None, "viewer") == "viewer" and pick_role(None, None) == "none"
    with serve_idp(IdentityProvider()) as idp:
        from dockyard.services.oidc import OidcConfig

        v = OidcVerifier(OidcConfig(idp.url, ISSUER, AUDIENCE, default_tenant="default"))
        p = await v.authenticate(idp.token())
        assert (p.tenant, p.role, p.key_id) == ("default", "none", "oidc:alice")
        v.JWKS_TTL_SECONDS = v.REFETCH_EVERY_SECONDS = 0.0  # stale keys: the next miss refetches
        v._verified.clear()
        await v.authenticate(idp.token())
        assert v.fetches == 2


def test_oidc_needs_its_settings(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    settings = Settings.from_env({"data_dir": str(tmp_path / "d"), "auth": "oidc"}, environ={})
    with pytest.raises(ConfigError, match="DOCKYARD_OIDC_JWKS_URL"):
        create_app(load_project(tmp_path), settings)
    with pytest.raises(ConfigError, match="DOCKYARD_AUTH"):
        Settings.from_env({"auth": "keys,ldap"}, environ={})
    assert Settings.from_env({"auth": "oidc, keys"}, environ={}).auth == "keys,oidc"
