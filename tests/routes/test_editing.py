"""Editing a finished dub through the API on real PostgreSQL and the real offline engines: the transcript and a
translation edited under their revisions, a render that redoes only the edited line, the proofread round-trip,
another user's edits refused, and a language added without speech recognition."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from service.engines.protocols import Engines
from service.engines.selection import offline_engines
from service.sample import Sample, make_sample
from service.settings import Settings
from tests.support import Service, read_events, running_service, served
from tests.test_faults import task_row, wait_for

LINES = ((0.5, "Welcome to the dubbing test."), (4.0, "The weather is fine today."),
         (7.5, "We will go to the market."), (11.0, "The children play in the garden."),
         (14.5, "My brother reads a long book."), (18.0, "The train leaves at noon."),
         (21.5, "Thank you for listening."))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("editing"), LINES)


def counting(calls: Counter[str], spoken: list[str]) -> Any:
    """The offline engines, each call counted (`spoken`: every text given to the synthesizer)."""
    def factory(executor: Executor) -> Engines:
        engines = offline_engines(executor, None)
        transcribe, translate, synthesize = (engines.transcriber.transcribe, engines.translator.translate,
                                             engines.synthesizer.synthesize)

        async def counted_transcribe(*args: Any, **kwargs: Any) -> Any:
            calls["stt"] += 1
            return await transcribe(*args, **kwargs)

        async def counted_translate(texts: list[str], *args: Any, **kwargs: Any) -> Any:
            calls["translate"] += 1
            calls["translated_lines"] += len(texts)
            return await translate(texts, *args, **kwargs)

        async def counted_synthesize(text: str, *args: Any, **kwargs: Any) -> Any:
            calls["tts"] += 1
            spoken.append(text)
            return await synthesize(text, *args, **kwargs)

        engines.transcriber.transcribe = counted_transcribe  # type: ignore[method-assign]
        engines.translator.translate = counted_translate  # type: ignore[method-assign]
        engines.synthesizer.synthesize = counted_synthesize  # type: ignore[method-assign]
        return engines
    return factory


async def follow(svc: Service, user: str, job_id: str, after: int = 0) -> list[Any]:
    async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth(user),
                                 params={"last_event_id": str(after)}, timeout=180) as stream:
        return await read_events(stream)


async def stem(svc: Service, user: str, job_id: str, language: str, revision: int | None = None) -> np.ndarray:
    params = {"revision": str(revision)} if revision else {}
    listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=svc.auth(user), params=params)).json()
    [found] = [a for a in listed["artifacts"] if a["kind"] == "voice_stem" and a["target_language"] == language]
    body = (await svc.client.get(found["download_url"])).content
    audio, _ = soundfile.read(io.BytesIO(body), dtype="int32", always_2d=True)
    return np.asarray(audio)


async def test_edit_a_line_and_render_only_it_again(settings: Settings, sample: Sample, tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    spoken: list[str] = []
    async with running_service(settings.with_overrides(cpu_workers=2), pipeline=True,
                               engines=counting(calls, spoken)) as svc:
        ann = svc.auth("ann")
        voice = await svc.upload("ann", sample.voice.read_bytes(), filename="voice.wav")
        created = await svc.client.post("/v1/jobs", headers=ann, json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
        job_id = created.json()["id"]
        history = await follow(svc, "ann", job_id)
        assert history[-1].data["status"] == "complete"
        first_tts = calls["tts"]

        transcript = await svc.client.get(f"/v1/jobs/{job_id}/transcript", headers=ann)
        assert transcript.status_code == 200 and transcript.headers["etag"] == '"1"'
        doc = transcript.json()
        assert doc["revision"] == 1 and len(doc["segments"]) >= 3 and doc["speakers"] == ["S1"]  # one person speaks
        assert set(doc["segments"][0]) == {"id", "start", "end", "speaker", "text"}
        language = (await svc.client.get(f"/v1/jobs/{job_id}/languages/es", headers=ann)).json()
        assert language["revision"] == 1 and language["output_revision"] == 1
        assert not any(s["stale"] or s["edited"] for s in language["segments"])

        # Another user sees none of it: 404 on every editing route, and nothing is written.
        bob = svc.auth("bob")
        target = doc["segments"][1]
        for method, path, body in [
                ("GET", "/transcript", None), ("PATCH", f"/transcript/segments/{target['id']}", {"text": "x"}),
                ("POST", f"/transcript/segments/{target['id']}/split", {"at": target["start"] + 0.5}),
                ("POST", f"/transcript/segments/{target['id']}/merge", None),
                ("GET", f"/transcript/segments/{target['id']}/history", None),
                ("GET", "/languages/es", None), ("PATCH", f"/languages/es/segments/{target['id']}", {"text": "x"}),
                ("POST", "/languages/es/render", None), ("POST", "/languages", {"target_languages": ["ca"]}),
                ("GET", "/artifacts?revision=1", None)]:
            answer = await svc.client.request(method, f"/v1/jobs/{job_id}{path}", json=body,
                                              headers={**bob, "If-Match": '"1"'})
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        put = await svc.client.put(f"/v1/jobs/{job_id}/languages/es/captions", content="1\n", headers=bob)
        assert put.status_code == 404

        # A transcript edit needs the revision it was made on; a stale one writes nothing.
        edits_before = await svc.pool.fetchval("SELECT count(*) FROM segment_edits")
        missing = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}", headers=ann,
                                         json={"text": "Changed."})
        assert missing.status_code == 428
        renamed = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}",
                                         headers={**ann, "If-Match": '"1"'}, json={"speaker": "Narrator"})
        assert renamed.status_code == 200 and renamed.json()["revision"] == 2
        assert renamed.json()["speakers"] == ["Narrator", "S1"] and renamed.headers["etag"] == '"2"'
        stale = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}",
                                       headers={**ann, "If-Match": '"1"'}, json={"text": "Someone else's."})
        assert stale.status_code == 412 and stale.json()["error"]["code"] == "stale_revision"
        assert await svc.pool.fetchval("SELECT count(*) FROM segment_edits") == edits_before + 1
        again = (await svc.client.get(f"/v1/jobs/{job_id}/transcript", headers=ann)).json()
        assert again["revision"] == 2 and again["segments"][1]["text"] == target["text"]
        bad_time = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}",
                                          headers={**ann, "If-Match": '"2"'},
                                          json={"start": doc["segments"][0]["start"]})
        assert bad_time.status_code == 422 and bad_time.json()["error"]["code"] == "invalid_timing"

        # One line's translation edited by hand (a question now: as loud and as long, so the previous gain holds).
        before = next(s for s in language["segments"] if s["id"] == target["id"])["text"]
        new_text = before.rstrip(".!?") + "?"
        edited = await svc.client.patch(f"/v1/jobs/{job_id}/languages/es/segments/{target['id']}",
                                        headers=ann, json={"text": new_text})
        assert edited.status_code == 200
        shown = {s["id"]: s for s in edited.json()["segments"]}
        assert shown[target["id"]]["edited"] and shown[target["id"]]["stale"]
        assert sum(s["stale"] for s in shown.values()) == 1
        revision = edited.json()["revision"]
        history_rows = (await svc.client.get(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}/history",
                                             headers=ann)).json()["edits"]
        assert [(e["target_language"], e["field"]) for e in history_rows] == [(None, "speaker"), ("es", "text")]
        assert history_rows[-1]["new"] == new_text

        # Render it: asked twice at once, it is one render; it speaks the edited line only, translates nothing.
        translated_before, tts_before = calls["translate"], calls["tts"]
        first, second = await asyncio.gather(*(svc.client.post(f"/v1/jobs/{job_id}/languages/es/render",
                                                               headers=ann) for _ in range(2)))
        assert first.status_code == second.status_code == 202
        assert sorted([first.json()["started"], second.json()["started"]]) == [False, True]
        after = min(first.json()["after_event"], second.json()["after_event"])
        conflict = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{target['id']}",
                                          headers={**ann, "If-Match": '"2"'}, json={"text": "During the render."})
        assert conflict.status_code in (409, 200)  # 409 unless the render was already over
        if conflict.status_code == 409:
            assert conflict.json()["error"]["code"] == "rendering"
        rendered = await follow(svc, "ann", job_id, after)
        assert rendered[-1].event == "done" and rendered[-1].data["status"] == "complete"
        assert sum(1 for e in rendered if e.event == "done") == 1
        assert calls["translate"] == translated_before
        assert set(spoken[tts_before:]) == {new_text}
        assert first_tts >= len(doc["segments"])

        after_render = (await svc.client.get(f"/v1/jobs/{job_id}/languages/es", headers=ann)).json()
        assert after_render["output_revision"] == after_render["revision"] == revision
        assert not any(s["stale"] for s in after_render["segments"])
        latest = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=ann)).json()["artifacts"]
        assert {a["revision"] for a in latest if a["target_language"] == "es"} == {revision}
        earlier = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=ann,
                                        params={"revision": "1"})).json()["artifacts"]
        assert {a["revision"] for a in earlier if a["target_language"] == "es"} == {1}
        assert len(earlier) == len(latest)

        # Outside the edited line's window the voice stem is the previous revision's, sample for sample.
        old, new = await stem(svc, "ann", job_id, "es", 1), await stem(svc, "ann", job_id, "es")
        assert old.shape == new.shape
        rate = settings.sample_rate
        segs = again["segments"]
        window = (int(segs[1]["start"] * rate) - rate // 10, int(segs[2]["start"] * rate))
        mixes = []
        for number in (1, revision):
            listed = (await svc.client.get(f"/v1/jobs/{job_id}/artifacts", headers=ann,
                                           params={"revision": str(number)})).json()["artifacts"]
            manifest = next(a for a in listed if a["kind"] == "manifest" and a["target_language"] == "es")
            mixes.append((await svc.client.get(manifest["download_url"])).json()["loudness"])
        assert mixes[0]["gain_db"] == mixes[1]["gain_db"], mixes  # kept: within 1 LU of the target
        assert np.array_equal(old[: window[0]], new[: window[0]])
        assert np.array_equal(old[window[1]:], new[window[1]:])
        assert not np.array_equal(old[window[0]: window[1]], new[window[0]: window[1]])

        # The proofread round-trip: the captions back with one cue changed; a moved cue is refused, naming it.
        captions = next(a for a in latest if a["kind"] == "captions_srt")
        srt = (await svc.client.get(captions["download_url"])).text
        blocks = srt.strip().split("\n\n")
        lines = blocks[0].split("\n")
        changed_srt = "\n\n".join(["\n".join([*lines[:2], "Bienvenidos a todos."]), *blocks[1:]]) + "\n"
        moved = srt.replace(lines[1], lines[1].replace(lines[1][:8], "00:00:09"), 1)
        refused = await svc.client.put(f"/v1/jobs/{job_id}/languages/es/captions", content=moved, headers=ann)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "captions_mismatch"
        assert refused.json()["error"]["message"].startswith("cue 1 ")
        shorter = "\n\n".join(blocks[:-1]) + "\n"
        refused = await svc.client.put(f"/v1/jobs/{job_id}/languages/es/captions", content=shorter, headers=ann)
        assert refused.status_code == 422 and f"cue {len(blocks)} " in refused.json()["error"]["message"]
        applied = await svc.client.put(f"/v1/jobs/{job_id}/languages/es/captions", content=changed_srt,
                                       headers={**ann, "Content-Type": "application/x-subrip"})
        assert applied.status_code == 200, applied.text
        assert applied.json()["changed_cues"] == [1] and applied.json()["changed_segments"] == [segs[0]["id"]]
        language = (await svc.client.get(f"/v1/jobs/{job_id}/languages/es", headers=ann)).json()
        assert language["segments"][0]["text"] == "Bienvenidos a todos." and language["segments"][0]["edited"]

        # A language added later: no speech recognition again.
        assert calls["stt"] == 1
        added = await svc.client.post(f"/v1/jobs/{job_id}/languages", headers=ann, json={"target_languages": ["ca"]})
        assert added.status_code == 202, added.text
        done = await follow(svc, "ann", job_id, added.json()["after_event"])
        assert done[-1].data["status"] == "complete"
        assert calls["stt"] == 1
        twice = await svc.client.post(f"/v1/jobs/{job_id}/languages", headers=ann, json={"target_languages": ["ca"]})
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "language_exists"


async def test_a_render_killed_mid_way_resumes_and_finishes_once(tmp_path: Path, database_url: str,
                                                                 sample: Sample) -> None:
    """Through the real `dubbing serve`: kill -9 while a re-render runs; the next process finishes it, once."""
    data = tmp_path / "data"
    async with served(data, database_url) as svc:
        eve = svc.auth("eve")
        voice = await svc.upload("eve", sample.voice, "voice")
        created = await svc.client.post("/v1/jobs", headers=eve, json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
        job_id = created.json()["id"]
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=eve, timeout=180) as stream:
            assert (await read_events(stream))[-1].data["status"] == "complete"
        doc = (await svc.client.get(f"/v1/jobs/{job_id}/transcript", headers=eve)).json()
        segment = doc["segments"][2]["id"]
        changed = await svc.client.patch(f"/v1/jobs/{job_id}/transcript/segments/{segment}",
                                         headers={**eve, "If-Match": '"1"'},
                                         json={"text": "We will walk to the old market."})
        assert changed.status_code == 200, changed.text
        render = await svc.client.post(f"/v1/jobs/{job_id}/languages/es/render", headers=eve)
        assert render.status_code == 202 and render.json()["started"]
        after = render.json()["after_event"]
        await wait_for(database_url, job_id,
                       "lease_owner IS NOT NULL AND stage IN ('translating', 'dubbing', 'mixing')")
        svc.process.kill()  # the service alone, as the OOM killer would
        await svc.process.wait()
    async with served(data, database_url) as again:
        async with again.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=again.auth("eve"),
                                       params={"last_event_id": str(after)}, timeout=180) as stream:
            rendered = await read_events(stream)
        assert rendered[-1].event == "done" and rendered[-1].data["status"] == "complete", again.logs()[-3000:]
        assert sum(1 for e in rendered if e.event == "done") == 1
        assert sum(1 for e in rendered if e.event == "stage" and e.data["stage"] == "complete") == 1
        language = (await again.client.get(f"/v1/jobs/{job_id}/languages/es", headers=again.auth("eve"))).json()
        assert language["output_revision"] == language["revision"] == 2
        assert not any(s["stale"] for s in language["segments"])
        listed = (await again.client.get(f"/v1/jobs/{job_id}/artifacts", headers=again.auth("eve"))).json()
        kinds = [a["kind"] for a in listed["artifacts"] if a["target_language"] == "es"]
        assert len(kinds) == len(set(kinds)) == 6 and all(a["revision"] == 2 for a in listed["artifacts"]
                                                         if a["target_language"] == "es")
        row = await task_row(database_url, job_id)
        assert row["stage"] == "complete" and row["attempts"] == 1
