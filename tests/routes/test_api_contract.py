"""What the API says about itself and about bad requests: every refusal is a 4xx whose message a person can
read (never a regular expression or type syntax), a 405 names every method of the path in `Allow`, and the
OpenAPI document declares the limits the API enforces."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.settings import ALLOWED_UPLOAD_TYPES, Settings
from tests.support import Service, running_service, wav_bytes


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _bad_values(schema: dict[str, Any]) -> list[Any]:
    """Values that break one rule of `schema` each: its type, pattern, enum, length or bounds."""
    options = schema.get("anyOf", [schema])
    kinds = {option.get("type") for option in options} | ({"string"} if "enum" in schema else set())
    bad: list[Any] = [{"an": "object"}] if "object" not in kinds else [17]
    for option in options:
        if "pattern" in option:
            bad += [v for v in (" ", "!!", "a\u0000b", "\t", "AUTO") if not re.search(option["pattern"], v)]
        if "enum" in option or "enum" in schema:
            bad.append("not-one-of-them")
        if "minLength" in option:
            bad.append("")
        if "maxLength" in option:
            bad.append("x" * (option["maxLength"] + 1))
        if "minimum" in option:
            bad += [option["minimum"] - 1, 1.5]
        if "maximum" in option:
            bad.append(option["maximum"] + 1)
        if option.get("type") == "array":
            bad += [[], [17], ["!!"], ["de", "fr", "it"] * 20]
    return bad


def _bodies(doc: dict[str, Any], model: str, valid: dict[str, Any]) -> list[dict[str, Any]]:
    """`valid` with one field at a time replaced by a bad value (nested objects and lists included)."""
    schema = _resolve(doc, {"$ref": f"#/components/schemas/{model}"})
    bodies = []
    for name, prop in schema["properties"].items():
        prop = _resolve(doc, prop)
        for value in _bad_values(prop):
            bodies.append({**valid, name: value})
        items = _resolve(doc, prop.get("items", {}))
        if items.get("type") == "object" and isinstance(valid.get(name), list):
            for inner, inner_valid in [(items, valid[name][0])]:
                for field, field_schema in inner["properties"].items():
                    for value in _bad_values(_resolve(doc, field_schema)):
                        bodies.append({**valid, name: [{**inner_valid, field: value}]})
        if name in schema.get("required", []):
            bodies.append({k: v for k, v in valid.items() if k != name})
    return bodies


def _patterns(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_patterns(v) for v in node))
    return set()


def assert_plain(response: Any, patterns: set[str]) -> None:
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["error"]["message"]
    for pattern in patterns:
        assert pattern not in message, message
    assert not re.search(r"regex|`|\^\[|\\S|\$\.|Expected ", message), message


async def test_every_refusal_says_what_is_wrong_in_plain_words(service: Service) -> None:
    doc = (await service.client.get("/openapi.json")).json()
    patterns = _patterns(doc)
    assert patterns, "the document declares its patterns"
    headers = service.auth("rita")
    voice = await service.upload("rita", wav_bytes())
    upload = {"kind": "voice", "filename": "take.wav", "content_type": "audio/wav", "size_bytes": 1000}
    job = {"voice_object": voice, "source_language": "en", "target_languages": ["es"]}
    answers = []
    for body in _bodies(doc, "UploadRequest", {"files": [upload]}):
        answers.append(await service.client.post("/v1/uploads", headers=headers, json=body))
    for body in _bodies(doc, "JobRequest", job):
        answers.append(await service.client.post("/v1/jobs", headers=headers, json=body))
    for params in ({"limit": "ten"}, {"limit": "0"}, {"cursor": "^[0-9]"}, {"cursor": "x" * 500}):
        answers.append(await service.client.get("/v1/jobs", headers=headers, params=params))
    job_id = (await service.create_job("rita", ["es"])).json()["id"]
    answers.append(await service.client.get(f"/v1/jobs/{job_id}/events",
                                            headers={**headers, "Last-Event-ID": "not a number"}))
    answers.append(await service.client.get(f"/v1/jobs/{job_id}/events/stream", params={"ticket": "x"}))
    answers.append(await service.client.get("/v1/jobs", headers={"Authorization": "Bearer not.a.token"}))
    assert len(answers) > 50
    for answer in answers:
        assert_plain(answer, patterns)
    messages = {a.json()["error"]["message"] for a in answers}
    assert "'source_language' must be a language code such as 'en', or 'auto'" in messages
    assert "'target_languages' must be a language code such as 'es' or 'pt-BR'" in messages
    assert "'size_bytes' must be at least 1" in messages
    assert "'kind' must be one of: voice, background, media" in messages


async def test_declared_limits_match_the_answers(service: Service) -> None:
    doc = (await service.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    upload = schemas["UploadFile"]["properties"]
    assert upload["content_type"]["enum"] == list(ALLOWED_UPLOAD_TYPES)  # video types for kind `media` only
    assert upload["size_bytes"]["minimum"] == 1
    assert upload["size_bytes"]["maximum"] == service.settings.max_upload_bytes
    targets = schemas["JobRequest"]["properties"]["target_languages"]
    assert targets["items"]["pattern"] and targets["maxItems"] == service.settings.max_target_languages
    cursor = next(p for p in doc["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "cursor")
    assert re.match(cursor["schema"]["pattern"], f"1_{uuid.uuid4()}")
    # A type the enum does not list is refused, whatever its case or parameters.
    headers = service.auth("sam")
    for content_type in ("0", "AUDIO/WAV", "audio/wav; codecs=1", "video/x-msvideo"):
        answer = await service.client.post("/v1/uploads", headers=headers, json={"files": [
            {"kind": "voice", "filename": "a.wav", "content_type": content_type, "size_bytes": 10}]})
        assert answer.status_code == 415 and answer.json()["error"]["code"] == "unsupported_content_type"
    # A video the enum lists, under a kind other than `media`: the request's own fault (issue 20).
    video = await service.client.post("/v1/uploads", headers=headers, json={"files": [
        {"kind": "voice", "filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10}]})
    assert video.status_code == 422 and "kind 'media'" in video.json()["error"]["message"]
    # Two files of one kind are two uploads, as the document allows.
    twice = await service.client.post("/v1/uploads", headers=headers, json={"files": [
        {"kind": "voice", "filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10}] * 2})
    assert twice.status_code == 201 and len({u["object_path"] for u in twice.json()["uploads"]}) == 2


@pytest.mark.parametrize(("path", "methods"), [
    ("/v1/jobs", {"GET", "POST"}),
    ("/v1/jobs/JOB", {"GET", "DELETE"}),
    ("/v1/jobs/JOB/cancel", {"POST"}),
    ("/v1/uploads", {"POST"}),
    ("/storage/v1/object/sign/dubbing/u/x.wav", {"GET"}),
    ("/storage/v1/object/upload/sign/dubbing/u/x.wav", {"PUT", "POST"}),
    ("/static/style.css", {"GET"}),
])
async def test_a_405_names_every_method_of_the_path(service: Service, path: str, methods: set[str]) -> None:
    path = path.replace("JOB", str(uuid.uuid4()))
    for method in ("OPTIONS", "TRACE", "PATCH"):
        answer = await service.client.request(method, path, headers=service.auth("tom"))
        assert answer.status_code == 405, (method, path, answer.text)
        allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"}
        assert allowed == methods, (method, path, answer.headers["allow"])
