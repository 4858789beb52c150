"""What one delivery attempt came to, whoever it went to (a webhook receiver, Stripe)."""

from __future__ import annotations

from dataclasses import dataclass

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status: int | None  # the HTTP status, None when no answer came
    latency_ms: float
    error: str | None = None
    response_excerpt: str | None = None
    retry: bool = True  # on failure: whether a later attempt may succeed (False: the message is dead)


def excerpt(text: str) -> str:
    return text[:EXCERPT_CHARS]
