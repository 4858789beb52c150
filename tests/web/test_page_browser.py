"""The web page in a real browser (the Chromium Debian packages, driven by Playwright) against the real
`dubbing serve` process, as a person uses it: sign in, upload, watch, listen, download, cancel, reload.

Every wait is on something the page shows (text, a progress bar's value, the audio element's state),
with a timeout. Browser traffic goes through a small TCP proxy so a test can cut the progress stream's
connection and see the browser's own reconnect, `Last-Event-ID` header and all.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.routes.auth import mint
from service.sample import Sample, make_sample, varied_lines
from tests.support import free_port, fresh_database, kokoro_dir, served

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
REPO = Path(__file__).resolve().parents[2]
DUB_TIMEOUT_MS = 120_000

if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium; `just test` does)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright (Python) is not installed")
expect = playwright_api.expect

pytestmark = pytest.mark.asyncio(loop_scope="module")


# -- a proxy in front of the service, whose connections a test can cut ------------------------------

@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


@dataclass(eq=False)
class Piped:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    requests: list[Seen] = field(default_factory=list)

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()


class CuttingProxy:
    def __init__(self) -> None:
        self.target_port = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections: set[Piped] = set()
        self.requests: list[Seen] = []
        self.arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for piped in list(self.connections):
            piped.abort()
        if self.server:
            self.server.close()

    def cut(self, matches: Callable[[Seen], bool]) -> int:
        """Drop (RST) every connection whose latest request matches; returns how many."""
        dropped = [p for p in self.connections if p.requests and matches(p.requests[-1])]
        for piped in dropped:
            piped.abort()
        return len(dropped)

    async def wait_for(self, matches: Callable[[Seen], bool], timeout: float = 30) -> Seen:
        async with asyncio.timeout(timeout), self.arrived:
            while True:
                found = [r for r in self.requests if matches(r)]
                if found:
                    return found[-1]
                await self.arrived.wait()

    async def _record(self, seen: Seen, piped: Piped) -> None:
        piped.requests.append(seen)
        self.requests.append(seen)
        async with self.arrived:
            self.arrived.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        piped = Piped(writer, up_writer)
        self.connections.add(piped)

        async def browser_to_service() -> None:
            buffer, body_left = b"", 0
            while chunk := await reader.read(65536):
                up_writer.write(chunk)
                await up_writer.drain()
                buffer += chunk
                while buffer:  # follow request heads (and skip bodies) to know what each connection carries
                    if body_left:
                        taken = min(body_left, len(buffer))
                        buffer, body_left = buffer[taken:], body_left - taken
                        continue
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4:]
                    line, *lines = head.split("\r\n")
                    method, target, _ = [*line.split(" "), "", ""][:3]
                    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
                    body_left = int(headers.get("content-length", "0") or 0)
                    await self._record(Seen(method, target, headers), piped)

        async def service_to_browser() -> None:
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()

        directions = [asyncio.ensure_future(browser_to_service()), asyncio.ensure_future(service_to_browser())]
        try:
            # When either side closes, close the other: an open stream must not outlive its browser.
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.connections.discard(piped)
            piped.abort()
            for direction in directions:
                direction.cancel()
            await asyncio.gather(*directions, return_exceptions=True)


# -- the service, the samples, the browser ---------------------------------------------------------

@dataclass
class Site:
    base_url: str
    proxy: CuttingProxy
    data_dir: Path
    sample: Sample
    long_sample: Sample
    text_file: Path
    log: Callable[[], str]

    def auth(self, user: str) -> dict[str, str]:
        secret = (self.data_dir / "jwt_secret").read_text().strip()
        return {"Authorization": f"Bearer {mint(secret, user)}"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    root = tmp_path_factory.mktemp("web")
    sample = make_sample(root / "sample")
    # About a minute of speech: long enough to act while it is being dubbed.
    long_sample = make_sample(root / "long", varied_lines(16))
    text_file = root / "notes.txt"
    text_file.write_text("These are notes, not a recording.\n")
    proxy = CuttingProxy()
    await proxy.start()
    async with fresh_database(admin_url, template_db) as database_url:
        # Local mode, as `just serve` runs: the secret is generated into DATA_DIR, so local sign-in exists.
        # The offline voices as a user has them (OFFLINE_VOICE=auto: Kokoro for es/ca unless a job asks for the
        # fast voice, which the dubbing tests do to keep their speed).
        async with served(root / "data", database_url, SUPABASE_JWT_SECRET="", PUBLIC_BASE_URL=proxy.url,
                          OFFLINE_VOICE="auto", KOKORO_MODEL_DIR=kokoro_dir()) as svc:
            proxy.target_port = urlsplit(svc.base_url).port or 0
            try:
                yield Site(proxy.url, proxy, root / "data", sample, long_sample, text_file, svc.logs)
            finally:
                await proxy.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        await launched.close()


@dataclass
class Console:
    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """CSP or Trusted Types refusals, duplicate events, uncaught errors."""
        words = ("Content Security Policy", "Trusted Type", "duplicate event", "Uncaught")
        return self.errors + [m for m in self.messages if any(w in m for w in words)]


def watch(page: Any) -> Console:
    console = Console()
    page.on("console", lambda message: console.messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.errors.append(f"pageerror: {error}"))
    return console


@pytest_asyncio.fixture(loop_scope="module")
async def desktop(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
    yield context
    await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def phone(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    yield context
    await context.close()


async def sign_in(page: Any, site: Site, name: str) -> None:
    await page.goto(f"{site.base_url}/")
    await expect(page.get_by_role("heading", name="Dub your recordings into other languages")).to_be_visible()
    await page.get_by_label("Your name").fill(name)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="New dub")).to_be_visible()
    await expect(page.locator("#session-user")).to_have_text(name)


async def pick_language(page: Any, code: str) -> None:
    await page.locator(f"label[for=target-{code}]").click()
    await expect(page.locator(f"#target-{code}")).to_be_checked()


async def fast_voice(page: Any) -> None:
    """Choose the fast offline voice (espeak-ng): the site's OFFLINE_VOICE=auto gives es/ca the natural one."""
    await page.locator("label[for=offline-voice-fast]").click()
    await expect(page.locator("#offline-voice-fast")).to_be_checked()


