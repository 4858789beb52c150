"""Deepgram STT and TTS: what goes over the wire, how answers are read, how failures surface."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx
import soundfile as sf

from service.engines.cloud.deepgram import check, make_client, make_stt_client, make_tts_client
from service.engines.cloud.deepgram_listen import DeepgramTranscriber, parse_listen
from service.engines.cloud.deepgram_speak import AURA2_VOICES, DeepgramSynthesizer, split_text
from service.engines.protocols import Synthesizer, Transcriber
from service.errors import EngineError
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings

KEY = "dg0123456789abcdefSECRETKEY0123456789abcd"
BASE = "https://api.deepgram.test"
LISTEN = f"{BASE}/v1/listen"
SPEAK = f"{BASE}/v1/speak"
FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, total_timeout=10)
SETTINGS = Settings(deepgram_api_key=KEY, deepgram_base_url=BASE, deepgram_stt_concurrency=7,
                    deepgram_tts_concurrency=3)
SIGNED_URL = "https://proj.supabase.test/storage/v1/object/sign/voices/job/voice.flac?token=eyJhbGciOi.SIGNED.TOKEN"
REQUEST_ID = "c4d0e5a1-7a6b-4b8e-9d0f-2f1e3c4b5a69"


@pytest.fixture
async def stt() -> AsyncIterator[ProviderClient]:
    client = make_stt_client(SETTINGS, policy=FAST)
    yield client
    await client.aclose()


@pytest.fixture
async def tts() -> AsyncIterator[ProviderClient]:
    client = make_tts_client(SETTINGS, policy=FAST)
    yield client
    await client.aclose()


# ------------------------------------------------------------------------------------------ listen data


def word(w: str, start: float, end: float, punctuated: str | None = None, conf: float = 0.99) -> dict[str, Any]:
    return {"word": w, "start": start, "end": end, "confidence": conf, "punctuated_word": punctuated or w}


UTTERANCE_1 = [word("hello", 0.32, 0.64, "Hello,"), word("and", 0.64, 0.8), word("welcome", 0.8, 1.2),
               word("back", 1.2, 1.52, "back."), word("today", 1.6, 1.98, "Today"), word("we", 1.98, 2.1),
               word("test", 2.1, 2.5), word("dubbing", 2.5, 3.04, "dubbing.")]
UTTERANCE_2 = [word("it", 4.16, 4.3, "It"), word("works", 4.3, 4.72, "works!")]


def listen_response(*, utterances: bool = True, detected: str | None = None,
                    duration: float = 5.376) -> dict[str, Any]:
    """A pre-recorded answer shaped like the examples in Deepgram's docs (smart_format, utterances)."""
    words = UTTERANCE_1 + UTTERANCE_2
    channel: dict[str, Any] = {"alternatives": [{
        "transcript": "Hello, and welcome back. Today we test dubbing. It works!",
        "confidence": 0.9961,
        "words": words,
    }]}
    if detected:
        channel["detected_language"] = detected
        channel["language_confidence"] = 0.9734
    results: dict[str, Any] = {"channels": [channel]}
    if utterances:
        results["utterances"] = [
            {"start": 0.32, "end": 3.04, "confidence": 0.9912, "channel": 0,
             "transcript": "Hello, and welcome back. Today we test dubbing.", "words": UTTERANCE_1,
             "id": "7b1f6f63-4a8c-4d55-9a1d-1c2f0f1e7c11"},
            {"start": 4.16, "end": 4.72, "confidence": 0.9876, "channel": 0, "transcript": "It works!",
             "words": UTTERANCE_2, "id": "0d0b8f3e-7c36-4fd9-8b3a-6f1c5e0b9a22"},
        ]
    return {
        "metadata": {
            "transaction_key": "deprecated", "request_id": REQUEST_ID,
            "sha256": "154e291ecfa8be6ab8343560bcc109008fa7853eb5372533e8efdefc9b504c33",
            "created": "2025-06-02T09:17:25.612Z", "duration": duration, "channels": 1,
            "models": ["2187e11a-3532-4498-b076-81fa530bdd49"],
            "model_info": {"2187e11a-3532-4498-b076-81fa530bdd49": {
                "name": "general-nova-3", "version": "2025-04-17.21547", "arch": "nova-3"}},
        },
        "results": results,
    }


