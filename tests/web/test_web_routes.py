"""The web page's server side without a browser: the page and its CSP, local sign-in (and its absence
in cloud mode), CORS preflights, the languages list, the job's inputs, and the signed progress stream."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from service.app import create_app
from service.domain import STAGE_ORDER, TERMINAL
from service.engines.protocols import Engines
from service.routes import tickets
from service.routes.auth import verify
from service.settings import Settings
from service.web.page import STATIC_DIR
from tests.support import JWT_SECRET, Service, read_events, running_service, wav_bytes

FRONTEND = "https://app.example.com"


def asgi_client(settings: Settings, client: tuple[str, int] = ("127.0.0.1", 50000)) -> httpx.AsyncClient:
    """The app without its lifespan (no database): enough for routes that only read settings."""
    transport = httpx.ASGITransport(app=create_app(settings, registry={}), client=client)
    return httpx.AsyncClient(transport=transport, base_url=settings.public_base_url)


# -- the page ----------------------------------------------------------------------------------------

async def test_page_and_static_files_carry_a_strict_csp(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, public_base_url="http://127.0.0.1:8000")
    async with asgi_client(settings) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["require-trusted-types-for"] == "'script'"
        assert "unsafe" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        html = page.text
        # No inline script or style: every <script> has a src, no <style>, no style= or on...= attributes.
        assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))
        assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)

        script = await client.get("/static/js/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-security-policy"] == csp
        again = await client.get("/static/js/app.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304

        for missing in ("/static/nope.js", "/static/../settings.py", "/nope"):
            response = await client.get(missing)
            assert response.status_code == 404, missing
            assert response.json()["error"]["code"] == "not_found"
        wrong_method = await client.delete("/")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_every_module_and_style_the_page_names_is_packaged() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert (STATIC_DIR / ref).is_file(), ref
    for module in (STATIC_DIR / "js").glob("*.js"):
        text = module.read_text()
        for ref in re.findall(r"from '\./([^']+)'", text):
            assert (STATIC_DIR / "js" / ref).is_file(), f"{module.name} imports {ref}"
        # Nothing that Trusted Types or the CSP would refuse.
        assert not re.search(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function",
                              text), module.name
    vendor = STATIC_DIR / "vendor" / "supabase"
    assert (vendor / "supabase.js").stat().st_size > 100_000
    assert "MIT License" in (vendor / "LICENSE").read_text()


def test_a_wheel_carries_every_static_file() -> None:
    """pyproject's package-data globs cover the page, so a non-editable install serves it too."""
    import tomllib

    package = STATIC_DIR.parents[1]
    globs = tomllib.loads((package.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    packaged = {path for pattern in globs["service"] for path in package.glob(pattern) if path.is_file()}
    on_disk = {path for path in STATIC_DIR.rglob("*") if path.is_file()}
    assert on_disk and on_disk <= packaged, sorted(str(p) for p in on_disk - packaged)


async def test_config_tells_the_page_how_to_sign_in(tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path, jwt_secret="s" * 40, local_auth=True)
    async with asgi_client(local) as client:
        assert (await client.get("/config.json")).json()["mode"] == "local"
    cloud = Settings(data_dir=tmp_path, supabase_url="https://proj.supabase.co", supabase_anon_key="anon-key")
    async with asgi_client(cloud) as client:
        config = (await client.get("/config.json")).json()
        assert config["mode"] == "cloud"
        assert config["supabase"] == {"url": "https://proj.supabase.co", "anon_key": "anon-key"}
        csp = (await client.get("/")).headers["content-security-policy"]
        assert "connect-src 'self' http://127.0.0.1:8000 https://proj.supabase.co" in csp
    fixed = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET)
    async with asgi_client(fixed) as client:
        config = (await client.get("/config.json")).json()
        assert config["mode"] == "token"
        # The page's one list of formats (hint, picker, early check) is the API's list of types.
        formats = config["uploads"]["formats"]
        assert [t for f in formats for t in f["types"]] == config["uploads"]["accepted_types"]
        assert [f["name"] for f in formats] == ["WAV", "MP3", "M4A", "AAC", "OGG", "Opus", "WebM", "FLAC"]
        assert all(e.startswith(".") for f in formats for e in f["extensions"])


async def test_config_serves_the_stage_order_of_the_domain(tmp_path: Path) -> None:
    """The page ranks a language's stages by this list instead of a table of its own."""
    async with asgi_client(Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET)) as client:
        stages = (await client.get("/config.json")).json()["stages"]
    assert stages["order"] == [s.value for s in STAGE_ORDER]
    assert set(stages["terminal"]) == {s.value for s in TERMINAL}
    script = (STATIC_DIR / "js" / "job-view.js").read_text()
    assert "stt: 1" not in script and "'translating'" not in script


