"""Supabase Auth access tokens: verify them and take the user from `sub`.

Which algorithms are accepted is decided by configuration, never by the token: HS256 only when a
project JWT secret is configured (legacy projects, and local mode), ES256/RS256 only with a public
key from the project's JWKS, the algorithm pinned by that key. A token whose header names HS256 but
whose `kid` is an asymmetric key, or `alg: none`, fails like any bad signature.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import structlog
from starlette.requests import Request

from service.errors import ApiError, ErrorCode, ProviderError
from service.providers.http import ProviderClient
from service.routes.services import services

log = structlog.get_logger(__name__)

AUDIENCE = "authenticated"
LEEWAY_SECONDS = 30
ASYMMETRIC = ("ES256", "RS256")
JWKS_PATH = "/auth/v1/.well-known/jwks.json"


@dataclass(frozen=True)
class User:
    id: str
    email: str | None = None
    # The token's claims (a claim named by STRIPE_CUSTOMER_CLAIM says who pays: docs/integrations.md).
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def claim(self, path: str) -> str | None:
        """A string claim by name, dotted for nested objects (`app_metadata.stripe_customer_id`)."""
        value: Any = self.claims
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value if isinstance(value, str) and value else None


def unauthorized(message: str, code: ErrorCode = ErrorCode.INVALID_TOKEN) -> ApiError:
    return ApiError(401, code, message)


def _key_algorithm(jwk: dict[str, Any]) -> str | None:
    """The one algorithm a JWKS key may verify: its `alg`, or what its type implies."""
    if jwk.get("alg") in ASYMMETRIC:
        return str(jwk["alg"])
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return "ES256"
    if jwk.get("kty") == "RSA":
        return "RS256"
    return None  # HMAC ("oct") and anything else never verifies from a JWKS


@dataclass
class JwksCache:
    """The project's public keys, refetched on an unknown `kid` at most once per `min_refresh` seconds."""

    client: ProviderClient
    min_refresh: float = 30.0
    keys: dict[str, tuple[str, Any]] = field(default_factory=dict)
    fetched_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self) -> None:
        document = await self.client.json("GET", JWKS_PATH, endpoint="jwks")
        keys: dict[str, tuple[str, Any]] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            algorithm = _key_algorithm(jwk)
            if algorithm is None or not jwk.get("kid"):
                continue
            try:
                keys[jwk["kid"]] = (algorithm, jwt.PyJWK.from_json(json.dumps({**jwk, "alg": algorithm})).key)
            except jwt.PyJWTError as exc:
                log.warning("auth.jwks_key_skipped", kid=jwk.get("kid"), error=str(exc))
        self.keys = keys
        self.fetched_at = time.monotonic()

    async def key_for(self, kid: str) -> tuple[str, Any] | None:
        if kid in self.keys:
            return self.keys[kid]
        async with self._lock:
            if kid not in self.keys and time.monotonic() - self.fetched_at >= self.min_refresh:
                try:
                    await self.refresh()
                except ProviderError as exc:
                    log.warning("auth.jwks_unavailable", error=exc.message)
        return self.keys.get(kid)


@dataclass
class TokenVerifier:
    hs256_secret: str | None = field(default=None, repr=False)
    issuer: str | None = None
    jwks: JwksCache | None = None
    # Verified tokens until their `exp`: a client sends the same token with every request, and
    # verifying it is most of a request's CPU. A token stays valid until `exp` anyway (Supabase).
    cache_size: int = 10_000
    _verified: OrderedDict[str, tuple[User, float]] = field(default_factory=OrderedDict, repr=False)

    async def verify(self, token: str) -> User:
        cached = self._verified.get(token)
        if cached is not None:
            if cached[1] > time.time():
                return cached[0]
            del self._verified[token]
        user, expires = await self._verify(token)
        self._verified[token] = (user, expires)
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return user

    async def _verify(self, token: str) -> tuple[User, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized(f"The access token is not valid: {exc}") from exc
        kid = header.get("kid")
        key: Any
        if self.jwks is not None and isinstance(kid, str) and (found := await self.jwks.key_for(kid)):
            algorithm, key = found
            if header.get("alg") != algorithm:
                raise unauthorized("The access token's algorithm does not match its key")
        elif self.hs256_secret and header.get("alg") == "HS256":
            algorithm, key = "HS256", self.hs256_secret
        else:
            raise unauthorized("The access token is not signed with a key of this project")
        return _decode(token, key, algorithm, self.issuer)


def _decode(token: str, key: Any, algorithm: str, issuer: str | None) -> tuple[User, float]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise unauthorized("The access token has expired", ErrorCode.TOKEN_EXPIRED) from exc
    except jwt.InvalidAudienceError as exc:
        raise unauthorized("The access token is not for this audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise unauthorized("The access token was issued by another project") from exc
    except jwt.PyJWTError as exc:
        raise unauthorized(f"The access token is not valid: {exc}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or "/" in sub or len(sub) > 128:
        raise unauthorized("The access token has no usable subject")
    return User(id=sub, email=claims.get("email"), claims=claims), float(claims["exp"])


def verify(token: str, secret: str, issuer: str | None) -> User:
    """HS256 verification alone (local mode, legacy projects)."""
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError as exc:
        raise unauthorized(f"The access token is not valid: {exc}") from exc
    if algorithm != "HS256":
        raise unauthorized("The access token is not signed with a key of this project")
    return _decode(token, secret, "HS256", issuer)[0]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the access token as 'Authorization: Bearer <token>'", ErrorCode.MISSING_TOKEN)
    return token.strip()


async def current_user(request: Request) -> User:
    """The caller of a `/v1` route; raises 401 otherwise."""
    token = bearer_token(request)  # first: a request without one is answered 401 before anything is read
    user = await services(request).verifier.verify(token)
    request.state.user = user
    structlog.contextvars.bind_contextvars(user_id=user.id)
    return user


def mint(secret: str, user_id: str, ttl_seconds: int = 3600, issuer: str | None = None,
         email: str | None = None, name: str | None = None) -> str:
    """A token shaped like Supabase Auth's, for local use and tests."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "aud": AUDIENCE,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    if issuer:
        claims["iss"] = issuer
    if email:
        claims["email"] = email
    if name:  # where Supabase Auth keeps what a user says about themselves
        claims["user_metadata"] = {"name": name}
    return jwt.encode(claims, secret, algorithm="HS256")
