"""The transcript's edits without the pipeline: a finished job's transcript written as the stt stage writes it,
then split, merge, speaker and timing edits through the API, each under its revision, with the history kept."""

from __future__ import annotations

import uuid
from typing import Any

from service.db import transcripts
from service.settings import Settings
from tests.support import Service, running_service, wav_bytes

UNITS = [{"id": 0, "start": 0.5, "end": 2.0, "text": "Hello there my friend.", "group": 0},
         {"id": 1, "start": 2.5, "end": 4.0, "text": "How are you?", "group": 1},
         {"id": 2, "start": 5.0, "end": 7.5, "text": "Fine, thank you.", "group": 2}]


async def finished_job(svc: Service, user: str) -> str:
    voice = await svc.upload(user, wav_bytes(10.0))
    job = (await svc.client.post("/v1/jobs", headers=svc.auth(user), json={
        "voice_object": voice, "source_language": "en", "target_languages": ["es"]})).json()
    job_id = uuid.UUID(job["id"])
    segments = [{"id": u["id"], "start": u["start"], "end": u["end"], "text": u["text"], "words": [],
                 "speaker": "S1" if u["id"] < 2 else "S2"} for u in UNITS]
    data: dict[str, Any] = {"language": "en", "duration": 10.0, "engine": "test", "model": "none",
                            "segments": segments, "units": UNITS}
    assert (await transcripts.acquire(svc.pool, job_id, "t", 30)).state == "mine"
    assert await transcripts.complete(svc.pool, job_id, "t", data)
    await svc.pool.execute("UPDATE language_tasks SET stage = 'complete', progress = 1, finished_at = now(), "
                           "error_code = NULL WHERE job_id = $1", job_id)
    return str(job_id)


async def test_split_merge_speaker_and_timing_edits_keep_their_revision_and_history(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        job_id = await finished_job(svc, "una")
        base = f"/v1/jobs/{job_id}/transcript"

        def at(revision: int) -> dict[str, str]:
            return {**svc.auth("una"), "If-Match": f'"{revision}"'}

        doc = (await svc.client.get(base, headers=svc.auth("una"))).json()
        assert doc["speakers"] == ["S1", "S2"] and [s["speaker"] for s in doc["segments"]] == ["S1", "S1", "S2"]

        split = await svc.client.post(f"{base}/segments/0/split", headers=at(1), json={"at": 1.2})
        assert split.status_code == 200, split.text
        parts = split.json()["segments"][:2]
        assert [(p["start"], p["end"]) for p in parts] == [(0.5, 1.2), (1.2, 2.0)]
        assert " ".join(p["text"] for p in parts) == "Hello there my friend." and parts[1]["id"] == 3
        assert split.json()["revision"] == 2

        merged = await svc.client.post(f"{base}/segments/3/merge", headers=at(2))
        assert merged.status_code == 200 and merged.json()["revision"] == 3
        assert [s["id"] for s in merged.json()["segments"]] == [0, 3, 2]
        assert merged.json()["segments"][1] == {"id": 3, "start": 1.2, "end": 4.0, "speaker": "S1",
                                                "text": f"{parts[1]['text']} How are you?"}

        overlapping = await svc.client.patch(f"{base}/segments/2", headers=at(3), json={"start": 3.5})
        assert overlapping.status_code == 422 and "segment 3" in overlapping.json()["error"]["message"]
        past_end = await svc.client.patch(f"{base}/segments/2", headers=at(3), json={"end": 10.5})
        assert past_end.status_code == 422
        moved = await svc.client.patch(f"{base}/segments/2", headers=at(3), json={"start": 4.5, "speaker": None})
        assert moved.status_code == 200 and moved.json()["segments"][2]["start"] == 4.5
        assert moved.json()["speakers"] == ["S1"] and moved.headers["etag"] == '"4"'

        history = (await svc.client.get(f"{base}/segments/3/history", headers=svc.auth("una"))).json()["edits"]
        assert [(e["action"], e["field"]) for e in history][:2] == [("split", "start"), ("split", "end")]
        assert history[-1]["action"] == "merge" and all(e["editor"] == "una" for e in history)
        languages = (await svc.client.get(f"/v1/jobs/{job_id}/languages/es", headers=svc.auth("una"))).json()
        assert languages["revision"] == 4 and all(s["stale"] for s in languages["segments"])

        # While the job renders nothing changes, and a stale revision is refused first or not at all.
        await svc.pool.execute("UPDATE language_tasks SET stage = 'mixing', progress = 0.6, finished_at = NULL "
                               "WHERE job_id = $1", uuid.UUID(job_id))
        busy = await svc.client.patch(f"{base}/segments/2", headers=at(4), json={"text": "Good."})
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "rendering"
        busy = await svc.client.patch(f"/v1/jobs/{job_id}/languages/es/segments/2", headers=svc.auth("una"),
                                      json={"text": "Bien."})
        assert busy.status_code == 409
        assert (await svc.client.get(base, headers=svc.auth("una"))).json()["revision"] == 4
