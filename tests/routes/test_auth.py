"""Access tokens as Supabase Auth issues them: every way a token can be wrong is a 401."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from service.errors import ApiError
from service.routes.auth import mint, verify
from service.settings import Settings
from tests.support import JWT_SECRET, Service, running_service


def _token(**overrides: object) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "authenticated", "iat": now, "exp": now + 600, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, JWT_SECRET, algorithm="HS256")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _alg_none() -> str:
    now = int(time.time())
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'alice', 'aud': 'authenticated', 'exp': now + 600})}."


@pytest.fixture
async def service(settings: Settings):  # type: ignore[no-untyped-def]
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (_token(exp=int(time.time()) - 3600), "token_expired"),
        (_token(aud="anon"), "invalid_token"),
        (_token(aud=None), "invalid_token"),
        (_token(sub=None), "invalid_token"),
        (jwt.encode({"sub": "alice", "aud": "authenticated", "exp": int(time.time()) + 600}, "wrong-secret-" * 4,
                    algorithm="HS256"), "invalid_token"),
        (_alg_none(), "invalid_token"),
        ("not.a.jwt", "invalid_token"),
    ],
    ids=["expired", "wrong-audience", "no-audience", "no-subject", "wrong-signature", "alg-none", "garbage"],
)
async def test_bad_tokens_are_refused(service: Service, token: str, code: str) -> None:
    response = await service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_or_malformed_header(service: Service) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        response = await service.client.post("/v1/uploads", headers=headers, json={"files": []})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_token"


async def test_a_good_token_works_and_small_clock_skew_is_tolerated(service: Service) -> None:
    token = _token(exp=int(time.time()) - 5)  # within the leeway
    response = await service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"jobs": [], "next_cursor": None}


def test_issuer_is_checked_when_a_supabase_project_is_configured() -> None:
    iss = "https://abc.supabase.co/auth/v1"
    assert verify(mint(JWT_SECRET, "u1", issuer=iss), JWT_SECRET, iss).id == "u1"
    with pytest.raises(ApiError):
        verify(mint(JWT_SECRET, "u1", issuer="https://other.supabase.co/auth/v1"), JWT_SECRET, iss)
    with pytest.raises(ApiError):
        verify(mint(JWT_SECRET, "u1"), JWT_SECRET, iss)


def test_storage_tokens_are_not_access_tokens(tmp_path: object) -> None:
    from service.storage import tokens

    signed, _ = tokens.sign(tokens.storage_key(JWT_SECRET), "dubbing", "alice/x.wav", tokens.DOWNLOAD, 60)
    with pytest.raises(ApiError):
        verify(signed, JWT_SECRET, None)
