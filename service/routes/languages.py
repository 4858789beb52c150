"""`GET /v1/languages`: what the installed engines can dub, for the page's pickers.

Derived from the same check `POST /v1/jobs` applies, so the page offers exactly what the API accepts.
Each source lists its targets and, per target, whether the translation goes through a pivot language
(Apertium has no direct pair: fr->es->en) with a note on what that means for quality.
It needs a token like every `/v1` route: the list is cheap to give away, but it describes the
deployment's providers, and "every /v1 route needs a token" stays a rule without exceptions.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service import languages
from service.engines.capabilities import LanguageCheck, can_transcribe
from service.engines.offline.voice_choice import OfflineVoices
from service.engines.protocols import Engines
from service.errors import ApiError, ErrorCode
from service.routes.auth import current_user
from service.routes.models import LanguageCatalog, respond
from service.routes.services import Services, services

DIRECT_NOTE = "direct translation"


def pivot_note(pivot: str) -> str:
    return (f"through {languages.name_of(pivot)} ({pivot}): two translation steps, so rougher wording "
            f"than a direct pair")


def language_catalog(check: LanguageCheck, engines: Engines | None) -> dict[str, Any]:
    """Sources with the targets the API accepts for them, and whether `auto` (detection) is offered.

    Candidates come from the translator's pairs when it lists them (Apertium, pivots included), else
    from every ISO 639-1 code (an any-pair translator); each is kept only if `check` accepts it.
    Blocking (engines may look at the disk): run it in a thread.
    """
    codes = sorted(languages.ISO_639_1)
    translator = engines.translator if engines is not None else None
    pairs: set[tuple[str, str]] = set(translator.pairs()) if translator is not None else set()
    if pairs:
        candidates: dict[str, list[str]] = {}
        for source, target in sorted(pairs):
            candidates.setdefault(source, []).append(target)
    else:
        candidates = {source: codes for source in codes}
    sources: list[dict[str, Any]] = []
    for source, targets in candidates.items():
        accepted = [t for t in targets if t != source and check(source, [t]) is None]
        if accepted:
            routes = []
            for target in accepted:
                pivot = translator.pivot_for(source, target) if translator is not None else None
                routes.append({"target": target, "pivot": pivot,
                               "quality": pivot_note(pivot) if pivot else DIRECT_NOTE})
            sources.append({"code": source, "targets": accepted, "routes": routes})
    # `auto` is offered where the engine detects the language: a transcriber that is not English-only.
    detects = engines is not None and engines.transcriber.detects and any(
        can_transcribe(engines, code) for code in codes if code != "en")
    every_target = sorted({t for s in sources for t in s["targets"]}) if pairs else codes
    detect_targets = [t for t in every_target if check(languages.AUTO, [t]) is None] if detects else []
    return {"sources": sources, "detect": {"available": bool(detect_targets), "targets": detect_targets},
            "offline_voices": offline_voice_options(engines, sorted({t for s in sources for t in s["targets"]}))}


def offline_voice_options(engines: Engines | None, targets: list[str]) -> dict[str, list[str]] | None:
    """Which of `targets` the natural offline voice speaks, and which `auto` gives it: what the page's
    "natural (slower) / fast" choice changes. None unless the offline voices speak."""
    synthesizer = engines.synthesizer if engines is not None else None
    if not isinstance(synthesizer, OfflineVoices):
        return None
    natural = [t for t in targets if synthesizer.natural.supports(t)]
    return {"natural": natural,
            "natural_by_default": [t for t in natural if synthesizer.for_job(t) is synthesizer.natural]}


# The catalog of each process's engines, worked out on first use: they do not change while the process runs.
_catalogs: weakref.WeakKeyDictionary[Services, dict[str, Any]] = weakref.WeakKeyDictionary()


async def list_languages(request: Request) -> Response:
    await current_user(request)
    svc = services(request)
    check = svc.language_check
    if check is None:
        raise ApiError(503, ErrorCode.ENGINES_UNAVAILABLE, "The dubbing engines are not available; see the server log")
    catalog = _catalogs.get(svc)
    if catalog is None:
        catalog = _catalogs[svc] = await asyncio.to_thread(language_catalog, check, svc.engines)
    response = respond(catalog, LanguageCatalog)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
