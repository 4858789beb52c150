"""Supabase Auth access tokens: verify them and take the user from `sub`.

The algorithm is pinned by configuration (HS256 with the project's JWT secret), never chosen by
the token's header, so `alg: none` and algorithm-confusion tokens fail like any bad signature.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
import structlog
from starlette.requests import Request

from service.errors import ApiError

AUDIENCE = "authenticated"
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class User:
    id: str
    email: str | None = None


def unauthorized(message: str, code: str = "invalid_token") -> ApiError:
    return ApiError(401, code, message)


def verify(token: str, secret: str, issuer: str | None) -> User:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise unauthorized("The access token has expired", "token_expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise unauthorized("The access token is not for this audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise unauthorized("The access token was issued by another project") from exc
    except jwt.PyJWTError as exc:
        raise unauthorized(f"The access token is not valid: {exc}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or "/" in sub or len(sub) > 128:
        raise unauthorized("The access token has no usable subject")
    return User(id=sub, email=claims.get("email"))


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the access token as 'Authorization: Bearer <token>'", "missing_token")
    return token.strip()


def current_user(request: Request) -> User:
    """The caller of a `/v1` route; raises 401 otherwise."""
    settings = request.app.state.settings
    user = verify(bearer_token(request), settings.jwt_secret, settings.iss)
    request.state.user = user
    structlog.contextvars.bind_contextvars(user_id=user.id)
    return user


def mint(secret: str, user_id: str, ttl_seconds: int = 3600, issuer: str | None = None,
         email: str | None = None) -> str:
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
    return jwt.encode(claims, secret, algorithm="HS256")