def language(page: Any, code: str) -> Any:
    return page.locator(f".lang[data-lang={code}]")


async def dub_on_a_slow_upload(context: Any, page: Any, bytes_per_second: int) -> tuple[Any, Any]:
    """Press "Dub it" with the browser's upload throttled; returns (the CDP session, to lift the throttle, and
    the voice's progress bar, once it is part-way)."""
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": bytes_per_second})
    await page.get_by_role("button", name="Dub it").click()
    bar = page.locator("#upload-list [data-kind=voice] progress")
    await page.wait_for_function("b => b && b.value > 0 && b.value < 100", arg=await bar.element_handle(),
                                 timeout=20_000)
    return cdp, bar


async def in_view(page: Any, element: Any) -> bool:
    """Wholly on screen, and what shows at its top edge is itself (not the sticky top bar over it). A control drawn
    by its label (a file input, a language chip) counts as that label."""
    return bool(await element.evaluate("""el => {
        const shown = el.closest('.drop, .chip') || el, box = shown.getBoundingClientRect();
        if (box.width <= 0 || box.top < -1 || box.bottom > window.innerHeight + 1) return false;
        const hit = document.elementFromPoint(box.left + box.width / 2, box.top + 2);
        return hit !== null && (shown.contains(hit) || hit.contains(shown)); }"""))


