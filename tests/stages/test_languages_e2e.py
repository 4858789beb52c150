"""Any source language offline: the language list is exactly what `POST /v1/jobs` accepts (pivots included),
and `auto` on speech in a language the engines cannot dub from fails the task clearly, naming the language."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from service.engines.types import LanguageGuess, Transcript
from service.settings import Settings
from service.stages import stt
from tests.support import running_service, whisper_base_dir
from tests.support.service import wav_bytes

from .test_pipeline_e2e import run_job, upload_file

GERMAN = ("Guten Tag zusammen. Heute sprechen wir über die Geschichte der Stadt und ihrer Bewohner, die vor vielen "
          "Jahrhunderten kamen.")


def multilingual(settings: Settings) -> Settings:
    return settings.with_overrides(whisper_multilingual_dir=whisper_base_dir())


async def test_the_language_list_is_exactly_what_the_api_accepts(settings: Settings) -> None:
    async with running_service(multilingual(settings), pipeline=True, run_supervisor=False) as svc:
        listed = (await svc.client.get("/v1/languages", headers=svc.auth("lea"))).json()
        routes = {(s["code"], r["target"]): r for s in listed["sources"] for r in s["routes"]}
        assert {s["code"]: s["targets"] for s in listed["sources"]} == {
            s["code"]: [r["target"] for r in s["routes"]] for s in listed["sources"]}
        assert routes[("es", "en")]["pivot"] is None
        assert routes[("fr", "en")]["pivot"] == "es" and "es" in routes[("fr", "en")]["quality"]
        assert routes[("ca", "pt")]["pivot"] == "es"
        assert listed["detect"]["available"] and "en" in listed["detect"]["targets"]

        voice = await svc.upload("lea", wav_bytes())
        sources = sorted({s["code"] for s in listed["sources"]} | {"de", "ru", "ja"})
        targets = sorted({t for s in listed["sources"] for t in s["targets"]} | {"de", "ja"})
        offered = {pair: True for pair in routes} | {("auto", t): True for t in listed["detect"]["targets"]}
        for source in [*sources, "auto"]:
            for target in targets:
                if source == target:
                    continue
                response = await svc.client.post("/v1/jobs", headers=svc.auth("lea"), json={
                    "voice_object": voice, "source_language": source, "target_languages": [target]})
                if (source, target) in offered:
                    assert response.status_code == 201, (source, target, response.text)
                else:
                    assert response.status_code == 422, (source, target, response.text)
                    assert response.json()["error"]["code"] == "unsupported_language"

        unnamed = await svc.client.post("/v1/jobs", headers=svc.auth("lea"), json={
            "voice_object": voice, "target_languages": ["es"]})
        assert unnamed.status_code == 201 and unnamed.json()["source_language"] == "auto"


async def test_auto_on_a_language_that_cannot_be_dubbed_fails_naming_it(settings: Settings, tmp_path: Path) -> None:
    german = tmp_path / "german.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-w", str(german), GERMAN], check=True)
    async with running_service(multilingual(settings), pipeline=True) as svc:
        voice = await upload_file(svc, "max", german, "voice")
        job, history = await run_job(svc, "max", {"voice_object": voice, "source_language": "auto",
                                                  "target_languages": ["es", "en"]})
        assert job["status"] == "failed"
        assert job["detected_language"]["code"] == "de" and job["detected_language"]["confidence"] > 0.5
        for task in job["tasks"]:
            assert task["stage"] == "failed"
            assert task["error"]["code"] == "unsupported_language"
            assert "German (de" in task["error"]["message"]
        assert history[-1].event == "done"


def test_a_named_language_that_detection_contradicts_is_noted() -> None:
    heard = Transcript(language="es", duration=10.0, segments=(), engine="faster-whisper", model="base")
    noted = stt._detection("es", LanguageGuess("it", 0.97), heard)
    assert noted is not None and noted["detected"] == "it" and "sounds like it" in noted["note"]
    unsure = stt._detection("es", LanguageGuess("it", 0.55), heard)
    assert unsure is not None and "note" not in unsure
    agreed = stt._detection("es", LanguageGuess("es", 0.99), heard)
    assert agreed is not None and "note" not in agreed
    asked: Any = stt._detection("auto", LanguageGuess("es", 0.91), heard)
    assert asked == {"requested": "auto", "detected": "es", "confidence": 0.91}
