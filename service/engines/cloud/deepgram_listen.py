"""Deepgram speech-to-text (`POST /v1/listen`, Nova-3) as a `Transcriber`.

Sends either JSON `{"url": ...}` (Deepgram fetches a signed URL itself, so the worker never downloads the
voice) or the local file streamed from disk (a fresh stream per attempt). Utterances become segments;
an utterance longer than `max_segment_seconds` is split at sentence ends.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiofiles.os

from service.engines.cloud.deepgram import PROVIDER, failure
from service.engines.protocols import Usage, add_usage
from service.engines.types import LanguageGuess, Segment, Transcript, Word
from service.errors import EngineError, ErrorCode, ProviderError
from service.languages import normalize
from service.providers.bodies import FileBody
from service.providers.http import ProviderClient

DEFAULT_STT_MODEL = "nova-3"
LISTEN = "/v1/listen"
_AUTO = (None, "", "auto")
MAX_SEGMENT_SECONDS = 15.0  # a longer utterance is split at sentence ends
SENTENCE_GAP = 0.8  # seconds of silence between words that end a sentence in the fallback (Deepgram's utt_split)
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]['\"\u201d\u2019)\]]*$")
_NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})

_AUDIO_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".webm": "audio/webm", ".m4a": "audio/mp4", ".mp4": "video/mp4",
    ".aac": "audio/aac", ".amr": "audio/amr", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
}

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


def _word_speakers(results: dict[str, Any], channel: dict[str, Any]) -> dict[tuple[float, float], str]:
    """(start, end) of each word -> Deepgram's speaker number as text ("0", "1", ...), when diarized."""
    found: dict[tuple[float, float], str] = {}
    sources: list[Any] = []
    if isinstance(results.get("utterances"), list):
        sources.extend(u.get("words") for u in results["utterances"] if isinstance(u, dict))
    alternatives = channel.get("alternatives") if isinstance(channel.get("alternatives"), list) else []
    if alternatives and isinstance(alternatives[0], dict):
        sources.append(alternatives[0].get("words"))
    for words in sources:
        for w in words if isinstance(words, list) else []:
            if not isinstance(w, dict) or not isinstance(w.get("speaker"), int):
                continue
            start, end = _number(w.get("start")), _number(w.get("end"))
            if start is not None and end is not None:
                found[(round(start, 3), round(max(end, start), 3))] = str(w["speaker"])
    return found


Piece = tuple[float, float, str, tuple[Word, ...]]


def _by_speaker(pieces: list[Piece], said_by: dict[tuple[float, float], str], language: str | None
                ) -> list[tuple[float, float, str, tuple[Word, ...], str | None]]:
    """Pieces cut where the speaker of their words changes, each with its speaker (None when not diarized)."""
    out: list[tuple[float, float, str, tuple[Word, ...], str | None]] = []
    for start, end, text, words in pieces:
        who = [said_by.get((w.start, w.end)) for w in words]
        if not said_by or not words or len(set(who)) <= 1:
            out.append((start, end, text, words, who[0] if who else None))
            continue
        first = 0
        for i in range(1, len(words) + 1):
            if i == len(words) or who[i] != who[first]:
                run = words[first:i]
                out.append((run[0].start, run[-1].end, _join(run, language), tuple(run), who[first]))
                first = i
    return out


def parse_listen(data: Any, requested_language: str | None, model: str,
                 max_segment_seconds: float | None = MAX_SEGMENT_SECONDS) -> Transcript:
    """A `/v1/listen` answer as a Transcript: segments 0..n-1 in time order, empty for silence."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise EngineError(ErrorCode.ENGINE_FAILED, "Deepgram answered without results")
    results: dict[str, Any] = data["results"]
    metadata: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    channels = results.get("channels") if isinstance(results.get("channels"), list) else []
    first = channels[0] if channels and isinstance(channels[0], dict) else {}

    confidence: float | None = None
    if requested_language:
        language = normalize(requested_language) or requested_language.lower()
    else:  # detect_language=true: each channel has `detected_language` and `language_confidence`
        detected = first.get("detected_language")
        language = (normalize(detected) or str(detected).lower()) if detected else "und"
        confidence = _number(first.get("language_confidence"))
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
    said_by = _word_speakers(results, first)
    segments = tuple(Segment(id=i, start=s, end=e, text=t, words=w, speaker=who)
                     for i, (s, e, t, w, who) in enumerate(_by_speaker(pieces, said_by, lang_key)))

    duration = _number(metadata.get("duration"))
    if duration is None:
        duration = max((s.end for s in segments), default=0.0)
    return Transcript(language=language, duration=round(duration, 3), segments=segments, engine=PROVIDER,
                      model=model, language_confidence=None if confidence is None else round(confidence, 4))


class DeepgramTranscriber:
    """Transcriber over Deepgram's pre-recorded API; takes a local file or a URL Deepgram can fetch."""

    name = PROVIDER
    accepts_url = True
    detects = True  # detect_language=true, within the transcription request

    def __init__(self, client: ProviderClient, model: str = DEFAULT_STT_MODEL, *,
                 max_segment_seconds: float | None = MAX_SEGMENT_SECONDS) -> None:
        self.client = client
        self.model = model
        self.max_segment_seconds = max_segment_seconds

    def understands(self, language: str) -> bool:
        return True  # the model decides; an unsupported language is Deepgram's 400, reported as such

    async def detect(self, audio_path: str) -> LanguageGuess | None:
        return None  # detection comes with the transcript (`language`, `language_confidence`)

    def params(self, language: str | None) -> dict[str, str]:
        # diarize: a speaker per word (`words[].speaker`, 0, 1, ...), the segments cut where it changes.
        params = {"model": self.model, "smart_format": "true", "utterances": "true", "diarize": "true"}
        if language in _AUTO:
            params["detect_language"] = "true"
        else:
            params["language"] = str(language).strip()
        return params

    async def transcribe(
        self, audio_path: str | None, language: str | None, *, audio_url: str | None = None,
        usage: Usage | None = None, on_progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """One request: Deepgram says nothing until it is done, so `on_progress` is never called."""
        requested = None if language in _AUTO else str(language).strip()
        request: dict[str, Any] = {"params": self.params(requested)}
        if audio_url:
            request["json"] = {"url": audio_url}
        elif audio_path:
            try:
                size = await aiofiles.os.path.getsize(audio_path)
            except OSError:
                raise EngineError(ErrorCode.BAD_INPUT, f"audio file not found: {audio_path}") from None
            if size == 0:
                raise EngineError(ErrorCode.BAD_INPUT, f"audio file is empty: {audio_path}")
            request["content"] = FileBody(audio_path)
            request["headers"] = {"Content-Type": audio_content_type(audio_path), "Content-Length": str(size)}
        else:
            raise EngineError(ErrorCode.BAD_INPUT, "Deepgram needs an audio file or an audio URL")
        try:
            data = await self.client.json("POST", LISTEN, endpoint="listen", **request)
        except ProviderError as exc:
            raise failure(exc, "transcription") from None
        transcript = parse_listen(data, requested, self.model, self.max_segment_seconds)
        add_usage(usage, stt_audio_seconds=transcript.duration)
        return transcript
