"""`POST /local/token`: a local access token for a user name, so the page can sign in without accounts.

Registered only in local mode (the secret was generated into DATA_DIR; never with Supabase or a
configured SUPABASE_JWT_SECRET), and answered only to this computer: a loopback client and a Host
header naming this service, which defeats DNS rebinding.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import unicodedata
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from service.errors import ApiError, ErrorCode
from service.routes.auth import mint
from service.routes.models import LocalToken, LocalTokenRequest, read_body, respond
from service.settings import Settings

LOCAL_TOKEN_TTL_SECONDS = 12 * 3600

# Names that were user ids before display names were accepted keep that id (and so their dubs).
_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def user_id_for(name: str) -> str:
    """The stable, storage-safe user id of a display name: the name itself when it is already a plain id
    ("uma.k"), else its letters folded to ASCII plus a hash of the whole name ("José" → "jose-1c0f5e3a2b")."""
    if _PLAIN_ID.match(name):
        return name
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:40] or "user"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def display_name(raw: str) -> str:
    """The name as it is shown: Unicode-normalized (NFC) and trimmed, so "José" typed either way is one user."""
    return unicodedata.normalize("NFC", raw).strip()


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
    name = display_name((await read_body(request, LocalTokenRequest)).user)
    user_id = user_id_for(name)
    token = mint(settings.jwt_secret, user_id, LOCAL_TOKEN_TTL_SECONDS, settings.iss, name=name)
    response = respond({"access_token": token, "token_type": "bearer", "expires_in": LOCAL_TOKEN_TTL_SECONDS,
                        "expires_at": int(time.time()) + LOCAL_TOKEN_TTL_SECONDS,
                        "user": {"id": user_id, "name": name}}, LocalToken)
    response.headers["Cache-Control"] = "no-store"
    return response