# -- local sign-in -----------------------------------------------------------------------------------

def test_local_auth_only_with_the_generated_secret(tmp_path: Path) -> None:
    assert Settings.from_env({"DATA_DIR": str(tmp_path)}).local_auth is True
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "SUPABASE_JWT_SECRET": "x" * 40}).local_auth is False
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "SUPABASE_URL": "https://p.supabase.co"}).local_auth is False
    parsed = Settings.from_env({"DATA_DIR": str(tmp_path), "CORS_ORIGINS": " https://a.example/, http://b.test:3000 ",
                                "SUPABASE_ANON_KEY": "anon"})
    assert parsed.cors_origins == ("https://a.example", "http://b.test:3000")
    assert parsed.supabase_anon_key == "anon"


async def test_local_token_for_a_user_name(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret="local-" * 8, local_auth=True)
    async with asgi_client(settings) as client:
        answer = await client.post("/local/token", json={"user": "uma.k"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user"] == {"id": "uma.k", "name": "uma.k"} and body["token_type"] == "bearer"
        assert verify(body["access_token"], settings.jwt_secret, None).id == "uma.k"
        assert answer.headers["cache-control"] == "no-store"
        for bad in ("", "   ", "x" * 65, "tab\tname", "nul\u0000", "bell\u0007"):
            refused = await client.post("/local/token", json={"user": bad})
            assert refused.status_code == 422, bad
            assert refused.json()["error"]["code"] in ("invalid_field", "missing_field")
            message = refused.json()["error"]["message"]
            assert message.startswith("'user' must") and not re.search(r"regex|\^|\[|`", message), message
        # DNS rebinding: a page from another name that resolves here must not get a token.
        rebound = await client.post("/local/token", json={"user": "uma"}, headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 403
        assert rebound.json()["error"]["code"] == "local_only"
    async with asgi_client(settings, client=("203.0.113.9", 40000)) as remote:
        refused = await remote.post("/local/token", json={"user": "uma"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "local_only"


async def test_local_sign_in_takes_any_reasonable_name(tmp_path: Path) -> None:
    """Display names as people write them map to safe, stable user ids; the name itself is shown back."""
    settings = Settings(data_dir=tmp_path, jwt_secret="local-" * 8, local_auth=True)
    safe_id = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
    async with asgi_client(settings) as client:
        ids = {}
        for name in ("Marta Test", "José", "Jose\u0301", "  José ", "../x", "a/b", ".hidden", "李小龙",
                     "O'Brien-Smith, Jr.", "Ñ" * 64, "🎙️ podcast"):
            answer = await client.post("/local/token", json={"user": name})
            assert answer.status_code == 200, (name, answer.text)
            user = answer.json()["user"]
            assert safe_id.match(user["id"]) and "/" not in user["id"], user
            assert verify(answer.json()["access_token"], settings.jwt_secret, None).id == user["id"]
            ids[name] = user
        assert ids["Marta Test"]["name"] == "Marta Test"
        # One person however the accent was typed (composed or not) and with stray spaces.
        assert ids["José"] == ids["Jose\u0301"] == ids["  José "] == {"id": ids["José"]["id"], "name": "José"}
        assert ids["José"]["id"].startswith("jose-")
        again = (await client.post("/local/token", json={"user": "Marta Test"})).json()["user"]
        assert again == ids["Marta Test"]  # stable
        assert len({u["id"] for u in ids.values()}) == len(ids) - 2


@pytest.mark.parametrize("overrides", [
    {"supabase_url": "https://proj.supabase.co", "supabase_anon_key": "anon"},  # cloud mode
    {"jwt_secret": JWT_SECRET},  # a configured secret (legacy HS256 project, the tests' own)
])
async def test_no_local_token_endpoint_outside_local_mode(tmp_path: Path, overrides: dict[str, Any]) -> None:
    settings = Settings(data_dir=tmp_path, **overrides)
    assert settings.local_auth is False
    async with asgi_client(settings) as client:
        response = await client.post("/local/token", json={"user": "uma"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


# -- CORS --------------------------------------------------------------------------------------------

def preflight(method: str, origin: str, headers: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_cors_preflights_for_configured_origins_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET, cors_origins=(FRONTEND,))
    async with asgi_client(settings) as client:
        api = await client.options("/v1/uploads", headers=preflight("POST", FRONTEND, "authorization,content-type"))
        assert api.status_code == 204
        assert api.headers["access-control-allow-origin"] == FRONTEND
        assert "POST" in api.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in api.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "x-client-info", "apikey", "content-type", "x-upsert", "cache-control"} <= allowed
        assert "access-control-allow-credentials" not in api.headers
        assert "Origin" in api.headers["vary"]

        upload = await client.options("/storage/v1/object/upload/sign/dubbing/u/uploads/x/voice.wav",
                                      headers=preflight("PUT", FRONTEND, "content-type,x-upsert"))
        assert upload.status_code == 204
        assert upload.headers["access-control-allow-origin"] == FRONTEND
        assert "PUT" in upload.headers["access-control-allow-methods"]
        download = await client.options("/storage/v1/object/sign/dubbing/u/jobs/x/es/master.mp3",
                                        headers=preflight("GET", FRONTEND, "range"))
        assert download.status_code == 204

        stranger = await client.options("/v1/uploads",
                                        headers=preflight("POST", "https://evil.example", "authorization"))
        assert stranger.status_code == 403
        assert stranger.json()["error"]["code"] == "cors_origin_not_allowed"
        assert "access-control-allow-origin" not in stranger.headers

        # Actual requests: the allowed origin can read the answer (an error included), others cannot.
        unauthorized = await client.get("/v1/jobs", headers={"Origin": FRONTEND})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == FRONTEND
        assert "x-request-id" in unauthorized.headers["access-control-expose-headers"]
        config = await client.get("/config.json", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in config.headers
        # The page itself and local sign-in are not covered: they are for this origin only.
        page = await client.get("/", headers={"Origin": FRONTEND})
        assert "access-control-allow-origin" not in page.headers


async def test_cors_is_off_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret=JWT_SECRET)
    assert settings.cors_origins == ()
    async with asgi_client(settings) as client:
        response = await client.options("/v1/uploads", headers=preflight("POST", FRONTEND, "authorization"))
        assert "access-control-allow-origin" not in response.headers
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


# -- the languages list ------------------------------------------------------------------------------

@dataclass
class FakeTranscriber:
    model: str
    name: str = "fake-stt"
    accepts_url: bool = False

    @property
    def detects(self) -> bool:
        return not self.model.endswith(".en")

    def understands(self, language: str) -> bool:
        return self.detects or language in ("en", "auto")


@dataclass
class FakeTranslator:
    installed: set[tuple[str, str]] = field(default_factory=set)
    name: str = "fake-mt"

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.installed)

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self.installed if self.installed else source != target

    def pivot_for(self, source: str, target: str) -> str | None:
        return None


@dataclass
class FakeSynthesizer:
    voices: set[str]
    name: str = "fake-tts"

    def supports(self, language: str) -> bool:
        return language in self.voices


PAIRS = {("en", "es"), ("en", "ca"), ("en", "eo"), ("es", "en"), ("es", "fr"), ("fr", "es")}


@pytest.fixture
def engines_service(settings: Settings) -> Any:
    """The app with these engines (the real start-up path), its supervisor off."""
    def start(engines: Engines) -> Any:
        return running_service(settings, pipeline=True, run_supervisor=False, engines=lambda executor: engines)
    return start


async def test_languages_follow_the_engines_and_the_api_accepts_them(engines_service: Any) -> None:
    english_only = Engines(FakeTranscriber("tiny.en"), FakeTranslator(PAIRS), FakeSynthesizer({"es", "ca", "en", "fr"}))
    async with engines_service(english_only) as svc:
        assert (await svc.client.get("/v1/languages")).status_code == 401
        listed = (await svc.client.get("/v1/languages", headers=svc.auth("ana"))).json()
        # eo has no voice; es and fr are not understood by an English-only model; no detection.
        assert listed == {"sources": [{"code": "en", "targets": ["ca", "es"], "routes": [
                              {"target": "ca", "pivot": None, "quality": "direct translation"},
                              {"target": "es", "pivot": None, "quality": "direct translation"}]}],
                          "detect": {"available": False, "targets": []}, "offline_voices": None}
        accepted = await svc.create_job("ana", ["ca", "es"])
        assert accepted.status_code == 201, accepted.text
        refused = await svc.create_job("ana", ["eo"])
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unsupported_language"

    multilingual = Engines(FakeTranscriber("small"), FakeTranslator(PAIRS), FakeSynthesizer({"es", "ca", "en", "fr"}))
    async with engines_service(multilingual) as svc:
        listed = (await svc.client.get("/v1/languages", headers=svc.auth("ana"))).json()
        assert [(s["code"], s["targets"]) for s in listed["sources"]] == [
            ("en", ["ca", "es"]), ("es", ["en", "fr"]), ("fr", ["es"])]
        assert listed["detect"] == {"available": True, "targets": ["ca", "en", "es", "fr"]}


async def test_languages_say_where_the_offline_voice_choice_matters(engines_service: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from service.engines.offline.espeak import EspeakSynthesizer
    from service.engines.offline.kokoro import KokoroSynthesizer
    from service.engines.offline.voice_choice import OfflineVoice, OfflineVoices

    pairs = {("en", "es"), ("en", "eo"), ("es", "en")}
    with ThreadPoolExecutor(1) as executor:
        for default, by_default in ((OfflineVoice.AUTO, ["es"]), (OfflineVoice.ESPEAK, [])):
            voices = OfflineVoices(EspeakSynthesizer(), KokoroSynthesizer(executor, "unused"), default)
            engines = Engines(FakeTranscriber("small"), FakeTranslator(pairs), voices)
            async with engines_service(engines) as svc:
                listed = (await svc.client.get("/v1/languages", headers=svc.auth("ana"))).json()
                # Kokoro speaks es and en, not eo; `auto` gives it Spanish only (English is clear with espeak-ng).
                assert listed["offline_voices"] == {"natural": ["en", "es"], "natural_by_default": by_default}


async def test_languages_with_an_any_pair_translator(engines_service: Any) -> None:
    cloud_like = Engines(FakeTranscriber("nova-3"), FakeTranslator(), FakeSynthesizer({"de", "es"}))
    async with engines_service(cloud_like) as svc:
        listed = (await svc.client.get("/v1/languages", headers=svc.auth("ana"))).json()
        by_code = {s["code"]: s["targets"] for s in listed["sources"]}
        assert by_code["en"] == ["de", "es"]
        assert by_code["es"] == ["de"]
        assert by_code["ja"] == ["de", "es"]
        assert listed["detect"] == {"available": True, "targets": ["de", "es"]}


async def test_languages_unavailable_without_engines(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        response = await svc.client.get("/v1/languages", headers=svc.auth("ana"))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "engines_unavailable"


# -- the job's inputs and the signed progress stream -------------------------------------------------

@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with running_service(settings, run_supervisor=False) as svc:
        yield svc


async def test_inputs_give_signed_urls_of_the_originals(service: Service) -> None:
    voice_bytes, bed_bytes = wav_bytes(1.0), wav_bytes(1.5, freq=220)
    voice = await service.upload("uma", voice_bytes)
    bed = await service.upload("uma", bed_bytes, kind="background", filename="bed.wav")
    job = (await service.client.post("/v1/jobs", headers=service.auth("uma"), json={
        "voice_object": voice, "background_object": bed, "source_language": "en",
        "target_languages": ["es"]})).json()
    listed = await service.client.get(f"/v1/jobs/{job['id']}/inputs", headers=service.auth("uma"))
    assert listed.status_code == 200
    inputs = {i["kind"]: i for i in listed.json()["inputs"]}
    assert set(inputs) == {"voice", "background"}
    assert (await service.client.get(inputs["voice"]["download_url"])).content == voice_bytes
    assert (await service.client.get(inputs["background"]["download_url"])).content == bed_bytes
    assert inputs["voice"]["download_expires_at"]
    other = await service.client.get(f"/v1/jobs/{job['id']}/inputs", headers=service.auth("eve"))
    assert other.status_code == 404
    assert (await service.client.get(f"/v1/jobs/{uuid.uuid4()}/inputs", headers=service.auth("uma"))).status_code == 404


async def test_signed_stream_resumes_and_refuses_bad_tickets(service: Service) -> None:
    job_id = (await service.create_job("uma", ["es"])).json()["id"]
    other_id = (await service.create_job("uma", ["ca"])).json()["id"]
    not_hers = await service.client.post(f"/v1/jobs/{job_id}/events/ticket", headers=service.auth("eve"))
    assert not_hers.status_code == 404
    issued = await service.client.post(f"/v1/jobs/{job_id}/events/ticket", headers=service.auth("uma"))
    assert issued.status_code == 200
    ticket = issued.json()
    assert ticket["url"] == f"{service.base_url}{ticket['path']}"
    assert ticket["expires_at"] <= time.time() + tickets.TTL_SECONDS + 1
    token = ticket["path"].split("ticket=")[1]

    async with service.client.stream("GET", ticket["path"]) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        first = await read_events(stream, limit=1)
    assert [(e.id, e.event, e.data["stage"]) for e in first] == [(1, "stage", "queued")]

    await service.client.post(f"/v1/jobs/{job_id}/cancel", headers=service.auth("uma"))
    # A reconnect sends Last-Event-ID: only what came after it, and the stream ends after `done`.
    async with service.client.stream("GET", ticket["path"], headers={"Last-Event-ID": "1"}) as stream:
        rest = await read_events(stream)
    assert [(e.id, e.event) for e in rest] == [(2, "stage"), (3, "done")]
    assert rest[0].data["stage"] == "cancelled"

    async def refused(path: str) -> str:
        response = await service.client.get(path)
        assert response.status_code == 401, response.text
        return str(response.json()["error"]["code"])

    assert await refused(f"/v1/jobs/{other_id}/events/stream?ticket={token}") == "invalid_ticket"
    assert await refused(f"/v1/jobs/{job_id}/events/stream") == "missing_ticket"
    forged = jwt.encode({"sub": "uma", "job": job_id, "scope": "events", "exp": int(time.time()) + 60},
                        JWT_SECRET, algorithm="HS256")
    assert await refused(f"/v1/jobs/{job_id}/events/stream?ticket={forged}") == "invalid_ticket"
    expired = tickets.issue(service.settings, "uma", uuid.UUID(job_id), not_after=time.time() - 5).token
    assert await refused(f"/v1/jobs/{job_id}/events/stream?ticket={expired}") == "ticket_expired"
    # A ticket is not an access token.
    as_bearer = await service.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401


async def test_a_ticket_never_outlives_the_access_token(service: Service) -> None:
    job_id = (await service.create_job("uma", ["es"])).json()["id"]
    from service.routes.auth import mint

    short = mint(JWT_SECRET, "uma", ttl_seconds=90)
    ticket = (await service.client.post(f"/v1/jobs/{job_id}/events/ticket",
                                        headers={"Authorization": f"Bearer {short}"})).json()
    assert ticket["expires_at"] <= time.time() + 91

