"""Translation for dubbing with OpenAI chat completions and strict structured outputs.

Segments go out in batches as JSON `{"id", "text", "max_chars"?}` and come back through a strict JSON
schema `{"segments": [{"id", "text"}]}`. An answer that cannot be trusted (a refusal, output cut at the
token limit, content that does not parse, ids or counts that do not match the request) is never
accepted partly: that batch is asked again in halves, down to single segments, and a single segment
that still fails is an `EngineError` (`translation_refused`, `translation_truncated`,
`translation_misaligned`, `translation_malformed`). HTTP-level retries (408/409/429/5xx, timeouts)
happen below, in the shared `ProviderClient`; what is left is mapped to `provider_auth`,
`provider_quota`, `provider_rejected` or `provider_unavailable` (the one worth a later attempt).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from service.engines.protocols import Usage, add_usage
from service.errors import BadAnswer, EngineError, ErrorCode, ProviderError
from service.languages import normalize
from service.providers.errors import engine_error, error_parser
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings

log = structlog.get_logger(__name__)

PROVIDER = "openai"
DEFAULT_MODEL = "gpt-4o-mini"
ENDPOINT = "/chat/completions"
# Source characters and segments per request: well inside gpt-4o-mini's 16k output tokens even for
# targets that take many tokens per character, and small enough that a bad answer costs little.
DEFAULT_BATCH_CHARS = 5000
DEFAULT_MAX_SEGMENTS = 50
CONTEXT_LINES = 2  # earlier source lines sent along (not translated) so batches read as one text


def _strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object as strict structured outputs want it: every property required, nothing else allowed."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


TRANSLATION_SCHEMA: dict[str, Any] = _strict_object({
    "segments": {
        "type": "array",
        "items": _strict_object({"id": {"type": "integer"}, "text": {"type": "string"}}),
    },
})
SHORTEN_SCHEMA: dict[str, Any] = _strict_object({"text": {"type": "string"}})


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


TRANSLATE_PROMPT = """\
You translate the lines of a transcript for dubbing: a voice will speak each translated line in place \
of the original speech, in the same time slot.
- Translate from {source} into {target} (ISO 639-1 codes). Write natural spoken {target}, as a native \
speaker would say it aloud; keep the meaning, tone and register. No notes, explanations or brackets.
- The user message is JSON. Translate every item of "segments" on its own and return exactly one output \
per id, with the same id, in the same order. Never merge, split, drop or add segments: a sentence may \
run across segments, so keep each part in its own segment.
- When an item has "max_chars", its translation must be at most that many characters, spaces included: \
prefer a shorter natural phrasing to a literal one, but keep the meaning.
- Items with the same "sentence" number are consecutive parts of one sentence, split where the speaker \
paused. Translate that sentence as a whole, then divide your translation among its items in order, so \
each item says what the speaker says in that part and the parts read as one sentence when joined.
- "context_before" holds earlier lines, for context only: do not translate or return them."""

SHORTEN_PROMPT = """\
You shorten one line of a dubbing translation so it can be spoken in its time slot.
- The user message is JSON: the original line ("source_text", in {source}), its current translation \
("translation", in {target}) and "max_chars".
- Say the same thing again in natural spoken {target} in at most max_chars characters, spaces included: \
use shorter words and phrasing, drop filler, keep the meaning and tone. No notes or explanations.
- Return only the new line in "text"."""


@dataclass(frozen=True, slots=True)
class _Item:
    id: int  # the segment's position in the input
    text: str
    budget: int | None
    sentence: int | None = None  # shared by the parts of a sentence cut by pauses


@dataclass(frozen=True, slots=True)
class _Call:
    source: str
    target: str
    texts: list[str]  # all (normalised) inputs, for context lines
    usage: Usage | None


def _extract(body: Any) -> tuple[str | None, str | None]:
    """OpenAI's `{"error": {"message", "type", "param", "code"}}`; some OpenAI-compatible servers answer
    `{"error": "text"}` or `{"detail": ...}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("code") or error.get("type"), error.get("message")
    return None, error if isinstance(error, str) else json.dumps(body)[:300]


def make_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None,
                policy: RetryPolicy | None = None) -> ProviderClient:
    """The shared OpenAI client; create it once (lifespan) and `aclose()` it on shutdown."""
    key = settings.openai_api_key
    if not key:
        raise EngineError(ErrorCode.PROVIDER_AUTH, "OPENAI_API_KEY is not set")
    return ProviderClient(
        name=PROVIDER,
        base_url=settings.openai_base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        concurrency=max(settings.openai_concurrency, 1),
        max_connections=max(settings.openai_concurrency, 1),
        policy=policy or RetryPolicy(),
        error_parser=error_parser(_extract, key),
        request_id_headers=("x-request-id",),
        permanent_codes=frozenset({"insufficient_quota"}),
        transport=transport,
    )


def failure(exc: ProviderError, what: str = "translation") -> EngineError:
    """An OpenAI failure as the engine reports it; `insufficient_quota` is a 429 no waiting fixes."""
    return engine_error(exc, "OpenAI", what, quota_codes=("insufficient_quota",))


def _message_of(data: Any, usage: Usage | None) -> Any:
    """Count the tokens, then return the parsed JSON content of the first choice (or raise BadAnswer)."""
    if isinstance(data, dict) and isinstance(data.get("usage"), dict):
        counts = data["usage"]
        add_usage(usage, openai_prompt_tokens=float(counts.get("prompt_tokens") or 0),
                  openai_completion_tokens=float(counts.get("completion_tokens") or 0))
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "the answer has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "the answer has no message")
    if message.get("refusal"):
        raise BadAnswer(ErrorCode.TRANSLATION_REFUSED, f"the model refused: {str(message['refusal'])[:200]}")
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise BadAnswer(ErrorCode.TRANSLATION_REFUSED, "the output was withheld by the content filter")
    if finish == "length":
        raise BadAnswer(ErrorCode.TRANSLATION_TRUNCATED, "the output was cut at the token limit")
    content = message.get("content")
    if not isinstance(content, str):
        raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "the answer has no text content")
    try:
        return json.loads(content)
    except ValueError:
        raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "the content is not valid JSON") from None


def _aligned(parsed: Any, items: list[_Item]) -> dict[int, str]:
    segments = parsed.get("segments") if isinstance(parsed, dict) else None
    if not isinstance(segments, list):
        raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "the content has no segments list")
    result: dict[int, str] = {}
    for entry in segments:
        if (not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or isinstance(entry["id"], bool)
                or not isinstance(entry.get("text"), str)):
            raise BadAnswer(ErrorCode.TRANSLATION_MALFORMED, "a segment is not {id: integer, text: string}")
        if entry["id"] in result:
            raise BadAnswer(ErrorCode.TRANSLATION_MISALIGNED, f"segment id {entry['id']} came back twice")
        result[entry["id"]] = " ".join(entry["text"].split())
    wanted = {item.id for item in items}
    if len(segments) != len(items) or set(result) != wanted:
        missing = sorted(wanted - set(result))[:5]
        extra = sorted(set(result) - wanted)[:5]
        raise BadAnswer(ErrorCode.TRANSLATION_MISALIGNED,
                         f"{len(segments)} segments came back for {len(items)} (missing {missing}, unexpected {extra})")
    return result


async def _first_error(coroutines: list[Coroutine[Any, Any, dict[int, str]]]) -> list[dict[int, str]]:
    """Run concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [t.result() for t in tasks]


def plan_batches(items: list[_Item], batch_chars: int, max_segments: int) -> list[list[_Item]]:
    """Consecutive runs of segments within both limits; a segment longer than the limit goes alone, and
    the parts of one sentence stay in one batch unless the sentence alone is over the limits."""
    batches: list[list[_Item]] = []
    current: list[_Item] = []
    size = 0
    for item in items:
        continues_sentence = bool(current) and item.sentence is not None and current[-1].sentence == item.sentence
        over = size + len(item.text) > batch_chars or len(current) >= max_segments
        hard_over = size + len(item.text) > 2 * batch_chars or len(current) >= 2 * max_segments
        if current and (hard_over or (over and not continues_sentence)):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.text)
    if current:
        batches.append(current)
    return batches


class OpenAITranslator:
    """Any language pair; honours per-segment character budgets; can shorten a line (Shortener)."""

    name = "openai"

    def __init__(self, client: ProviderClient, model: str = DEFAULT_MODEL, *,
                 batch_chars: int = DEFAULT_BATCH_CHARS, max_segments_per_batch: int = DEFAULT_MAX_SEGMENTS,
                 temperature: float | None = 0.2) -> None:
        if batch_chars < 1 or max_segments_per_batch < 1:
            raise ValueError("batch limits must be positive")
        self.client = client
        self.model = model
        self.batch_chars = batch_chars
        self.max_segments_per_batch = max_segments_per_batch
        # None leaves it out (reasoning models accept only the default).
        self.temperature = temperature

    def pairs(self) -> set[tuple[str, str]]:
        return set()

    def supports(self, source: str, target: str) -> bool:
        src, tgt = normalize(source), normalize(target)
        return src is not None and tgt is not None and src != tgt

    def pivot_for(self, source: str, target: str) -> str | None:
        return None  # every pair is direct

    async def translate(
        self, texts: list[str], source: str, target: str, *, budgets: list[int | None] | None = None,
        groups: list[int] | None = None, usage: Usage | None = None,
    ) -> list[str]:
        if budgets is not None and len(budgets) != len(texts):
            raise EngineError(ErrorCode.BAD_INPUT, f"{len(budgets)} budgets for {len(texts)} segments")
        src, tgt = normalize(source), normalize(target)
        if src is None or tgt is None:
            raise EngineError(ErrorCode.UNSUPPORTED_LANGUAGE, f"not an ISO 639-1 language pair: {source}->{target}")
        clean = [" ".join(t.split()) for t in texts]
        result = [""] * len(texts)  # empty segments stay empty without being sent
        if src == tgt:
            return clean
        sizes: dict[int, int] = {}
        for group in groups or []:
            sizes[group] = sizes.get(group, 0) + 1
        items = [
            _Item(i, text, budgets[i] if budgets is not None and (budgets[i] or 0) > 0 else None,
                  groups[i] if groups is not None and sizes.get(groups[i], 0) > 1 else None)
            for i, text in enumerate(clean) if text
        ]
        if not items:
            return result
        call = _Call(src, tgt, clean, usage)
        batches = plan_batches(items, self.batch_chars, self.max_segments_per_batch)
        for translated in await _first_error([self._batch(call, batch) for batch in batches]):
            for index, text in translated.items():
                result[index] = text
        return result

    async def _batch(self, call: _Call, items: list[_Item]) -> dict[int, str]:
        """Translate one batch; an unusable answer is asked again in halves, down to single segments."""
        try:
            return await self._request(call, items)
        except BadAnswer as bad:
            if len(items) == 1:
                raise EngineError(bad.code, f"segment {items[0].id}: {bad.message}") from None
            half = len(items) // 2
            log.warning("openai.batch_split", code=bad.code, reason=bad.message, segments=len(items),
                        first_id=items[0].id)
            first = await self._batch(call, items[:half])
            return first | await self._batch(call, items[half:])

    def _user_message(self, call: _Call, items: list[_Item]) -> str:
        context = [t for t in call.texts[:items[0].id] if t][-CONTEXT_LINES:]
        segments: list[dict[str, Any]] = []
        for item in items:
            entry: dict[str, Any] = {"id": item.id, "text": item.text}
            if item.sentence is not None:
                entry["sentence"] = item.sentence
            if item.budget is not None:
                entry["max_chars"] = item.budget
            segments.append(entry)
        payload: dict[str, Any] = {"source_language": call.source, "target_language": call.target}
        if context:
            payload["context_before"] = context
        payload["segments"] = segments
        return json.dumps(payload, ensure_ascii=False)

    def _body(self, system: str, user: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": response_format(name, schema),
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    async def _complete(self, body: dict[str, Any], what: str) -> Any:
        try:
            return await self.client.json("POST", ENDPOINT, endpoint="chat.completions", json=body)
        except ProviderError as exc:
            raise failure(exc, what) from None

    async def _request(self, call: _Call, items: list[_Item]) -> dict[int, str]:
        body = self._body(TRANSLATE_PROMPT.format(source=call.source, target=call.target),
                          self._user_message(call, items), "dub_translation", TRANSLATION_SCHEMA)
        parsed = _message_of(await self._complete(body, "translation"), call.usage)
        return _aligned(parsed, items)

    async def shorten(
        self, text: str, source_text: str, source: str, target: str, max_chars: int, *, usage: Usage | None = None
    ) -> str:
        """A shorter rendering of `text` within `max_chars` if the model manages; the caller checks the length."""
        src, tgt = normalize(source) or source, normalize(target) or target
        user = json.dumps({"source_language": src, "target_language": tgt, "source_text": " ".join(source_text.split()),
                           "translation": " ".join(text.split()), "max_chars": max(int(max_chars), 1)},
                          ensure_ascii=False)
        body = self._body(SHORTEN_PROMPT.format(source=src, target=tgt), user, "dub_shorter_line", SHORTEN_SCHEMA)
        try:
            parsed = _message_of(await self._complete(body, "shortening"), usage)
        except BadAnswer as bad:
            raise EngineError(bad.code, f"shortening: {bad.message}") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
            raise EngineError(ErrorCode.TRANSLATION_MALFORMED, "shortening: the content is not {text: string}")
        return " ".join(parsed["text"].split())


async def check(client: ProviderClient, model: str | None = None) -> str:
    """A cheap authenticated call for `doctor`: the model's record, or the model list."""
    path = f"/models/{model}" if model else "/models"
    try:
        data = await client.json("GET", path, endpoint="models")
    except ProviderError as exc:
        raise failure(exc, "check") from None
    if model:
        owner = data.get("owned_by") if isinstance(data, dict) else None
        return f"openai: model {model} available" + (f" (owned by {owner})" if owner else "")
    models = data.get("data") if isinstance(data, dict) else None
    return f"openai: {len(models) if isinstance(models, list) else 0} models available"
