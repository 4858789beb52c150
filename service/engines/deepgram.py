"""Deepgram speech-to-text (`/v1/listen`, Nova-3) and text-to-speech (`/v1/speak`, Aura-2).

Every call goes through a shared `ProviderClient`, which retries 408/409/429/5xx, connect errors and
timeouts (honouring `retry-after-ms`, `Retry-After`, `X-RateLimit-Reset`). Deepgram limits concurrency
per project and separately for each API (about 100 pre-recorded STT requests, 15 Aura REST requests),
so speech-to-text and text-to-speech each get their own client and semaphore (`make_stt_client`,
`make_tts_client`). What is left after retries becomes an `EngineError`: `provider_auth` (401/403),
`provider_quota` (402), `provider_rejected` (other 4xx: bad audio, bad parameters) or
`provider_unavailable` (retries ran out, timeouts, a truncated answer: worth a later attempt).

Transcription sends either JSON `{"url": ...}` (Deepgram fetches a signed URL itself) or the local file
streamed from disk (a fresh stream per attempt). Utterances become segments; an utterance longer than
`max_segment_seconds` is split at sentence ends. Synthesis asks for 16-bit WAV, splits long texts at
sentence boundaries (about 2,000 characters a request), then ffmpeg joins the parts, trims leading and
trailing silence and writes a mono WAV at the requested rate, as `espeak.py` does.

API keys and signed-URL tokens never reach an error message or a log line.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os
import httpx
import soundfile as sf
import structlog

from service.engines import _proc
from service.engines.protocols import Usage, add_usage
from service.engines.types import EngineError, Segment, SynthesizedClip, Transcript, Word
from service.languages import normalize
from service.providers.http import ErrorParser, ProviderClient, ProviderError, RetryPolicy
from service.settings import Settings

log = structlog.get_logger(__name__)

PROVIDER = "deepgram"
DEFAULT_STT_MODEL = "nova-3"
LISTEN = "/v1/listen"
SPEAK = "/v1/speak"
PROJECTS = "/v1/projects"
REQUEST_ID_HEADERS = ("dg-request-id", "x-dg-request-id", "x-request-id")
_AUTO = (None, "", "auto")

# Default Aura-2 voice per language; names as in Deepgram's API (`aura-2-<voice>-<lang>`).
AURA2_VOICES: dict[str, str] = {
    "en": "aura-2-thalia-en",
    "es": "aura-2-celeste-es",
    "de": "aura-2-aurelia-de",
    "fr": "aura-2-agathe-fr",
    "it": "aura-2-livia-it",
    "ja": "aura-2-ama-ja",
    "nl": "aura-2-rhea-nl",
}
# Aura-2 speed control: 0.7-1.5 (Spanish: 0.9 or more, below that it may stumble). Deepgram documents
# it for English and Spanish voices; for the others the clip is spoken at the natural rate (1.0).
SPEED_MIN, SPEED_MAX = 0.7, 1.5
SPEED_MIN_BY_LANGUAGE = {"es": 0.9}
SPEED_LANGUAGES = frozenset({"en", "es"})
MAX_REQUEST_CHARS = 2000
# linear16 sample rates Aura accepts; another requested rate is resampled by ffmpeg from 24 kHz.
AURA_SAMPLE_RATES = frozenset({8000, 16000, 24000, 32000, 48000})
AURA_DEFAULT_SAMPLE_RATE = 24000

MAX_SEGMENT_SECONDS = 15.0  # a longer utterance is split at sentence ends
SENTENCE_GAP = 0.8  # seconds of silence between words that end a sentence in the fallback (Deepgram's utt_split)
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]['\"\u201d\u2019)\]]*$")
_NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})
_SPLIT_SENTENCES = re.compile(r"(?<=[.!?\u2026])\s+|(?<=[\u3002\uff01\uff1f])")
_SPLIT_CLAUSES = re.compile(r"(?<=[,;:\u3001\uff0c])\s*")

# Trim leading silence, reverse, trim again, reverse back: removes only the ends, never pauses inside.
_TRIM = (
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse,"
    "silenceremove=start_periods=1:start_threshold=-50dB:start_silence=0.02,areverse"
)
_AUDIO_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".webm": "audio/webm", ".m4a": "audio/mp4", ".mp4": "video/mp4",
    ".aac": "audio/aac", ".amr": "audio/amr", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
}
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_TOKEN_HEADER = re.compile(r"(?i)\b(token|bearer)\s+[A-Za-z0-9._\-]{8,}")


# ---------------------------------------------------------------------------------------------- client


def redact(text: str, *secrets: str | None) -> str:
    """Remove keys and signed-URL tokens: known secrets, `Token <key>` fragments and URL query strings."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_QUERY.sub(r"\1?***", text)
    return _TOKEN_HEADER.sub(r"\1 ***", text)


