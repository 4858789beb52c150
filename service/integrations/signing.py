"""Standard Webhooks signatures (https://www.standardwebhooks.com): what a receiver's library verifies.

The signature is HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the secret's bytes (the
base64 after `whsec_`), sent as `v1,<base64>`. The id stays the same on every retry of a message, so a
receiver can drop a duplicate; the timestamp is the attempt's (receivers refuse one more than 5 minutes off).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_bytes(secret: str) -> bytes:
    """The key in a `whsec_<base64>` secret. ValueError when it is not of that form."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("WEBHOOK_SECRET must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError as exc:
        raise ValueError("WEBHOOK_SECRET must be 'whsec_' followed by base64") from exc
    if len(key) < 24:
        raise ValueError("WEBHOOK_SECRET's key must be at least 24 bytes")
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a signed delivery."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, message_id, timestamp, body)}
