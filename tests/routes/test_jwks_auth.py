"""Supabase Auth tokens signed with asymmetric keys from the project's JWKS."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import ApiError
from service.providers.http import ProviderClient, RetryPolicy
from service.routes.auth import JwksCache, TokenVerifier

PROJECT = "https://proj.supabase.co"
ISSUER = f"{PROJECT}/auth/v1"
JWKS_URL = f"{PROJECT}/auth/v1/.well-known/jwks.json"


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}


def token(key: Any, kid: str | None, alg: str = "ES256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "user-1", "aud": "authenticated", "iss": ISSUER, "iat": now, "exp": now + 600,
              "role": "authenticated", **overrides}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def verifier(secret: str | None = None) -> TokenVerifier:
    client = ProviderClient("supabase-auth", PROJECT, {}, policy=RetryPolicy(attempts=1, wait_initial=0.01))
    return TokenVerifier(hs256_secret=secret, issuer=ISSUER, jwks=JwksCache(client, min_refresh=30))


@respx.mock
async def test_es256_and_rs256_tokens_verify() -> None:
    es, rs = ec_key(), rsa.generate_private_key(public_exponent=65537, key_size=2048)
    respx.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": [
        public_jwk(es, "k-es", "ES256"), public_jwk(rs, "k-rs", "RS256")]}))
    v = verifier()
    assert (await v.verify(token(es, "k-es"))).id == "user-1"
    assert (await v.verify(token(rs, "k-rs", "RS256"))).id == "user-1"
    with pytest.raises(ApiError):
        await v.verify(token(es, "k-es", iss="https://other.supabase.co/auth/v1"))
    with pytest.raises(ApiError) as expired:
        await v.verify(token(es, "k-es", exp=int(time.time()) - 600))
    assert expired.value.code == "token_expired"


@respx.mock
async def test_rotation_refetches_once_for_a_new_kid_and_rate_limits_unknown_ones() -> None:
    old, new = ec_key(), ec_key()
    route = respx.get(JWKS_URL).mock(side_effect=[
        httpx.Response(200, json={"keys": [public_jwk(old, "old", "ES256")]}),
        httpx.Response(200, json={"keys": [public_jwk(old, "old", "ES256"), public_jwk(new, "new", "ES256")]}),
    ])
    v = verifier()
    assert v.jwks is not None
    await v.verify(token(old, "old"))
    v.jwks.fetched_at -= 60  # the cache is older than the refetch interval
    assert (await v.verify(token(new, "new"))).id == "user-1"
    assert route.call_count == 2
    # An unknown kid right after a fetch does not hit the JWKS endpoint again.
    with pytest.raises(ApiError):
        await v.verify(token(ec_key(), "nobody-knows"))
    assert route.call_count == 2


@respx.mock
async def test_algorithm_confusion_is_refused() -> None:
    """An attacker signs HS256 with the project's public key as the HMAC secret."""
    es = ec_key()
    respx.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": [public_jwk(es, "k-es", "ES256")]}))
    pem = es.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"sub": "attacker", "aud": "authenticated", "iss": ISSUER, "exp": now + 600}
    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k-es"}).encode()
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    forged = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    for v in (verifier(), verifier(secret="legacy-secret-" * 3)):
        with pytest.raises(ApiError) as caught:
            await v.verify(forged)
        assert caught.value.status == 401


@respx.mock
async def test_hs256_only_when_a_secret_is_configured() -> None:
    respx.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": []}))
    secret = "legacy-project-secret-" * 2
    legacy = token(secret, None, "HS256")
    assert (await verifier(secret).verify(legacy)).id == "user-1"
    with pytest.raises(ApiError):
        await verifier(None).verify(legacy)


@respx.mock
async def test_jwks_outage_refuses_tokens_cleanly() -> None:
    respx.get(JWKS_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(ApiError) as caught:
        await verifier().verify(token(ec_key(), "k-es"))
    assert caught.value.status == 401
