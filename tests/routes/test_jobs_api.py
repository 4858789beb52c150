"""The job API through real HTTP: creating, reading, listing, idempotency and every bad input."""

from __future__ import annotations

import uuid

import pytest

from service.settings import Settings
from tests.support import Service, running_service, wav_bytes


@pytest.fixture
async def service(settings: Settings):  # type: ignore[no-untyped-def]
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


async def test_health_ready_and_openapi(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    ready = await service.client.get("/readyz")
    # The supervisor is off in this fixture, and readiness says so.
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": True, "migrations": True, "supervisor": False, "listener": True}
    doc = (await service.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/uploads", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
                 "/v1/jobs/{job_id}/artifacts", "/v1/jobs/{job_id}/cancel"):
        assert path in doc["paths"]


async def test_create_job_records_inputs_and_one_task_per_language(service: Service) -> None:
    voice = await service.upload("alice", wav_bytes(2.0))
    background = await service.upload("alice", wav_bytes(2.5, freq=220), kind="background", filename="bed.wav")
    response = await service.client.post(
        "/v1/jobs", headers=service.auth("alice"),
        json={"voice_object": voice, "background_object": background, "source_language": "en",
              "target_languages": ["es", "fr", "es-MX"]},
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert sorted(t["target_language"] for t in job["tasks"]) == ["es", "fr"]
    assert all(t["stage"] == "queued" and t["progress"] == 0 for t in job["tasks"])
    assert job["inputs"]["voice"]["object_path"] == voice
    assert abs(job["inputs"]["voice"]["duration_seconds"] - 2.0) < 0.01
    assert abs(job["inputs"]["background"]["duration_seconds"] - 2.5) < 0.01
    assert len(job["inputs"]["voice"]["sha256"]) == 64
    fetched = await service.client.get(f"/v1/jobs/{job['id']}", headers=service.auth("alice"))
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]


async def test_idempotency_key_returns_the_same_job(service: Service) -> None:
    voice = await service.upload("bob", wav_bytes())
    body = {"voice_object": voice, "source_language": "en", "target_languages": ["es"], "idempotency_key": "k1"}
    first = await service.client.post("/v1/jobs", headers=service.auth("bob"), json=body)
    again = await service.client.post("/v1/jobs", headers=service.auth("bob"), json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = await service.client.post("/v1/jobs", headers=service.auth("bob"),
                                      json={**body, "target_languages": ["fr"]})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert (await service.count_rows())["jobs"] == 1


async def test_many_jobs_made_at_once_from_the_same_uploads(service: Service) -> None:
    """Re-dubbing one recording into several languages at once: every creation succeeds (it once met a
    deadlock on the uploads' rows under load, 32 creations while jobs ran, and answered 500)."""
    import asyncio

    voice = await service.upload("erin", wav_bytes(1.0))
    background = await service.upload("erin", wav_bytes(1.0, freq=220), kind="background", filename="bed.wav")
    bodies = [{"voice_object": voice, "background_object": background, "source_language": "en",
               "target_languages": [lang]} for lang in ("es", "fr", "de", "it", "pt", "ca", "nl", "pl") * 2]
    answers = await asyncio.gather(*(service.client.post("/v1/jobs", headers=service.auth("erin"), json=body)
                                     for body in bodies))
    assert [a.status_code for a in answers] == [201] * len(bodies), [a.text for a in answers if a.status_code != 201]
    assert (await service.count_rows())["jobs"] == len(bodies)


async def test_list_is_newest_first_with_cursor(service: Service) -> None:
    ids = []
    for _ in range(5):
        response = await service.create_job("carol", ["es"])
        ids.append(response.json()["id"])
    await service.create_job("dave", ["es"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await service.client.get("/v1/jobs", params=params, headers=service.auth("carol"))).json()
        seen.extend(j["id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    for nonsense in ("nonsense", "", "99999999999999999_" + str(uuid.uuid4()), f"1_{uuid.uuid4()}\n"):
        bad = await service.client.get("/v1/jobs", params={"cursor": nonsense}, headers=service.auth("carol"))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    # Any string of the documented form is a cursor: one from before every job pages to nothing.
    early = await service.client.get("/v1/jobs", params={"cursor": f"1_{uuid.uuid4()}"}, headers=service.auth("carol"))
    assert early.status_code == 200 and early.json() == {"jobs": [], "next_cursor": None}


async def test_another_users_job_is_not_found(service: Service) -> None:
    job = (await service.create_job("erin", ["es"])).json()
    for method, path in (("GET", f"/v1/jobs/{job['id']}"), ("GET", f"/v1/jobs/{job['id']}/artifacts"),
                         ("GET", f"/v1/jobs/{job['id']}/events"), ("POST", f"/v1/jobs/{job['id']}/cancel")):
        response = await service.client.request(method, path, headers=service.auth("mallory"))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    listed = (await service.client.get("/v1/jobs", headers=service.auth("mallory"))).json()
    assert listed["jobs"] == []
    missing = await service.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=service.auth("erin"))
    assert missing.status_code == 404
    assert (await service.client.get("/v1/jobs/not-a-uuid", headers=service.auth("erin"))).status_code == 404


async def test_cannot_use_another_users_upload(service: Service) -> None:
    voice = await service.upload("frank", wav_bytes())
    response = await service.client.post(
        "/v1/jobs", headers=service.auth("mallory"),
        json={"voice_object": voice, "source_language": "en", "target_languages": ["es"]},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "object_not_found"
    assert (await service.count_rows())["jobs"] == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ("[1, 2]", 400, "invalid_body"),
        ({"source_language": "en", "target_languages": ["es"]}, 422, "missing_field"),
        ({"voice_object": "VOICE", "source_language": "en"}, 422, "missing_field"),
        ({"voice_object": "VOICE", "source_language": "xx", "target_languages": ["es"]}, 422, "unknown_language"),
        ({"voice_object": "VOICE", "source_language": "en", "target_languages": ["tlh"]}, 422,
         "unknown_language"),
        ({"voice_object": "VOICE", "source_language": "en", "target_languages": ["klingon"]}, 422,
         "invalid_field"),
        ({"voice_object": "VOICE", "source_language": "en", "target_languages": []}, 422, "invalid_field"),
        ({"voice_object": "VOICE", "source_language": "en", "target_languages": ["es"], "offline_voice": "loud"},
         422, "invalid_field"),
        ({"voice_object": "VOICE", "source_language": "en", "target_languages": ["en"]}, 422, "same_language"),
        ({"voice_object": "USER/uploads/nothing/voice.wav", "source_language": "en", "target_languages": ["es"]},
         422, "object_not_found"),
        ({"voice_object": "VOICE", "background_object": "USER/nope.wav", "source_language": "en",
          "target_languages": ["es"]}, 422, "object_not_found"),
        ({"voice_object": "NOISE", "source_language": "en", "target_languages": ["es"]}, 422, "audio_undecodable"),
    ],
)
async def test_bad_job_requests_get_a_clear_4xx_and_leave_no_rows(
    service: Service, body: object, status: int, code: str
) -> None:
    voice = await service.upload("gina", wav_bytes())
    noise = await service.upload("gina", b"RIFF....definitely not audio" * 10, filename="noise.wav")
    if isinstance(body, dict):
        text = {k: (v.replace("VOICE", voice).replace("NOISE", noise).replace("USER", "gina")
                    if isinstance(v, str) else v) for k, v in body.items()}
        response = await service.client.post("/v1/jobs", headers=service.auth("gina"), json=text)
    else:
        response = await service.client.post(
            "/v1/jobs", headers={**service.auth("gina"), "Content-Type": "application/json"}, content=str(body)
        )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message"}
    assert await service.count_rows() == {"jobs": 0, "language_tasks": 0, "task_events": 0, "artifacts": 0}


@pytest.mark.parametrize(
    ("file", "status", "code"),
    [
        ({"kind": "voice", "filename": "a.exe", "content_type": "application/x-msdownload", "size_bytes": 10},
         415, "unsupported_content_type"),
        ({"kind": "voice", "filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10**12}, 413,
         "file_too_large"),
        ({"kind": "lyrics", "filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}, 422,
         "invalid_field"),
        ({"kind": "voice", "content_type": "audio/wav", "size_bytes": 10}, 422, "missing_field"),
        ({"kind": "voice", "filename": "a.wav", "content_type": "audio/wav", "size_bytes": "ten"}, 422,
         "invalid_field"),
    ],
)
async def test_bad_upload_requests(service: Service, file: dict[str, object], status: int, code: str) -> None:
    response = await service.client.post("/v1/uploads", headers=service.auth("hank"), json={"files": [file]})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_upload_urls_live_under_the_callers_prefix(service: Service) -> None:
    response = await service.client.post(
        "/v1/uploads", headers=service.auth("ivy"),
        json={"files": [{"kind": "voice", "filename": "../../etc/passwd.wav", "content_type": "audio/wav",
                         "size_bytes": 100},
                        {"kind": "background", "filename": "bed.mp3", "content_type": "audio/mpeg",
                         "size_bytes": 100}]},
    )
    assert response.status_code == 201
    uploads = response.json()["uploads"]
    assert [u["kind"] for u in uploads] == ["voice", "background"]
    for upload in uploads:
        assert upload["object_path"].startswith("ivy/uploads/")
        assert ".." not in upload["object_path"]
        assert upload["upload_url"].startswith(service.base_url + "/storage/v1/object/upload/sign/dubbing/ivy/")


async def test_hostile_bodies_and_headers_get_a_4xx(service: Service) -> None:
    headers = {**service.auth("olga"), "Content-Type": "application/json"}
    for route in ("/v1/jobs", "/v1/uploads"):
        nested = await service.client.post(route, headers=headers, content="[" * 3000)
        assert nested.status_code == 400 and nested.json()["error"]["code"] in ("malformed_json", "invalid_body")
        deep_field = await service.client.post(route, headers=headers, content='{"files": ' + "[" * 3000)
        assert 400 <= deep_field.status_code < 500
    job = (await service.create_job("olga", ["es"])).json()
    huge = await service.client.get(f"/v1/jobs/{job['id']}/events",
                                    headers={**service.auth("olga"), "Last-Event-ID": "9" * 20})
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "invalid_last_event_id"


async def test_a_voice_too_short_to_dub_is_refused(service: Service) -> None:
    blip = await service.upload("pia", wav_bytes(0.023))
    response = await service.client.post("/v1/jobs", headers=service.auth("pia"), json={
        "voice_object": blip, "source_language": "en", "target_languages": ["es"]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "audio_too_short"
    assert (await service.count_rows())["jobs"] == 0


async def test_an_object_that_is_not_the_size_declared_for_it_is_refused(service: Service) -> None:
    """Backends that cannot bind the size into the signed URL (Supabase) are checked at job creation."""
    response = await service.client.post("/v1/uploads", headers=service.auth("quin"), json={"files": [
        {"kind": "voice", "filename": "v.wav", "content_type": "audio/wav", "size_bytes": 1000}]})
    path = response.json()["uploads"][0]["object_path"]
    data = wav_bytes(1.0)

    async def body():
        yield data

    await service.services.storage.receive(path, body(), "audio/wav", 10**7)  # as if the backend took it
    created = await service.client.post("/v1/jobs", headers=service.auth("quin"), json={
        "voice_object": path, "source_language": "en", "target_languages": ["es"]})
    assert created.status_code == 422 and created.json()["error"]["code"] == "upload_size_mismatch"
    assert (await service.count_rows())["jobs"] == 0