async def no_sideways_scroll(page: Any) -> tuple[int, int]:
    return tuple(await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"))  # type: ignore[return-value]


# -- the tests -----------------------------------------------------------------------------------------

async def test_dub_two_languages_listen_and_download(site: Site, desktop: Any, tmp_path: Path) -> None:
    page = await desktop.new_page()
    console = watch(page)
    await sign_in(page, site, "uma")
    await expect(page.locator("#source")).to_have_value("en")

    await page.locator("#voice-input").set_input_files(site.sample.voice)
    await page.locator("#background-input").set_input_files(site.sample.background)
    await expect(page.locator("#voice-file")).to_contain_text("voice.wav")
    await expect(page.locator("#background-file")).to_contain_text("background.wav")
    await pick_language(page, "es")
    await pick_language(page, "ca")
    await fast_voice(page)
    await page.get_by_role("button", name="Dub it").click()
    # While it works, a card shows a rough time remaining beside its percentage (gone once it is complete).
    await expect(language(page, "es").locator(".pct")).to_contain_text(re.compile("s left|almost done"),
                                                                        timeout=DUB_TIMEOUT_MS)

    # Both uploads reach 100 % in their own bars, then the job page follows each language to the end.
    await expect(page.locator("#view-job")).to_be_visible()
    await expect(page.get_by_role("heading", name="voice.wav")).to_be_visible()
    await expect(page.locator(".job-head .meta")).to_contain_text("English → Catalan & Spanish")
    for code in ("es", "ca"):
        await expect(language(page, code).locator(".stage")).to_have_text("Complete", timeout=DUB_TIMEOUT_MS)
        await expect(language(page, code).locator("progress")).to_have_attribute("value", "100")
        await expect(language(page, code).locator(".pct")).to_have_text("100 %")
    await expect(page.locator(".job-head .status-chip")).to_have_text("Complete")
    await expect(page.locator("#cancel-job")).to_be_hidden()

    # Listen: the dubbed web master plays, and its WebVTT captions become active and show beside it.
    spanish = language(page, "es")
    await expect(spanish.locator(".player")).to_be_visible()
    await expect(spanish.locator(".figures")).to_contain_text("Speech overlap")
    await expect(spanish.locator(".figures")).to_contain_text("LUFS")
    await spanish.get_by_role("button", name="Play").click()
    dubbed = spanish.locator("audio.dubbed")
    await page.wait_for_function("a => a.currentTime > 1.0 && !a.paused", arg=await dubbed.element_handle(),
                                 timeout=20_000)
    await page.wait_for_function(
        "a => a.textTracks.length > 0 && a.textTracks[0].activeCues && a.textTracks[0].activeCues.length > 0",
        arg=await dubbed.element_handle(), timeout=20_000)
    cue = await dubbed.evaluate("a => a.textTracks[0].activeCues[0].text")
    assert cue.strip()
    await expect(spanish.locator(".caption")).to_have_text(cue.strip())

    # A/B: the original voice takes over at the same position.
    await spanish.get_by_role("radio", name="Original").click()
    original = spanish.locator("audio.original")
    await page.wait_for_function("a => !a.paused && a.currentTime > 1.0", arg=await original.element_handle(),
                                 timeout=20_000)
    positions = await spanish.evaluate(
        "el => [el.querySelector('audio.dubbed').currentTime, el.querySelector('audio.original').currentTime,"
        " el.querySelector('audio.dubbed').paused]")
    assert positions[2] is True and abs(positions[0] - positions[1]) < 1.5, positions
    await spanish.get_by_role("radio", name="Dubbed · Spanish").click()
    await page.wait_for_function(
        "a => !a.paused && a.textTracks[0].activeCues.length > 0", arg=await dubbed.element_handle(), timeout=20_000)
    await spanish.get_by_role("button", name="Pause").click()
    await expect(spanish.locator(".caption")).not_to_have_text("")

    # The picture for the README: the finished dub, paused on a line with its caption showing.
    await page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "page.png"
    await page.screenshot(path=shot, full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT"):  # `UPDATE_SCREENSHOT=1 just test tests/web` refreshes the README's
        shutil.copyfile(shot, REPO / "docs" / "screenshot.png")

    # Download the manifest, through a link whose signed URL has expired meanwhile: the page gets a new one.
    link = spanish.locator("a.download[data-kind=manifest]")
    stale = await link.get_attribute("href")
    await link.evaluate("a => { a.dataset.expiresAt = new Date(Date.now() - 1000).toISOString(); }")
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    manifest = json.loads(Path(await download.path()).read_text())
    assert manifest["target_language"] == "es" and manifest["segments"]
    assert download.suggested_filename == "voice_es_manifest.json"
    assert await link.get_attribute("href") != stale

    # Every download is named after the input and its language; none collides with another's.
    names = await page.locator("a.download").evaluate_all("links => links.map(a => a.getAttribute('download'))")
    assert len(names) == len(set(names)) >= 13, names
    assert {"voice_es.wav", "voice_ca.wav", "voice_es_voice.wav", "voice_es.vtt", "voice_transcript.json"} <= set(names)
    async with page.expect_download() as info:
        await spanish.locator("a.download[data-kind=master_web]").click()
    master = await info.value
    assert re.fullmatch(r"voice_es\.(mp3|opus)", master.suggested_filename), master.suggested_filename
    href = await spanish.locator("a.download[data-kind=master_wav]").get_attribute("href")
    async with httpx.AsyncClient() as client:
        head = await client.get(href, headers={"Range": "bytes=0-1"})
    assert head.headers["content-disposition"].startswith('attachment; filename="voice_es.wav"')

    # My dubs lists it, newest first, with its languages.
    await page.get_by_role("link", name="My dubs").click()
    row = page.locator("#jobs-list .job-row").first
    await expect(row.locator(".job-name")).to_have_text("voice.wav")
    await expect(row.locator(".job-sub")).to_contain_text("English → Catalan & Spanish")
    await expect(row.locator(".status-chip")).to_have_text("Complete")
    await expect(row.locator(".lang-chip.stage-complete")).to_have_count(2)
    assert console.problems() == [], console.problems()


async def test_a_video_is_dubbed_and_plays_as_video_with_captions(site: Site, desktop: Any, tmp_path: Path) -> None:
    """Issue 20: a WebM (test pattern, LibriVox speech over a bed) picked as the voice becomes a media job; the
    result plays as video with the dubbed captions, and the original video takes over at the same position."""
    from tests.support.media import soundtrack, write_media
    from tests.support.speech import available

    if not available():
        pytest.skip("needs pocketsphinx-testdata (LibriVox speech)")
    clip = tmp_path / "talk.webm"
    write_media(soundtrack(speech_over_bed_db=6.0), clip, "webm")
    page = await desktop.new_page()
    console = watch(page)
    await sign_in(page, site, "vic")
    await page.locator("#voice-input").set_input_files(clip)
    await expect(page.locator("#voice-file")).to_contain_text("talk.webm")
    await pick_language(page, "es")
    await fast_voice(page)
    await page.get_by_role("button", name="Dub it").click()
    spanish = language(page, "es")
    await expect(spanish.locator(".stage")).to_have_text("Complete", timeout=DUB_TIMEOUT_MS)

    dubbed = spanish.locator("video.dubbed")
    await expect(dubbed).to_be_visible()
    await expect(spanish.locator("video.original")).to_be_hidden()
    await spanish.get_by_role("button", name="Play").click()
    await page.wait_for_function("v => v.currentTime > 1.0 && !v.paused && v.videoWidth > 0",
                                 arg=await dubbed.element_handle(), timeout=20_000)
    await page.wait_for_function(
        "v => v.textTracks.length > 0 && v.textTracks[0].activeCues && v.textTracks[0].activeCues.length > 0",
        arg=await dubbed.element_handle(), timeout=20_000)
    await spanish.get_by_role("radio", name="Original").click()
    original = spanish.locator("video.original")
    await expect(original).to_be_visible()
    await page.wait_for_function("v => !v.paused && v.currentTime > 1.0", arg=await original.element_handle(),
                                 timeout=20_000)
    positions = await spanish.evaluate(
        "el => [el.querySelector('video.dubbed').currentTime, el.querySelector('video.original').currentTime]")
    assert abs(positions[0] - positions[1]) < 1.5, positions
    await spanish.get_by_role("button", name="Pause").click()
    kinds = set(await page.locator("a.download").evaluate_all("links => links.map(a => a.dataset.kind)"))
    assert {"video", "isolated_voice", "background_stem"} <= kinds, kinds
    assert console.problems() == [], console.problems()


async def test_a_dropped_file_the_api_refuses_is_explained_on_a_phone(site: Site, phone: Any, tmp_path: Path) -> None:
    page = await phone.new_page()
    console = watch(page)
    await sign_in(page, site, "pat")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    await page.get_by_role("button", name="Dub it").click()
    await expect(page.locator("#voice-error")).to_have_text("Choose the voice recording to dub.")
    await expect(page.locator("#targets-error")).to_have_text("Pick at least one language to dub into.")

    # Drag and drop a file that is not audio onto the voice field.
    dropped = await page.evaluate_handle(
        "([name, text]) => { const dt = new DataTransfer(); dt.items.add(new File([text], name, {type: 'text/plain'}));"
        " return dt; }", [site.text_file.name, site.text_file.read_text()])
    await page.dispatch_event("#voice-drop", "dragenter", {"dataTransfer": dropped})
    await expect(page.locator("#voice-drop")).to_have_class(re.compile(r"\bdragging\b"))
    await page.dispatch_event("#voice-drop", "drop", {"dataTransfer": dropped})
    await expect(page.locator("#voice-file")).to_contain_text("notes.txt")
    assert await page.locator("#voice-input").evaluate("i => i.files.length && i.files[0].name") == "notes.txt"
    # Refused as soon as it is dropped, before anything is uploaded, in the words the hint uses.
    error = page.locator("#voice-error")
    await expect(error).to_contain_text("notes.txt is a text/plain file. Choose a WAV, MP3, M4A, AAC, OGG, Opus, WebM")
    await pick_language(page, "es")
    await page.get_by_role("button", name="Dub it").click()
    await expect(error).to_contain_text("notes.txt is a text/plain file")
    await expect(page.locator("#voice-input")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#targets-error")).to_be_hidden()
    await expect(page.get_by_role("button", name="Dub it")).to_be_enabled()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.screenshot(path=tmp_path / "phone-error.png", full_page=True)
    assert console.problems() == [], console.problems()


async def test_a_phone_signs_in_by_name_checks_files_early_and_never_scrolls_sideways(site: Site, phone: Any) -> None:
    page = await phone.new_page()
    console = watch(page)
    await sign_in(page, site, "José Núñez")  # an ordinary name, accents and a space

    # Each bad file is refused the moment it is picked, before any upload, with the formats the hint lists.
    hint = await page.locator("#voice-hint").text_content()
    formats, videos = hint.split("under it. ")[1].split(" Or a video: ")
    formats = formats.rstrip(".")
    assert formats == "WAV, MP3, M4A, AAC, OGG, Opus, WebM, or FLAC", hint
    assert videos == "MP4, MOV, WebM, or MKV.", hint  # a video is a media job (issue 20)
    uploads_before = len([r for r in site.proxy.requests if r.path == "/v1/uploads"])
    error = page.locator("#voice-error")
    await page.locator("#voice-input").set_input_files(
        {"name": "clip.avi", "mimeType": "video/x-msvideo", "buffer": site.sample.voice.read_bytes()[:4096]})
    await expect(error).to_have_text(f"clip.avi is a video/x-msvideo file. Choose a {formats} file.")
    await page.locator("#voice-input").set_input_files(
        {"name": "notes.mp3", "mimeType": "audio/mpeg", "buffer": site.text_file.read_bytes() * 50})
    await expect(error).to_contain_text("notes.mp3 does not play as audio")
    await expect(page.locator("#voice-input")).to_have_attribute("aria-invalid", "true")
    await pick_language(page, "es")
    await page.get_by_role("button", name="Dub it").click()
    await expect(error).to_contain_text("notes.mp3 does not play as audio")
    assert len([r for r in site.proxy.requests if r.path == "/v1/uploads"]) == uploads_before

    # A slow upload on a phone: its bar and Cancel are on screen.
    await page.locator("#voice-input").set_input_files(site.long_sample.voice)
    await expect(error).to_be_hidden()
    await expect(page.locator("#voice-file")).to_contain_text(" s")  # its length, read in the browser
    cdp, bar = await dub_on_a_slow_upload(phone, page, 300_000)
    cancel = page.get_by_role("button", name="Cancel upload")
    assert await in_view(page, bar) and await in_view(page, cancel)
    await cancel.click()
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})

    # A short dub, then every panel open: nothing is wider than the phone.
    await page.locator("#voice-input").set_input_files(site.sample.voice)
    await page.get_by_role("button", name="Dub it").click()
    spanish = language(page, "es")
    await expect(spanish.locator(".stage")).to_have_text("Complete", timeout=DUB_TIMEOUT_MS)
    await expect(spanish.locator(".player")).to_be_visible()
    await expect(page.locator(".transcripts")).to_be_visible()
    for details in await page.locator("details").all():
        await details.locator("summary").click()
    await expect(spanish.locator("details.segments table")).to_be_visible()
    width, viewport = await no_sideways_scroll(page)
    assert width <= viewport == PHONE["width"], (width, viewport)
    table = await spanish.locator(".table-wrap").bounding_box()
    assert table["x"] >= 0 and table["x"] + table["width"] <= PHONE["width"], table
    # The whole table fits, its Speed column included: nothing to scroll even inside its own box.
    fits = await spanish.locator(".table-wrap").evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert fits[0] <= fits[1], fits
    await expect(spanish.locator("details.segments th").last).to_be_visible()  # Speed
    await focus_stays_visible(page)
    assert console.problems() == [], console.problems()


async def focus_stays_visible(page: Any, presses: int = 60) -> None:
    """Tab forwards then backwards through the page: each focused control is wholly on screen, below the bar."""
    await page.evaluate("window.scrollTo(0, 0)")
    await page.locator("#main").focus()
    hidden = []
    for key in ["Tab"] * presses + ["Shift+Tab"] * presses:
        await page.keyboard.press(key)
        focused = page.locator(":focus")
        if not await focused.count() or await focused.evaluate("el => el.closest('.topbar') !== null"):
            continue
        if not await in_view(page, focused):
            hidden.append((key, await focused.evaluate("el => el.outerHTML.slice(0, 80)")))
    assert hidden == [], hidden


async def test_focus_is_never_under_the_top_bar_on_a_desktop(site: Site, desktop: Any) -> None:
    page = await desktop.new_page()
    await sign_in(page, site, "Ana María")
    await page.locator("#voice-input").set_input_files(site.sample.voice)
    await pick_language(page, "es")
    await pick_language(page, "ca")
    await fast_voice(page)
    await page.get_by_role("button", name="Dub it").click()
    for code in ("es", "ca"):
        await expect(language(page, code).locator(".player")).to_be_visible(timeout=DUB_TIMEOUT_MS)
    await focus_stays_visible(page, presses=45)


async def test_cancel_an_upload_then_a_running_dub(site: Site, desktop: Any) -> None:
    page = await desktop.new_page()
    console = watch(page)
    await sign_in(page, site, "cal")
    await page.locator("#voice-input").set_input_files(site.long_sample.voice)
    await pick_language(page, "es")

    # A slow connection: the upload's bar moves, and "Cancel upload" stops it before any job exists.
    cdp, bar = await dub_on_a_slow_upload(desktop, page, 400_000)
    # The bars and the Cancel button are on screen, not below the fold.
    for element in (bar, page.get_by_role("button", name="Cancel upload")):
        assert await in_view(page, element), await element.bounding_box()
    await page.get_by_role("button", name="Cancel upload").click()
    await expect(page.locator("#form-error")).to_have_text("Upload cancelled. Nothing was sent for dubbing.")
    await expect(page.get_by_role("button", name="Dub it")).to_be_enabled()
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        assert (await client.get("/v1/jobs", headers=site.auth("cal"))).json()["jobs"] == []

    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    # This time the recording is marked as having its music mixed in (a media job: separated by the service),
    # and spoken by the fast offline voice, which the page offers for Spanish beside the natural one.
    await page.get_by_text("Music or sound effects are mixed into this recording").click()
    voice_choice = page.get_by_role("group", name="Voice")
    await expect(voice_choice).to_be_visible()
    await expect(page.locator("#offline-voice-natural")).to_be_checked()  # OFFLINE_VOICE=auto: Kokoro for es
    await page.locator("label[for=offline-voice-fast]").click()
    await page.get_by_role("button", name="Dub it").click()
    await expect(page.locator("#view-job")).to_be_visible()
    job_id = await page.locator("#view-job").get_attribute("data-job-id")
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        job = (await client.get(f"/v1/jobs/{job_id}", headers=site.auth("cal"))).json()
    assert job["offline_voice"] == "fast" and job["media"] is not None, job
    await page.get_by_role("button", name="Cancel dub").click()
    await expect(language(page, "es").locator(".stage")).to_have_text("Cancelled", timeout=20_000)
    await expect(page.locator(".job-head .status-chip")).to_have_text("Cancelled")
    await expect(page.get_by_role("button", name="Cancel dub")).to_be_hidden()
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        job = (await client.get(f"/v1/jobs/{job_id}", headers=site.auth("cal"))).json()
    assert job["status"] == "cancelled" and job["tasks"][0]["stage"] == "cancelled"
    assert console.problems() == [], console.problems()


async def test_progress_survives_a_dropped_connection_and_a_reload(site: Site, desktop: Any) -> None:
    page = await desktop.new_page()
    console = watch(page)
    await sign_in(page, site, "rey")
    await page.locator("#voice-input").set_input_files(site.long_sample.voice)
    await pick_language(page, "es")
    await fast_voice(page)
    await page.get_by_role("button", name="Dub it").click()
    spanish = language(page, "es")
    await expect(spanish.locator(".stage")).to_have_text("Transcribing", timeout=20_000)
    await expect(page.locator(".connection")).to_have_text("Live")
    job_id = await page.locator("#view-job").get_attribute("data-job-id")
    stream_path = f"/v1/jobs/{job_id}/events/stream"

    # The network drops the stream: the browser reconnects by itself and says where it was.
    assert site.proxy.cut(lambda r: r.path == stream_path) == 1
    seen_before = int(await page.evaluate(f"sessionStorage.getItem('dubbing.events.{job_id}')"))
    assert seen_before >= 2
    resumed = await site.proxy.wait_for(lambda r: r.path == stream_path and "last-event-id" in r.headers)
    assert int(resumed.headers["last-event-id"]) >= seen_before
    await expect(page.locator(".connection")).to_have_text("Live")

    # A reload mid-job: the tab's session and the last event seen survive, and the stream resumes there.
    assert await page.locator(".job-head .status-chip").text_content() != "Complete"
    await page.reload()
    await expect(page.locator("#view-job")).to_be_visible()
    after_reload = await site.proxy.wait_for(
        lambda r: r.path == stream_path and "last_event_id" in r.query and "last-event-id" not in r.headers)
    assert int(after_reload.query["last_event_id"][0]) >= seen_before
    await expect(spanish.locator(".stage")).to_have_text("Complete", timeout=DUB_TIMEOUT_MS)
    await expect(spanish.locator("progress")).to_have_attribute("value", "100")
    await expect(page.locator(".job-head .status-chip")).to_have_text("Complete")
    # No polling: the job itself was read once per page load; progress came only from the stream.
    reads = [r for r in site.proxy.requests if r.method == "GET" and r.path == f"/v1/jobs/{job_id}"]
    assert len(reads) == 2, [r.target for r in reads]
    assert console.problems() == [], console.problems()


async def test_my_dubs_pages_through_the_list(site: Site, desktop: Any) -> None:
    # Eleven dubs of one upload, made and cancelled through the API (the page shows ten at a time).
    created = []
    async with httpx.AsyncClient(base_url=site.base_url, timeout=30) as client:
        headers = site.auth("lee")
        upload = (await client.post("/v1/uploads", headers=headers, json={"files": [
            {"kind": "voice", "filename": "take.wav", "content_type": "audio/wav",
             "size_bytes": site.sample.voice.stat().st_size}]})).json()["uploads"][0]
        await client.put(upload["upload_url"], content=site.sample.voice.read_bytes(),
                         headers={"Content-Type": "audio/wav"})
        for _ in range(11):
            job = (await client.post("/v1/jobs", headers=headers, json={
                "voice_object": upload["object_path"], "source_language": "en", "target_languages": ["es"]})).json()
            await client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
            created.append(job["id"])
    page = await desktop.new_page()
    await sign_in(page, site, "lee")
    rows = page.locator("#jobs-list .job-row")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_have_attribute("data-job-id", created[-1])  # newest first
    await expect(rows.first.locator(".status-chip")).to_have_text("Cancelled")
    await page.get_by_role("button", name="Show older dubs").click()
    await expect(rows).to_have_count(11)
    await expect(rows.last).to_have_attribute("data-job-id", created[0])
    await expect(page.get_by_role("button", name="Show older dubs")).to_be_hidden()
    await expect(rows.first.locator(".job-name")).to_have_text("take.wav")
    await rows.last.locator("a.job-link").click()
    await expect(page.get_by_role("heading", name="take.wav")).to_be_visible()
    await expect(page.locator(".job-head .meta")).to_contain_text("English → Spanish")
    await expect(language(page, "es").locator(".stage")).to_have_text("Cancelled")
    assert await page.locator("#view-job").get_attribute("data-job-id") == created[0]


# -- cloud mode: Supabase Auth in the browser ---------------------------------------------------------

ANON_KEY = "anon-public-key-for-tests"
CLOUD_SECRET = "legacy-project-jwt-secret-" + "y" * 24


def fake_supabase_auth(url: str, calls: list[str]) -> Starlette:
    """GoTrue's password grant and logout, as supabase-js calls them."""

    async def token(request: Request) -> JSONResponse:
        calls.append(f"token {request.query_params.get('grant_type')} {request.headers.get('apikey')}")
        body = await request.json()
        if body.get("password") != "correct horse":
            return JSONResponse({"code": "invalid_credentials", "error_code": "invalid_credentials",
                                 "msg": "Invalid login credentials"}, status_code=400)
        user = {"id": "7f9c0a52-1111-4c1e-9a55-000000000001", "aud": "authenticated", "role": "authenticated",
                "email": body["email"], "app_metadata": {"provider": "email"}, "user_metadata": {},
                "created_at": "2026-01-01T00:00:00Z"}
        access = mint(CLOUD_SECRET, user["id"], 3600, f"{url}/auth/v1", email=body["email"])
        return JSONResponse({"access_token": access, "token_type": "bearer", "expires_in": 3600,
                             "expires_at": int(time.time()) + 3600,
                             "refresh_token": "refresh-1", "user": user})

    async def logout(request: Request) -> Response:
        calls.append("logout")
        return Response(status_code=204)

    return Starlette(routes=[Route("/auth/v1/token", token, methods=["POST"]),
                             Route("/auth/v1/logout", logout, methods=["POST"])],
                     middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"],
                                            allow_headers=["*"])])


