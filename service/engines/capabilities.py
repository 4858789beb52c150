"""What the configured engines can do, asked when a job is created so nothing fails half-way."""

from __future__ import annotations

from collections.abc import Callable

from service.engines.offline.apertium import iso1
from service.engines.protocols import Engines

LanguageCheck = Callable[[str, list[str]], str | None]
"""None when a job from the source into the targets can be dubbed, else the reason, in words for the caller."""


def supported_targets(engines: Engines, source: str) -> set[str]:
    """Targets reachable from `source`: the translator has the pair and a voice exists."""
    src = iso1(source)
    return {tgt for s, tgt in engines.translator.pairs() if s == src and engines.synthesizer.supports(tgt)}


def can_transcribe(engines: Engines, source: str) -> bool:
    """English-only Whisper models (`*.en`) understand English alone; other engines any language."""
    return not engines.transcriber.model.endswith(".en") or source in ("en", "auto")


def language_check(engines: Engines) -> LanguageCheck:
    """A check for the API: None when the job's languages can be dubbed, else the reason."""

    def check(source: str, targets: list[str]) -> str | None:
        model = engines.transcriber.model
        if not can_transcribe(engines, source):
            return f"The speech recognition model {model} understands English only, not '{source}'"
        effective = "en" if (source == "auto" and model.endswith(".en")) else source
        if effective == "auto":
            missing = [t for t in targets if not engines.synthesizer.supports(t)]
        else:
            missing = [t for t in targets
                       if not (engines.translator.supports(effective, t) and engines.synthesizer.supports(t))]
        if not missing:
            return None
        offered = ""
        if effective != "auto" and engines.translator.pairs():
            offered = f" (offered: {', '.join(sorted(supported_targets(engines, effective))) or 'none'})"
        return f"Cannot dub {effective} into {', '.join(missing)} with the configured engines{offered}"

    return check
