"""`dubbing doctor` in cloud mode: engines per stage, one call per provider, and no secret shown."""

from __future__ import annotations

import httpx
import respx

from service.doctor import diagnose, report
from service.settings import Settings
from tests.fakes.cloud import PROJECT, SECRETS, cloud_settings


def _answer_providers(router: respx.MockRouter, openai_status: int = 200) -> None:
    router.get(f"{PROJECT}/storage/v1/bucket/dubbing").mock(return_value=httpx.Response(200, json={
        "id": "dubbing", "name": "dubbing", "owner": "", "public": False, "file_size_limit": 524288000,
        "allowed_mime_types": ["audio/wav"], "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z"}))
    router.get(f"{PROJECT}/auth/v1/.well-known/jwks.json").mock(return_value=httpx.Response(200, json={"keys": []}))
    router.get("https://api.deepgram.com/v1/projects").mock(return_value=httpx.Response(200, json={
        "projects": [{"project_id": "p1", "name": "Dubbing"}]}))
    body = ({"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}
            if openai_status == 200 else
            {"error": {"message": f"Incorrect API key provided: {SECRETS['openai']}", "type": "invalid_request_error",
                       "param": None, "code": "invalid_api_key"}})
    router.get("https://api.openai.com/v1/models/gpt-4o-mini").mock(return_value=httpx.Response(openai_status,
                                                                                                 json=body))


async def test_doctor_reports_cloud_engines_and_checks_each_provider(settings: Settings) -> None:
    with respx.mock(assert_all_called=True) as router:
        _answer_providers(router)
        lines, checks = await diagnose(cloud_settings(settings))
    text = report(lines, checks)
    assert "engine for stt: deepgram (nova-3)" in text
    assert "engine for translating: openai (gpt-4o-mini)" in text
    assert "engine for dubbing: deepgram-aura" in text
    assert {c.name: c.ok for c in checks if c.name in ("supabase storage", "supabase auth", "deepgram", "openai")} \
        == {"supabase storage": True, "supabase auth": True, "deepgram": True, "openai": True}
    for secret in SECRETS.values():
        assert secret not in text


async def test_doctor_names_a_failing_provider_without_its_secret(settings: Settings) -> None:
    with respx.mock(assert_all_called=False) as router:
        _answer_providers(router, openai_status=401)
        lines, checks = await diagnose(cloud_settings(settings))
    failed = [c for c in checks if not c.ok]
    assert [c.name for c in failed] == ["openai"]
    text = report(lines, checks)
    assert "FAIL openai" in text
    for secret in SECRETS.values():
        assert secret not in text