def ok_listen(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"dg-request-id": REQUEST_ID})


def audio_file(tmp_path: Path, name: str = "voice.wav", seconds: float = 0.5) -> Path:
    path = tmp_path / name
    sf.write(path, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, subtype="PCM_16")
    return path


# --------------------------------------------------------------------------------------------- listen


def test_engines_match_the_protocols(stt: ProviderClient, tts: ProviderClient) -> None:
    transcriber = DeepgramTranscriber(stt)
    synthesizer = DeepgramSynthesizer(tts)
    assert isinstance(transcriber, Transcriber) and isinstance(synthesizer, Synthesizer)
    assert (transcriber.name, transcriber.model, transcriber.accepts_url) == ("deepgram", "nova-3", True)
    assert synthesizer.name == "deepgram-aura"


def test_clients_have_their_own_limits_and_auth() -> None:
    stt_client, tts_client = make_stt_client(SETTINGS), make_tts_client(SETTINGS)
    assert stt_client.limit is not tts_client.limit
    assert (stt_client.concurrency, tts_client.concurrency) == (7, 3)
    assert stt_client.headers["Authorization"] == f"Token {KEY}"
    assert "dg-request-id" in stt_client.request_id_headers
    assert KEY not in repr(stt_client)
    with pytest.raises(EngineError) as caught:
        make_client(Settings(deepgram_api_key=None))
    assert caught.value.code == "provider_auth"


@respx.mock
async def test_listen_with_url_sends_json_and_parses_utterances(stt: ProviderClient) -> None:
    route = respx.post(LISTEN).mock(return_value=ok_listen(listen_response()))
    usage: dict[str, float] = {}
    transcript = await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL, usage=usage)

    request = route.calls.last.request
    assert request.url.path == "/v1/listen"
    assert dict(request.url.params) == {"model": "nova-3", "smart_format": "true", "utterances": "true",
                                        "diarize": "true", "language": "en"}
    assert request.headers["authorization"] == f"Token {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"url": SIGNED_URL}

    assert transcript.engine == "deepgram" and transcript.model == "nova-3"
    assert transcript.language == "en"
    assert transcript.duration == 5.376
    assert [s.id for s in transcript.segments] == [0, 1]
    first, second = transcript.segments
    assert (first.start, first.end, first.text) == (0.32, 3.04, "Hello, and welcome back. Today we test dubbing.")
    assert [w.text for w in first.words][:4] == ["Hello,", "and", "welcome", "back."]
    assert (first.words[0].start, first.words[0].end, first.words[0].confidence) == (0.32, 0.64, 0.99)
    assert (second.start, second.end, second.text) == (4.16, 4.72, "It works!")
    assert usage == {"stt_audio_seconds": 5.376}


@respx.mock
async def test_listen_streams_local_file_and_detects_language(stt: ProviderClient, tmp_path: Path) -> None:
    path = audio_file(tmp_path)
    route = respx.post(LISTEN).mock(return_value=ok_listen(listen_response(detected="es")))
    transcript = await DeepgramTranscriber(stt).transcribe(str(path), None)

    request = route.calls.last.request
    params = dict(request.url.params)
    assert params == {"model": "nova-3", "smart_format": "true", "utterances": "true", "diarize": "true",
                      "detect_language": "true"}
    assert "language" not in params
    assert request.headers["content-type"] == "audio/wav"
    assert request.headers["content-length"] == str(path.stat().st_size)
    assert "transfer-encoding" not in request.headers
    assert await request.aread() == path.read_bytes()
    assert transcript.language == "es"
    assert transcript.language_confidence == 0.9734  # the channel's `language_confidence`

    await DeepgramTranscriber(stt).transcribe(str(path), "auto")
    assert route.calls.last.request.url.params["detect_language"] == "true"


@respx.mock
async def test_a_retried_upload_sends_the_whole_file_again(stt: ProviderClient, tmp_path: Path) -> None:
    path = audio_file(tmp_path, "voice.flac", seconds=3.0)
    route = respx.post(LISTEN).mock(side_effect=[
        httpx.Response(503, json={"err_code": "SERVICE_UNAVAILABLE", "err_msg": "try again"}),
        ok_listen(listen_response()),
    ])
    await DeepgramTranscriber(stt).transcribe(str(path), "en")
    assert route.call_count == 2
    bodies = [await call.request.aread() for call in route.calls]
    assert bodies[0] == bodies[1] == path.read_bytes()
    assert route.calls[0].request.headers["content-type"] == "audio/flac"