def make_error_parser(secret: str | None = None) -> ErrorParser:
    def parse(response: httpx.Response) -> tuple[str, str]:
        """`{err_code, err_msg, request_id}` or `{category, message, details, request_id}` into (code, message)."""
        fallback = f"http_{response.status_code}"
        try:
            body = response.json()
        except ValueError:
            text = response.headers.get("dg-error") or response.text[:300] or response.reason_phrase
            return fallback, redact(text, secret)
        if not isinstance(body, dict):
            return fallback, redact(str(body)[:300], secret)
        code = body.get("err_code") or body.get("category") or fallback
        message = body.get("err_msg") or body.get("message") or ""
        details = body.get("details")
        if details and str(details) not in str(message):
            message = f"{message}: {details}" if message else str(details)
        if not message:
            message = response.headers.get("dg-error") or response.reason_phrase
        return str(code), redact(str(message)[:500], secret)

    return parse


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                policy: RetryPolicy | None = None, concurrency: int | None = None,
                timeout: httpx.Timeout | None = None) -> ProviderClient:
    """A Deepgram client with its own semaphore; create once (lifespan), `aclose()` on shutdown.

    Prefer `make_stt_client` and `make_tts_client`: Deepgram counts the two APIs' concurrency apart.
    """
    key = settings.deepgram_api_key
    if not key:
        raise EngineError("provider_auth", "DEEPGRAM_API_KEY is not set")
    limit = max(concurrency if concurrency is not None else settings.deepgram_stt_concurrency, 1)
    options: dict[str, Any] = {}
    if policy is not None:
        options["policy"] = policy
    if timeout is not None:
        options["timeout"] = timeout
    return ProviderClient(
        name=PROVIDER,
        base_url=settings.deepgram_base_url.rstrip("/"),
        headers={"Authorization": f"Token {key}"},
        concurrency=limit,
        max_connections=limit,
        error_parser=make_error_parser(key),
        request_id_headers=REQUEST_ID_HEADERS,
        transport=transport,
        **options,
    )


def make_stt_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                    policy: RetryPolicy | None = None) -> ProviderClient:
    """For `/v1/listen`: a long read timeout, since Deepgram answers only once the whole file is done."""
    return make_client(settings, transport, policy=policy, concurrency=settings.deepgram_stt_concurrency,
                       timeout=httpx.Timeout(30.0, read=900.0, write=300.0))


def make_tts_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None, *,
                    policy: RetryPolicy | None = None) -> ProviderClient:
    """For `/v1/speak` (Aura REST allows fewer concurrent requests than STT)."""
    return make_client(settings, transport, policy=policy, concurrency=settings.deepgram_tts_concurrency,
                       timeout=httpx.Timeout(30.0, read=120.0, write=60.0))


def engine_error(exc: ProviderError, what: str, *secrets: str | None) -> EngineError:
    """A provider failure as the stage sees it; only `provider_unavailable` is worth retrying later."""
    status = f"HTTP {exc.status}" if exc.status is not None else exc.code
    detail = f"Deepgram {what} failed ({status}, {exc.code}): {exc.message}"
    if exc.request_id:
        detail += f" [request {exc.request_id}]"
    detail = redact(detail, *secrets)
    if exc.status in (401, 403):
        return EngineError("provider_auth", detail)
    if exc.status == 402:  # out of credits: waiting does not help
        return EngineError("provider_quota", detail)
    if exc.retryable:
        return EngineError("provider_unavailable", detail)
    return EngineError("provider_rejected", detail)


async def check(client: ProviderClient) -> str:
    """A cheap authenticated call for `doctor`: the projects this key belongs to."""
    try:
        data = await client.json("GET", PROJECTS, endpoint="projects")
    except ProviderError as exc:
        raise engine_error(exc, "check") from None
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, list):
        raise EngineError("engine_failed", "Deepgram check: the projects answer has no projects list")
    names = [str(p.get("name")) for p in projects if isinstance(p, dict) and p.get("name")]
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"deepgram: key accepted, {len(projects)} project(s)" + (f" ({shown})" if shown else "")


# --------------------------------------------------------------------------------------- transcription


class _FileBody:
    """A request body read from disk in chunks; every iteration reopens the file, so retries resend it."""

    def __init__(self, path: str, chunk_size: int = 1 << 20) -> None:
        self.path = path
        self.chunk_size = chunk_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path, "rb") as handle:
            while chunk := await handle.read(self.chunk_size):
                yield chunk


