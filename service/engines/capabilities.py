"""What the configured engines can do, asked when a job is created so nothing fails half-way."""

from __future__ import annotations

from collections.abc import Callable

from service import languages
from service.engines.offline.apertium import iso1
from service.engines.protocols import Engines

LanguageCheck = Callable[[str, list[str]], str | None]
"""None when a job from the source into the targets can be dubbed, else the reason, in words for the caller."""


def supported_targets(engines: Engines, source: str) -> set[str]:
    """Targets reachable from `source`: the translator has the pair (direct or through a pivot) and a voice exists."""
    src = iso1(source)
    return {tgt for s, tgt in engines.translator.pairs() if s == src and engines.synthesizer.supports(tgt)}


def can_transcribe(engines: Engines, source: str) -> bool:
    return engines.transcriber.understands(source)


def can_dub(engines: Engines, source: str, target: str) -> bool:
    """A known (not `auto`) source into `target`: translated (directly or through a pivot) and spoken."""
    return (can_transcribe(engines, source) and engines.translator.supports(source, target)
            and engines.synthesizer.supports(target))


def effective_source(engines: Engines, source: str) -> str:
    """`auto` with a recogniser that cannot detect (English-only Whisper alone) means English."""
    return "en" if source == languages.AUTO and not engines.transcriber.detects else source


def language_check(engines: Engines) -> LanguageCheck:
    """A check for the API: None when the job's languages can be dubbed, else the reason."""

    def check(source: str, targets: list[str]) -> str | None:
        model = engines.transcriber.model
        if not can_transcribe(engines, source):
            return f"The speech recognition model {model} understands English only, not '{source}'"
        effective = effective_source(engines, source)
        if effective == languages.AUTO:
            # Detection decides the source: a target is accepted when some understood source reaches it
            # (an any-pair translator lists no pairs: then a voice is enough).
            pairs = engines.translator.pairs()
            reachable = {t for s, t in pairs if can_transcribe(engines, s)} if pairs else None
            missing = [t for t in targets if not engines.synthesizer.supports(t)
                       or (reachable is not None and t not in reachable)]
        else:
            missing = [t for t in targets if not can_dub(engines, effective, t)]
        if not missing:
            return None
        offered = ""
        if effective != languages.AUTO and engines.translator.pairs():
            offered = f" (offered: {', '.join(sorted(supported_targets(engines, effective))) or 'none'})"
        return f"Cannot dub {effective} into {', '.join(missing)} with the configured engines{offered}"

    return check


def cannot_dub_detected(engines: Engines, guess_language: str, confidence: float | None, target: str) -> str | None:
    """The failure message when the detected language cannot be dubbed into `target`, naming the language."""
    if can_dub(engines, guess_language, target):
        return None
    sure = "" if confidence is None else f", {confidence:.0%} sure"
    if guess_language == target:
        return (f"The voice recording is already in {languages.name_of(target)} ({target}{sure}): there is "
                f"nothing to dub into {target}")
    reachable = sorted(supported_targets(engines, guess_language)) if engines.translator.pairs() else []
    offered = f"; from {languages.name_of(guess_language)} it can dub into {', '.join(reachable)}" if reachable else ""
    return (f"The voice recording is in {languages.name_of(guess_language)} ({guess_language}{sure}), which the "
            f"installed engines cannot dub into {languages.name_of(target)} ({target}){offered}")
