"""Progress a user can watch: a whole job over a person's reading (LibriVox, `pocketsphinx-testdata`), its
event history checked as the page reads it: every language's bar moves inside its stages (while transcribing,
mixing) and never goes back, with a time remaining; and the manifest counts the words left untranslated."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.support import read_events, running_service, speech

pytestmark = pytest.mark.skipif(not speech.available(), reason="pocketsphinx-testdata is not installed (just setup)")


def by_language(history: list[Any]) -> dict[str, list[Any]]:
    languages: dict[str, list[Any]] = {}
    for event in history:
        if event.event in ("stage", "progress") and event.data.get("target_language"):
            languages.setdefault(event.data["target_language"], []).append(event)
    return languages


async def test_progress_moves_inside_stages_and_never_back(settings: Settings, tmp_path: Path) -> None:
    voice = tmp_path / "reading.wav"
    speech.reading(voice, times=3)  # over a minute: the recogniser decodes it in several windows, reporting each
    async with running_service(settings.with_overrides(cpu_workers=2, max_concurrent_tasks=2), pipeline=True) as svc:
        uploaded = await svc.upload("ana", voice.read_bytes(), filename=voice.name)
        created = await svc.client.post("/v1/jobs", headers=svc.auth("ana"), json={
            "voice_object": uploaded, "source_language": "en", "target_languages": ["es", "ca"]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("ana"),
                                     timeout=240) as stream:
            history = await read_events(stream)
        assert history[-1].event == "done" and history[-1].data["status"] == "complete"

        languages = by_language(history)
        assert sorted(languages) == ["ca", "es"]
        for language, events in languages.items():
            overall = [e.data["progress"] for e in events]
            assert overall == sorted(overall), (language, overall)  # the bar never goes back
            for stage, in_stage in itertools.groupby(events, key=lambda e: e.data["stage"]):
                fractions = [e.data["stage_progress"] for e in in_stage if e.event == "progress"]
                assert fractions == sorted(fractions), (language, stage, fractions)
            # Mixing: the clips are fitted up to 0.5, the voice track laid by 0.6; the mix's own passes (measure,
            # render: most of the stage's time) move the bar too.
            mixing = [e.data["stage_progress"] for e in events if e.event == "progress" and e.data["stage"] == "mixing"]
            assert any(0.6 < fraction < 1 for fraction in mixing), (language, mixing)
            remaining = [e.data["remaining_seconds"] for e in events if "remaining_seconds" in e.data]
            assert remaining and all(r >= 0 for r in remaining), language
        # One task transcribes (the other waits for its transcript, showing the same progress): its bar moves
        # while the recogniser decodes the audio, not only once it is done.
        transcribing = [e for e in history if e.event == "progress" and e.data["stage"] == "stt"
                        and 0 < e.data["stage_progress"] < 0.9]
        assert transcribing, [e.data for e in history if e.data.get("stage") == "stt"]

        listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth("ana"))).json()
        for artifact in (a for a in listed["artifacts"] if a["kind"] == "manifest"):
            manifest = json.loads((await svc.client.get(artifact["download_url"])).content)
            # How many words Apertium left as they were: a count for the user (what it counts is tested with a
            # word no dictionary has, in tests/engines/offline/test_apertium.py; which words of the book its
            # dictionaries lack changes with their versions).
            assert isinstance(manifest["untranslated_words"], int) and manifest["untranslated_words"] >= 0