async def test_cloud_mode_signs_in_with_supabase_auth(admin_url: str, template_db: str, browser: Any,
                                                      tmp_path: Path) -> None:
    port = free_port()
    auth_url = f"http://127.0.0.1:{port}"
    calls: list[str] = []
    server = uvicorn.Server(uvicorn.Config(fake_supabase_auth(auth_url, calls), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve())
    try:
        async with fresh_database(admin_url, template_db) as database_url, served(
                tmp_path / "data", database_url, SUPABASE_URL=auth_url, SUPABASE_ANON_KEY=ANON_KEY,
                SUPABASE_JWT_SECRET=CLOUD_SECRET) as svc:
            assert (await svc.client.post("/local/token", json={"user": "x"})).status_code == 404
            context = await browser.new_context(viewport=DESKTOP)
            page = await context.new_page()
            console = watch(page)
            await page.goto(f"{svc.base_url}/")
            await page.get_by_label("Email").fill("ada@example.com")
            await page.get_by_label("Password").fill("wrong")
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await expect(page.locator("#cloud-error")).to_have_text("Invalid login credentials")

            await page.get_by_label("Password").fill("correct horse")
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await expect(page.get_by_role("heading", name="New dub")).to_be_visible()
            await expect(page.locator("#session-user")).to_have_text("ada@example.com")
            await expect(page.locator("#target-es")).to_be_attached()  # /v1/languages took the Supabase token
            await expect(page.locator("#jobs-empty")).to_be_visible()
            stored = await page.evaluate(
                "[Object.keys(sessionStorage).filter(k => k.startsWith('sb-')), Object.keys(localStorage)]")
            assert stored[0] and stored[1] == [], stored  # the session is in this tab only
            assert calls[:2] == [f"token password {ANON_KEY}"] * 2

            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_role("heading", name="Dub your recordings into other languages")).to_be_visible()
            assert console.problems() == [], console.problems()
            await context.close()
    finally:
        server.should_exit = True
        await serving