@respx.mock
async def test_silence_gives_an_empty_transcript(stt: ProviderClient) -> None:
    body = listen_response(duration=2.5)
    body["results"]["utterances"] = []
    body["results"]["channels"][0]["alternatives"][0].update(transcript="", words=[], confidence=0.0)
    respx.post(LISTEN).mock(return_value=ok_listen(body))
    transcript = await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert transcript.segments == () and transcript.text == ""
    assert transcript.duration == 2.5


def test_without_utterances_words_are_grouped_into_sentences() -> None:
    transcript = parse_listen(listen_response(utterances=False, detected="en"), None, "nova-3")
    assert [s.text for s in transcript.segments] == ["Hello, and welcome back.", "Today we test dubbing.",
                                                     "It works!"]
    assert [s.id for s in transcript.segments] == [0, 1, 2]
    assert [(s.start, s.end) for s in transcript.segments] == [(0.32, 1.52), (1.6, 3.04), (4.16, 4.72)]
    assert transcript.language == "en"


def test_a_long_utterance_is_split_at_sentence_ends() -> None:
    transcript = parse_listen(listen_response(), "en", "nova-3", max_segment_seconds=2.0)
    assert [s.text for s in transcript.segments] == ["Hello, and welcome back.", "Today we test dubbing.",
                                                     "It works!"]
    assert [s.id for s in transcript.segments] == [0, 1, 2]
    assert transcript.segments[1].words[0].text == "Today"


def test_an_answer_without_results_is_an_engine_error() -> None:
    with pytest.raises(EngineError) as caught:
        parse_listen({"metadata": {}}, "en", "nova-3")
    assert caught.value.code == "engine_failed"


@respx.mock
async def test_429_with_retry_after_then_success(stt: ProviderClient) -> None:
    route = respx.post(LISTEN).mock(side_effect=[
        httpx.Response(429, headers={"retry-after": "0.05"},
                       json={"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests.", "request_id": "r1"}),
        ok_listen(listen_response()),
    ])
    transcript = await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert route.call_count == 2 and len(transcript.segments) == 2


@respx.mock
async def test_5xx_until_attempts_run_out_is_retryable(stt: ProviderClient) -> None:
    route = respx.post(LISTEN).mock(return_value=httpx.Response(
        503, headers={"dg-request-id": "req-503"},
        json={"category": "INTERNAL_SERVER_ERROR", "message": "Service overloaded", "details": "busy",
              "request_id": "req-503"}))
    with pytest.raises(EngineError) as caught:
        await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert route.call_count == FAST.attempts
    assert caught.value.code == "provider_unavailable"
    message = caught.value.message
    assert "HTTP 503" in message and "INTERNAL_SERVER_ERROR" in message and "Service overloaded: busy" in message
    assert "3 attempts" in message and "req-503" in message


@respx.mock
async def test_timeout_is_retried_then_retryable(stt: ProviderClient) -> None:
    route = respx.post(LISTEN).mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(EngineError) as caught:
        await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert route.call_count == FAST.attempts
    assert caught.value.code == "provider_unavailable" and "timed out" in caught.value.message


@respx.mock
async def test_truncated_json_is_retryable(stt: ProviderClient) -> None:
    text = json.dumps(listen_response())[:200]
    respx.post(LISTEN).mock(return_value=httpx.Response(200, text=text, headers={"dg-request-id": REQUEST_ID}))
    with pytest.raises(EngineError) as caught:
        await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert caught.value.code == "provider_unavailable"
    assert "not JSON" in caught.value.message and REQUEST_ID in caught.value.message


@respx.mock
async def test_401_fails_at_once_without_leaking_the_key(stt: ProviderClient) -> None:
    route = respx.post(LISTEN).mock(return_value=httpx.Response(401, json={
        "err_code": "INVALID_AUTH", "err_msg": f"Invalid credentials: Token {KEY}", "request_id": "r401"}))
    with pytest.raises(EngineError) as caught:
        await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert route.call_count == 1
    assert caught.value.code == "provider_auth"
    assert "INVALID_AUTH" in caught.value.message
    assert KEY not in str(caught.value) and KEY[:12] not in str(caught.value)