def audio_content_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in _AUDIO_TYPES:
        return _AUDIO_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    if guessed and guessed.split("/")[0] in ("audio", "video"):
        return guessed
    return "application/octet-stream"  # Deepgram detects the container itself


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _words(raw: Any) -> list[Word]:
    out: list[Word] = []
    for w in raw if isinstance(raw, list) else ():
        if not isinstance(w, dict):
            continue
        text = str(w.get("punctuated_word") or w.get("word") or "").strip()
        start, end = _number(w.get("start")), _number(w.get("end"))
        if not text or start is None or end is None:
            continue
        conf = _number(w.get("confidence"))
        out.append(Word(text=text, start=round(start, 3), end=round(max(end, start), 3),
                        confidence=None if conf is None else round(conf, 4)))
    return out


def _join(words: Iterable[Word], language: str | None) -> str:
    sep = "" if language in _NO_SPACE_LANGUAGES else " "
    return sep.join(w.text for w in words).strip()


def _sentences(words: list[Word], gap: float = SENTENCE_GAP) -> list[list[Word]]:
    """Words grouped into sentences: a break after terminal punctuation or a pause of `gap` seconds."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for i, word in enumerate(words):
        current.append(word)
        following = words[i + 1] if i + 1 < len(words) else None
        if following is None or _SENTENCE_END.search(word.text) or following.start - word.end >= gap:
            groups.append(current)
            current = []
    return groups


def _pieces(utterance: dict[str, Any], language: str | None, max_seconds: float | None
            ) -> list[tuple[float, float, str, tuple[Word, ...]]]:
    words = _words(utterance.get("words"))
    start, end = _number(utterance.get("start")), _number(utterance.get("end"))
    text = " ".join(str(utterance.get("transcript") or "").split())
    if start is None or end is None:
        if not words:
            return []
        start, end = words[0].start, words[-1].end
    if max_seconds is not None and end - start > max_seconds and len(words) > 1:
        groups = _sentences(words)
        if len(groups) > 1:
            return [(g[0].start, g[-1].end, _join(g, language), tuple(g)) for g in groups]
    if not text:
        text = _join(words, language)
    return [(round(start, 3), round(max(end, start), 3), text, tuple(words))] if text else []


def parse_listen(data: Any, requested_language: str | None, model: str,
                 max_segment_seconds: float | None = MAX_SEGMENT_SECONDS) -> Transcript:
    """A `/v1/listen` answer as a Transcript: segments 0..n-1 in time order, empty for silence."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise EngineError("engine_failed", "Deepgram answered without results")
    results: dict[str, Any] = data["results"]
    metadata: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    channels = results.get("channels") if isinstance(results.get("channels"), list) else []
    first = channels[0] if channels and isinstance(channels[0], dict) else {}

    if requested_language:
        language = normalize(requested_language) or requested_language.lower()
    else:
        detected = first.get("detected_language")
        language = (normalize(detected) or str(detected).lower()) if detected else "und"
    lang_key = normalize(language)

    pieces: list[tuple[float, float, str, tuple[Word, ...]]] = []
    utterances = results.get("utterances")
    if isinstance(utterances, list) and utterances:
        for utterance in utterances:
            if isinstance(utterance, dict):
                pieces.extend(_pieces(utterance, lang_key, max_segment_seconds))
    else:  # no utterances: the first alternative's words, grouped into sentences
        alternatives = first.get("alternatives") if isinstance(first.get("alternatives"), list) else []
        best = alternatives[0] if alternatives and isinstance(alternatives[0], dict) else {}
        words = _words(best.get("words"))
        for group in _sentences(words):
            pieces.append((group[0].start, group[-1].end, _join(group, lang_key), tuple(group)))
    pieces.sort(key=lambda p: (p[0], p[1]))
    segments = tuple(Segment(id=i, start=s, end=e, text=t, words=w) for i, (s, e, t, w) in enumerate(pieces))

    duration = _number(metadata.get("duration"))
    if duration is None:
        duration = max((s.end for s in segments), default=0.0)
    return Transcript(language=language, duration=round(duration, 3), segments=segments, engine=PROVIDER,
                      model=model)


