"""Secrets never reach an error message or a log line: one redaction for every provider's text."""

from __future__ import annotations

import re

MASK = "[redacted]"

_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs: legacy keys, signed-URL tokens
    re.compile(r"sb_(?:secret|publishable)_[A-Za-z0-9_-]+"),  # Supabase's new-style API keys
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{3,}"),  # OpenAI keys, and the fragments OpenAI echoes back
)
_QUERY_TOKEN = re.compile(r"(?i)(token=)[^&\s\"']+")
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_AUTH_HEADER = re.compile(r"(?i)\b(token|bearer)\s+[A-Za-z0-9._\-]{8,}")


def redact(text: str, *secrets: str | None) -> str:
    """`text` without the given secrets, API keys, JWTs, auth header values or URL query strings."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    text = _QUERY_TOKEN.sub(rf"\1{MASK}", text)
    text = _URL_QUERY.sub(rf"\1?{MASK}", text)
    return _AUTH_HEADER.sub(rf"\1 {MASK}", text)