@respx.mock
async def test_400_is_rejected_and_hides_the_signed_url_token(stt: ProviderClient) -> None:
    respx.post(LISTEN).mock(return_value=httpx.Response(400, json={
        "err_code": "REMOTE_CONTENT_ERROR", "err_msg": f"Could not determine if URL {SIGNED_URL} is reachable.",
        "request_id": "r400"}))
    with pytest.raises(EngineError) as caught:
        await DeepgramTranscriber(stt).transcribe(None, "en", audio_url=SIGNED_URL)
    assert caught.value.code == "provider_rejected"
    assert "REMOTE_CONTENT_ERROR" in caught.value.message
    assert "SIGNED.TOKEN" not in str(caught.value) and "token=" not in str(caught.value)


async def test_bad_input_is_caught_before_any_request(stt: ProviderClient, tmp_path: Path) -> None:
    transcriber = DeepgramTranscriber(stt)
    for path in (None, str(tmp_path / "missing.wav")):
        with pytest.raises(EngineError) as caught:
            await transcriber.transcribe(path, "en")
        assert caught.value.code == "bad_input"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EngineError):
        await transcriber.transcribe(str(empty), "en")


# ---------------------------------------------------------------------------------------------- speak

RATE = 24000
TONE_SECONDS = 1.0


def wav_bytes(seconds: float = TONE_SECONDS, *, lead: float = 0.3, tail: float = 0.4, streamed: bool = False) -> bytes:
    """16-bit mono WAV at 24 kHz: silence, a tone, silence (what Aura's linear16/wav answer looks like)."""
    t = np.arange(int(RATE * seconds)) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    samples = np.concatenate([np.zeros(int(RATE * lead)), tone, np.zeros(int(RATE * tail))]).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    if streamed:  # a streamed WAV does not know its length: placeholder sizes in the header
        data[4:8] = struct.pack("<I", 0xFFFFFFFF)
        data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(data)


def audio_response(**kwargs: Any) -> httpx.Response:
    return httpx.Response(200, content=wav_bytes(**kwargs),
                          headers={"content-type": "audio/wav", "dg-request-id": REQUEST_ID, "dg-char-count": "12"})


@respx.mock
async def test_speak_request_and_clip(tts: ProviderClient, tmp_path: Path) -> None:
    route = respx.post(SPEAK).mock(return_value=audio_response())
    out = tmp_path / "clip.wav"
    usage: dict[str, float] = {}
    clip = await DeepgramSynthesizer(tts).synthesize("Hello there.", "en", str(out), rate=1.2, usage=usage)

    request = route.calls.last.request
    assert request.url.path == "/v1/speak"
    assert dict(request.url.params) == {"model": "aura-2-thalia-en", "encoding": "linear16", "container": "wav",
                                        "sample_rate": "48000", "speed": "1.2"}
    assert request.headers["authorization"] == f"Token {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"text": "Hello there."}

    info = sf.info(out)
    assert (info.channels, info.samplerate, info.subtype) == (1, 48000, "PCM_16")
    assert clip.path == str(out) and clip.rate == 1.2
    assert abs(clip.duration - TONE_SECONDS) < 0.08  # 0.7 s of padding trimmed away
    assert clip.duration == pytest.approx(info.duration, abs=1e-3)
    assert usage == {"tts_characters": len("Hello there.")}
    assert list(tmp_path.iterdir()) == [out]  # the downloaded parts are gone


@respx.mock
async def test_speak_reads_a_streamed_wav_header(tts: ProviderClient, tmp_path: Path) -> None:
    respx.post(SPEAK).mock(return_value=audio_response(streamed=True))
    clip = await DeepgramSynthesizer(tts).synthesize("Hola.", "es", str(tmp_path / "c.wav"), sample_rate=44100)
    info = sf.info(clip.path)
    assert (info.channels, info.samplerate) == (1, 44100)
    assert abs(clip.duration - TONE_SECONDS) < 0.08