class DeepgramTranscriber:
    """Transcriber over Deepgram's pre-recorded API; takes a local file or a URL Deepgram can fetch."""

    name = PROVIDER
    accepts_url = True

    def __init__(self, client: ProviderClient, model: str = DEFAULT_STT_MODEL, *,
                 max_segment_seconds: float | None = MAX_SEGMENT_SECONDS) -> None:
        self.client = client
        self.model = model
        self.max_segment_seconds = max_segment_seconds

    def params(self, language: str | None) -> dict[str, str]:
        params = {"model": self.model, "smart_format": "true", "utterances": "true"}
        if language in _AUTO:
            params["detect_language"] = "true"
        else:
            params["language"] = str(language).strip()
        return params

    async def transcribe(
        self, audio_path: str | None, language: str | None, *, audio_url: str | None = None,
        usage: Usage | None = None,
    ) -> Transcript:
        requested = None if language in _AUTO else str(language).strip()
        request: dict[str, Any] = {"params": self.params(requested)}
        if audio_url:
            request["json"] = {"url": audio_url}
        elif audio_path:
            try:
                size = await aiofiles.os.path.getsize(audio_path)
            except OSError:
                raise EngineError("bad_input", f"audio file not found: {audio_path}") from None
            if size == 0:
                raise EngineError("bad_input", f"audio file is empty: {audio_path}")
            request["content"] = _FileBody(audio_path)
            request["headers"] = {"Content-Type": audio_content_type(audio_path), "Content-Length": str(size)}
        else:
            raise EngineError("bad_input", "Deepgram needs an audio file or an audio URL")
        try:
            data = await self.client.json("POST", LISTEN, endpoint="listen", **request)
        except ProviderError as exc:
            raise engine_error(exc, "transcription", audio_url) from None
        transcript = parse_listen(data, requested, self.model, self.max_segment_seconds)
        add_usage(usage, stt_audio_seconds=transcript.duration)
        return transcript


# ------------------------------------------------------------------------------------------- synthesis


