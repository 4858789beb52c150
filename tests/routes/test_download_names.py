"""Downloads are named after the input and the language, through the signed URL's Content-Disposition; the
input's name is kept with the job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest

from service.routes.jobs import artifact_download_name
from service.settings import Settings
from tests.support import Service, running_service, wav_bytes


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


def test_each_artifact_of_each_language_has_its_own_name() -> None:
    kinds = {"master_web": "x/es/master.mp3", "master_wav": "x/es/master.wav", "voice_stem": "x/es/voice_stem.wav",
             "captions_vtt": "x/es/captions.vtt", "captions_srt": "x/es/captions.srt",
             "manifest": "x/es/manifest.json"}
    names = {artifact_download_name("interview.final.mp3", kind, "es", path) for kind, path in kinds.items()}
    assert "interview.final_es.mp3" in names and "interview.final_es_voice.wav" in names
    assert len(names) == len(kinds)
    assert artifact_download_name("interview.mp3", "transcript_json", None, "x/transcript.json") == \
        "interview_transcript.json"
    assert artifact_download_name(None, "master_web", "ca", "x/ca/master.mp3") == "dub_ca.mp3"
    assert artifact_download_name('C:\\Users\\me\\"a:b"?.wav', "master_wav", "es", "m.wav") == "a_b_es.wav"


async def test_the_inputs_name_is_kept_and_named_in_its_download(service: Service) -> None:
    voice = await service.upload("nina", wav_bytes(1.0), filename="Entrevista José.wav")
    created = await service.client.post("/v1/jobs", headers=service.auth("nina"), json={
        "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["inputs"]["voice"]["filename"] == "Entrevista José.wav"
    listed = (await service.client.get("/v1/jobs", headers=service.auth("nina"))).json()["jobs"]
    assert listed[0]["inputs"]["voice"]["filename"] == "Entrevista José.wav"
    inputs = (await service.client.get(f"/v1/jobs/{job['id']}/inputs", headers=service.auth("nina"))).json()
    item = inputs["inputs"][0]
    assert item["download_name"] == "Entrevista José.wav"
    download = await service.client.get(item["download_url"])
    assert download.status_code == 200
    disposition = download.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Entrevista Jose.wav"; filename*=UTF-8\'\'')
    assert unquote(disposition.split("''", 1)[1]) == "Entrevista José.wav"
