"""What the configured engines can do, asked when a job is created so nothing fails half-way."""

from __future__ import annotations

from collections.abc import Callable

from service.engines.registry import Engines, supported_targets


def language_check(engines: Engines) -> Callable[[str, list[str]], str | None]:
    """A check for the API: None when the job's languages can be dubbed, else the reason."""

    def check(source: str, targets: list[str]) -> str | None:
        model = engines.transcriber.model
        english_only = model.endswith(".en")
        if english_only and source not in ("en", "auto"):
            return f"The speech recognition model {model} understands English only, not '{source}'"
        effective = "en" if (source == "auto" and english_only) else source
        if effective == "auto":
            return None
        reachable = supported_targets(engines, effective)
        missing = [t for t in targets if t not in reachable]
        if missing:
            offered = ", ".join(sorted(reachable)) or "none"
            return f"Cannot dub {effective} into {', '.join(missing)} with the installed engines (offered: {offered})"
        return None

    return check