@respx.mock
async def test_speed_is_clamped_and_sent_only_where_supported(tts: ProviderClient, tmp_path: Path) -> None:
    route = respx.post(SPEAK).mock(side_effect=lambda request: audio_response(seconds=0.3))
    synth = DeepgramSynthesizer(tts)
    cases = [("en", 2.0, "1.5", 1.5), ("en", 0.5, "0.7", 0.7), ("es", 0.75, "0.9", 0.9), ("en", 1.0, None, 1.0),
             ("de", 1.3, None, 1.0), ("ja", 0.8, None, 1.0)]
    for i, (lang, rate, sent, applied) in enumerate(cases):
        clip = await synth.synthesize("Text.", lang, str(tmp_path / f"{i}.wav"), rate=rate)
        params = route.calls.last.request.url.params
        assert params.get("speed") == sent, (lang, rate)
        assert params["model"] == AURA2_VOICES[lang]
        assert clip.rate == applied


@respx.mock
async def test_long_text_is_split_at_sentences_into_several_requests(tts: ProviderClient, tmp_path: Path) -> None:
    sentence = "This sentence is part of a long narration that keeps going for a while. "
    text = (sentence * 70).strip()  # about 5,000 characters
    route = respx.post(SPEAK).mock(side_effect=lambda request: audio_response(seconds=0.5, lead=0.1, tail=0.1))
    usage: dict[str, float] = {}
    clip = await DeepgramSynthesizer(tts).synthesize(text, "en", str(tmp_path / "long.wav"), usage=usage)

    sent = [json.loads(call.request.content)["text"] for call in route.calls]
    assert len(sent) == 3
    assert all(len(t) <= 2000 for t in sent)
    assert all(t.endswith(".") for t in sent)
    assert " ".join(sent) == text
    assert usage["tts_characters"] == sum(len(t) for t in sent)
    # three 0.5 s tones with 0.2 s of silence between them; the outer 0.1 s trimmed
    assert abs(clip.duration - (3 * 0.5 + 2 * 0.2)) < 0.08