# -- the line editor: fix a line, render again, hear it; a conflict shown -----------------------------------

async def finished_dub(site: Site, user: str) -> str:
    """A dub of the short sample into Spanish, made through the API and waited for (the editor is the subject)."""
    async with httpx.AsyncClient(base_url=site.base_url, timeout=30) as client:
        headers = site.auth(user)
        upload = (await client.post("/v1/uploads", headers=headers, json={"files": [
            {"kind": "voice", "filename": "take.wav", "content_type": "audio/wav",
             "size_bytes": site.sample.voice.stat().st_size}]})).json()["uploads"][0]
        await client.put(upload["upload_url"], content=site.sample.voice.read_bytes(),
                         headers={"Content-Type": "audio/wav"})
        job = (await client.post("/v1/jobs", headers=headers, json={
            "voice_object": upload["object_path"], "source_language": "en", "target_languages": ["es"],
            "offline_voice": "fast"})).json()
        async with asyncio.timeout(DUB_TIMEOUT_MS / 1000):
            while (await client.get(f"/v1/jobs/{job['id']}", headers=headers)).json()["status"] != "complete":
                await asyncio.sleep(0.5)
    return str(job["id"])


async def test_edit_a_line_render_again_and_a_conflict(site: Site, desktop: Any) -> None:
    job_id = await finished_dub(site, "eda")
    page = await desktop.new_page()
    console = watch(page)
    await sign_in(page, site, "eda")
    await page.goto(f"{site.base_url}/#/jobs/{job_id}")
    spanish = language(page, "es")
    editor = spanish.locator(".editor")
    lines = editor.locator(".editor-line")
    await expect(lines.first).to_be_visible(timeout=20_000)
    await expect(editor.locator(".editor-line[data-stale=true]")).to_have_count(0)
    await expect(editor.get_by_role("button", name="Render Spanish again")).to_be_disabled()

    # Fix the first line's translation: it is stale until rendered.
    await lines.nth(0).click()
    await editor.get_by_label("Translation (Spanish)").fill("Bienvenidos a esta prueba corregida.")
    await editor.get_by_role("button", name="Save line").click()
    await expect(lines.nth(0)).to_have_attribute("data-stale", "true")
    await expect(lines.nth(0).locator(".line-text")).to_have_text("Bienvenidos a esta prueba corregida.")
    await expect(editor.locator(".editor-status")).to_contain_text("1 line changed")

    # Someone else edits the second line first: the page says so, shows their text, and keeps ours to put back.
    second = int(await lines.nth(1).get_attribute("data-segment-id") or -1)
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        state = await client.get(f"/v1/jobs/{job_id}/languages/es", headers=site.auth("eda"))
        theirs = await client.patch(f"/v1/jobs/{job_id}/languages/es/segments/{second}", json={"text": "El suyo."},
                                    headers={**site.auth("eda"), "If-Match": f'"{state.json()["revision"]}"'})
        assert theirs.status_code == 200, theirs.text
    await lines.nth(1).click()
    await editor.get_by_label("Translation (Spanish)").fill("El mío.")
    await editor.get_by_role("button", name="Save line").click()
    conflict = editor.locator(".conflict")
    await expect(conflict).to_contain_text("Someone else edited this dub first")
    await expect(conflict).to_contain_text("El mío.")
    await expect(editor.get_by_label("Translation (Spanish)")).to_have_value("El suyo.")
    await expect(lines.nth(1).locator(".line-text")).to_have_text("El suyo.")
    await conflict.get_by_role("button", name="Use my text").click()
    await expect(editor.get_by_label("Translation (Spanish)")).to_have_value("El mío.")

    # Render again: the card follows the render on the progress stream to the end; nothing is stale after.
    await editor.get_by_role("button", name="Render Spanish again").click()
    await expect(spanish.locator(".stage")).not_to_have_text("Complete", timeout=10_000)
    await expect(spanish.locator(".stage")).to_have_text("Complete", timeout=DUB_TIMEOUT_MS)
    await expect(page.locator(".job-head .status-chip")).to_have_text("Complete")
    editor = spanish.locator(".editor")
    lines = editor.locator(".editor-line")
    await expect(lines.first).to_be_visible(timeout=20_000)
    await expect(editor.locator(".editor-line[data-stale=true]")).to_have_count(0)
    await expect(lines.nth(0).locator(".line-text")).to_have_text("Bienvenidos a esta prueba corregida.")
    await expect(editor.locator(".editor-status")).to_contain_text("Every line is in this take")

    # Hear the edited line's previous take, at its time in that take.
    await lines.nth(0).click()
    await editor.get_by_role("button", name="Previous take").click()
    take = editor.locator("audio.take")
    await expect(take).to_have_attribute("data-revision", "1")
    await page.wait_for_function("a => !a.paused && a.currentTime > 0", arg=await take.element_handle(),
                                 timeout=20_000)
    assert console.problems() == [], console.problems()
