"""`POST /local/token`: a local access token for a user name, so the page can sign in without accounts.

Registered only in local mode (the secret was generated into DATA_DIR; never with Supabase or a
configured SUPABASE_JWT_SECRET), and answered only to this computer: a loopback client and a Host
header naming this service, which defeats DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from service.errors import ApiError, ErrorCode
from service.routes.auth import mint
from service.routes.models import LocalToken, LocalTokenRequest, read_body, respond
from service.settings import Settings

LOCAL_TOKEN_TTL_SECONDS = 12 * 3600


def _local_only(request: Request, settings: Settings) -> None:
    client = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        loopback = client == "localhost"
    port = settings.port
    hosts = {urlsplit(settings.public_base_url).netloc.lower(), f"127.0.0.1:{port}", f"localhost:{port}",
             f"[::1]:{port}"}
    if not loopback or request.headers.get("host", "").lower() not in hosts:
        raise ApiError(403, ErrorCode.LOCAL_ONLY, "Local sign-in answers only on the computer the service runs on; "
                                          f"open {settings.public_base_url}/ there")


async def local_token(settings: Settings, request: Request) -> Response:
    _local_only(request, settings)
    user = (await read_body(request, LocalTokenRequest)).user
    token = mint(settings.jwt_secret, user, LOCAL_TOKEN_TTL_SECONDS, settings.iss)
    response = respond({"access_token": token, "token_type": "bearer", "expires_in": LOCAL_TOKEN_TTL_SECONDS,
                        "expires_at": int(time.time()) + LOCAL_TOKEN_TTL_SECONDS, "user": {"id": user}}, LocalToken)
    response.headers["Cache-Control"] = "no-store"
    return response