@respx.mock
async def test_speed_refused_falls_back_to_natural_rate(tts: ProviderClient, tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "speed" in request.url.params:
            return httpx.Response(400, json={"err_code": "INVALID_QUERY_PARAMETER", "err_msg": "speed not allowed"})
        return audio_response(seconds=0.3)

    route = respx.post(SPEAK).mock(side_effect=answer)
    synth = DeepgramSynthesizer(tts)
    clip = await synth.synthesize("Hi.", "en", str(tmp_path / "a.wav"), rate=1.3)
    assert clip.rate == 1.0 and route.call_count == 2
    clip = await synth.synthesize("Hi.", "en", str(tmp_path / "b.wav"), rate=1.3)
    assert clip.rate == 1.0 and route.call_count == 3  # remembered: no second refusal


@respx.mock
async def test_speak_401_fails_at_once_and_5xx_is_retryable(tts: ProviderClient, tmp_path: Path) -> None:
    route = respx.post(SPEAK).mock(return_value=httpx.Response(
        403, json={"category": "INSUFFICIENT_PERMISSIONS", "message": "Key lacks the speak scope"}))
    with pytest.raises(EngineError) as caught:
        await DeepgramSynthesizer(tts).synthesize("Hi.", "en", str(tmp_path / "a.wav"), rate=1.3)
    assert caught.value.code == "provider_auth" and route.call_count == 1
    assert KEY not in str(caught.value)

    route.reset()
    route.mock(return_value=httpx.Response(502, text="Bad gateway"))
    with pytest.raises(EngineError) as caught:
        await DeepgramSynthesizer(tts).synthesize("Hi.", "en", str(tmp_path / "b.wav"))
    assert caught.value.code == "provider_unavailable" and route.call_count == FAST.attempts
    assert list(tmp_path.iterdir()) == []


@respx.mock
async def test_an_audio_stream_that_breaks_off_is_retryable(tts: ProviderClient, tmp_path: Path) -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield wav_bytes()[:1000]
            raise httpx.ReadError("connection reset")

    respx.post(SPEAK).mock(return_value=httpx.Response(200, stream=Broken(), headers={"content-type": "audio/wav"}))
    with pytest.raises(EngineError) as caught:
        await DeepgramSynthesizer(tts).synthesize("Hi.", "en", str(tmp_path / "a.wav"))
    assert caught.value.code == "provider_unavailable"
    assert list(tmp_path.iterdir()) == []


async def test_voices_languages_and_bad_input(tts: ProviderClient, tmp_path: Path) -> None:
    synth = DeepgramSynthesizer(tts, voices={"es": "aura-2-nestor-es", "en-GB": "aura-2-draco-en"})
    assert synth.voice_for("es") == "aura-2-nestor-es"
    assert synth.voice_for("es-MX") == "aura-2-nestor-es"
    assert synth.voice_for("en-gb") == "aura-2-draco-en"
    assert synth.voice_for("en-US") == "aura-2-thalia-en"
    assert synth.voice_for("de") == "aura-2-aurelia-de"
    assert all(synth.supports(lang) for lang in ("en", "es", "de", "fr", "it", "ja", "nl"))
    assert not synth.supports("pt")
    with pytest.raises(EngineError) as caught:
        synth.voice_for("pt")
    assert caught.value.code == "unsupported_language"
    for text, lang, rate, code in [("  ", "en", 1.0, "empty_text"), ("Olá.", "pt", 1.0, "unsupported_language"),
                                   ("Hi.", "en", 0.0, "bad_input")]:
        with pytest.raises(EngineError) as caught:
            await synth.synthesize(text, lang, str(tmp_path / "x.wav"), rate=rate)
        assert caught.value.code == code


def test_split_text() -> None:
    assert split_text("  One.  Two.  ") == ["One. Two."]
    assert split_text("") == []
    parts = split_text("Alpha beta. Gamma delta! Epsilon zeta? Eta.", limit=25)
    assert parts == ["Alpha beta. Gamma delta!", "Epsilon zeta? Eta."]
    parts = split_text("a very long clause, another long clause, and a third one here", limit=25)
    assert len(parts) > 1 and all(len(p) <= 25 for p in parts)
    assert " ".join(parts) == "a very long clause, another long clause, and a third one here"
    assert split_text("x" * 60, limit=25) == ["x" * 25, "x" * 25, "x" * 10]
    assert split_text("これは文です。これも文です。", limit=8) == ["これは文です。", "これも文です。"]


# ---------------------------------------------------------------------------------------------- check


@respx.mock
async def test_check_lists_projects(stt: ProviderClient) -> None:
    route = respx.get(f"{BASE}/v1/projects").mock(return_value=httpx.Response(200, json={
        "projects": [{"project_id": "3d0ac1c0-5d55-4b39-9c3b-f6d5c5a1e8a2", "name": "Dubbing"}]}))
    assert await check(stt) == "deepgram: key accepted, 1 project(s) (Dubbing)"
    assert route.calls.last.request.headers["authorization"] == f"Token {KEY}"

    respx.get(f"{BASE}/v1/projects").mock(return_value=httpx.Response(
        401, json={"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "x"}))
    with pytest.raises(EngineError) as caught:
        await check(stt)
    assert caught.value.code == "provider_auth" and KEY not in str(caught.value)


def test_diarized_words_cut_the_segments_where_the_speaker_changes() -> None:
    from service.stages.speakers import from_transcript

    plain = listen_response()
    body = json.loads(json.dumps(plain))  # its own copy of the shared word lists
    # diarize=true: each word has `speaker` and `speaker_confidence` (Deepgram's documented shape); the second
    # voice takes over at "Today" without a pause, and the first comes back for "It works!".
    for utterance in body["results"]["utterances"]:
        for w in utterance["words"]:
            w.update(speaker=1 if 1.6 <= w["start"] < 4.0 else 0, speaker_confidence=0.8)
    transcript = parse_listen(body, "en", "nova-3")
    assert [(s.text, s.speaker) for s in transcript.segments] == [
        ("Hello, and welcome back.", "0"), ("Today we test dubbing.", "1"), ("It works!", "0")]
    found = from_transcript(transcript)
    assert found is not None and [p.id for p in found.speakers] == ["S1", "S2"]
    assert [t.speaker for t in found.turns] == ["S1", "S2", "S1"]
    assert from_transcript(parse_listen(plain, "en", "nova-3")) is None  # not diarized: no speakers