def split_text(text: str, limit: int = MAX_REQUEST_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends, else clauses, else spaces."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return [text] if text else []

    def units(part: str, splitters: list[re.Pattern[str]]) -> list[str]:
        if len(part) <= limit:
            return [part]
        if not splitters:
            words = part.split(" ")
            if len(words) > 1:
                return [w for chunk in _pack(words, limit, " ") for w in units(chunk, [])]
            return [part[i:i + limit] for i in range(0, len(part), limit)]
        pieces = [p.strip() for p in splitters[0].split(part) if p.strip()]
        if len(pieces) == 1:
            return units(part, splitters[1:])
        return [u for p in pieces for u in units(p, splitters[1:])]

    return _pack(units(text, [_SPLIT_SENTENCES, _SPLIT_CLAUSES]), limit, " ")


def _pack(units: list[str], limit: int, sep: str) -> list[str]:
    """Consecutive units joined while they fit in `limit`."""
    out: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{sep}{unit}" if current else unit
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                out.append(current)
            current = unit
    if current:
        out.append(current)
    return out


class DeepgramSynthesizer:
    """Synthesizer over Aura-2 voices; `rate` maps to Aura-2's `speed` where Deepgram supports it."""

    name = "deepgram-aura"

    def __init__(self, client: ProviderClient, voices: dict[str, str] | None = None, *,
                 ffmpeg: str = "ffmpeg", timeout: float = 120.0, max_request_chars: int = MAX_REQUEST_CHARS) -> None:
        self.client = client
        self.voices = dict(AURA2_VOICES)
        for lang, voice in (voices or {}).items():
            self.voices[lang.strip().lower().replace("_", "-")] = voice  # `en-gb` overrides only en-GB
        self._ffmpeg = ffmpeg
        self._timeout = timeout
        self.max_request_chars = max_request_chars
        self._speed_refused: set[str] = set()  # voices whose requests with `speed` came back 400

    def _key(self, language: str) -> str:
        code = language.strip().lower().replace("_", "-")
        return code if code in self.voices else (normalize(code) or code)

    def voice_for(self, language: str) -> str:
        voice = self.voices.get(self._key(language))
        if voice is None:
            raise EngineError("unsupported_language", f"Deepgram Aura has no voice for {language!r}")
        return voice

    def supports(self, language: str) -> bool:
        return self._key(language) in self.voices

    def speed_for(self, language: str, rate: float) -> float | None:
        """The speed to send, clamped to what Aura-2 accepts; None when speed control is not available."""
        voice = self.voice_for(language)
        lang = normalize(language)
        if not voice.startswith("aura-2-") or lang not in SPEED_LANGUAGES or voice in self._speed_refused:
            return None
        return round(min(max(rate, SPEED_MIN_BY_LANGUAGE.get(lang, SPEED_MIN)), SPEED_MAX), 3)

    async def synthesize(
        self, text: str, language: str, out_path: str, rate: float = 1.0, sample_rate: int = 48000, *,
        usage: Usage | None = None,
    ) -> SynthesizedClip:
        pieces = split_text(text, self.max_request_chars)
        if not pieces:
            raise EngineError("empty_text", "nothing to synthesize")
        if not self.supports(language):
            raise EngineError("unsupported_language", f"Deepgram Aura has no voice for {language!r}")
        if rate <= 0 or sample_rate <= 0:
            raise EngineError("bad_input", f"rate and sample_rate must be positive, got {rate}, {sample_rate}")
        voice = self.voice_for(language)
        speed = self.speed_for(language, rate)
        fetch_rate = sample_rate if sample_rate in AURA_SAMPLE_RATES else AURA_DEFAULT_SAMPLE_RATE
        stem = f"{out_path}.{uuid.uuid4().hex}"  # beside the output, unique per call
        parts: list[str] = []
        try:
            for index, piece in enumerate(pieces):
                part = f"{stem}.dg{index}.wav"
                parts.append(part)
                speed = await self._speak_with_fallback(piece, voice, speed, fetch_rate, part, first=index == 0)
                add_usage(usage, tts_characters=len(piece))
            await self._finish(parts, out_path, sample_rate)
        finally:
            for part in parts:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
        duration = sf.info(out_path).duration  # header read only: cheap enough for the loop
        return SynthesizedClip(path=out_path, duration=round(float(duration), 4),
                               rate=speed if speed is not None else 1.0)

    async def _speak_with_fallback(self, text: str, voice: str, speed: float | None, sample_rate: int, path: str,
                                   *, first: bool) -> float | None:
        """Speak one piece; if the first request with `speed` is refused (400) but works without, go on without."""
        try:
            await self._speak(text, voice, speed, sample_rate, path)
            return speed
        except ProviderError as exc:
            if not (first and speed is not None and speed != 1.0 and exc.status == 400):
                raise engine_error(exc, "synthesis") from None
            refused = exc
        try:
            await self._speak(text, voice, None, sample_rate, path)
        except ProviderError as again:  # not the speed after all (or a new failure): report this one
            raise engine_error(again, "synthesis") from None
        self._speed_refused.add(voice)
        log.warning("deepgram.speed_refused", voice=voice, code=refused.code, message=redact(refused.message))
        return None

    async def _speak(self, text: str, voice: str, speed: float | None, sample_rate: int, path: str) -> None:
        params: dict[str, str] = {"model": voice, "encoding": "linear16", "container": "wav",
                                  "sample_rate": str(sample_rate)}
        if speed is not None and speed != 1.0:  # 1.0 is the default: leave it out
            params["speed"] = f"{speed:g}"
        size = 0
        try:
            async with self.client.stream("POST", SPEAK, endpoint="speak", params=params, json={"text": text}) as resp:
                async with aiofiles.open(path, "wb") as handle:
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        await handle.write(chunk)
        except httpx.HTTPError as exc:  # the connection broke while the audio was streaming
            raise EngineError("provider_unavailable",
                              f"Deepgram synthesis: the audio stream broke off ({type(exc).__name__})") from None
        if size <= 44:  # a WAV header and nothing else
            raise EngineError("provider_unavailable", f"Deepgram synthesis returned no audio ({size} bytes)")

    async def _finish(self, parts: list[str], out_path: str, sample_rate: int) -> None:
        """Join the parts, trim the ends, write mono 16-bit PCM at `sample_rate` (ffmpeg reads streamed WAVs)."""
        inputs: list[str] = []
        chains: list[str] = []
        for i, part in enumerate(parts):
            inputs += ["-i", part]
            chains.append(f"[{i}:a]aresample={sample_rate},aformat=sample_fmts=s16:channel_layouts=mono[a{i}]")
        joined = "".join(f"[a{i}]" for i in range(len(parts)))
        graph = ";".join(chains) + f";{joined}concat=n={len(parts)}:v=0:a=1,{_TRIM}[out]"
        await _proc.run(
            [self._ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs,
             "-filter_complex", graph, "-map", "[out]", "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le",
             out_path],
            None,
            self._timeout,
        )


def voices_from_settings(settings: Settings) -> dict[str, str]:
    """`DEEPGRAM_TTS_VOICES` overrides (language, voice) as a mapping."""
    return dict(settings.deepgram_tts_voices)


__all__: list[str] = [
    "AURA2_VOICES", "DeepgramSynthesizer", "DeepgramTranscriber", "audio_content_type", "check", "engine_error",
    "make_client", "make_error_parser", "make_stt_client", "make_tts_client", "parse_listen", "redact",
    "split_text", "voices_from_settings",
]
