"""OpenAI translation: what goes over the wire, how answers are checked, how failures surface."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from service.engines.cloud.openai_translate import (
    OpenAITranslator,
    check,
    make_client,
)
from service.engines.protocols import Shortener, Translator
from service.engines.speech_rates import char_budget, chars_per_second
from service.errors import EngineError
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings

KEY = "sk-proj-TESTKEY0123456789abcdefSECRET"
BASE = "https://api.openai.test/v1"
URL = f"{BASE}/chat/completions"
FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, total_timeout=10)
SETTINGS = Settings(openai_api_key=KEY, openai_base_url=BASE, openai_concurrency=4)


@pytest.fixture
async def client() -> AsyncIterator[ProviderClient]:
    provider = make_client(SETTINGS, policy=FAST)
    yield provider
    await provider.aclose()


def completion(content: str | None, *, refusal: str | None = None, finish: str = "stop",
               prompt_tokens: int = 120, completion_tokens: int = 30) -> dict[str, Any]:
    """A chat completion shaped like the example in OpenAI's API reference."""
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
            "logprobs": None,
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }


def sent(request: httpx.Request) -> dict[str, Any]:
    """The segments payload the user message carried."""
    body = json.loads(request.content)
    return dict(json.loads(body["messages"][1]["content"]))


def answer(segments: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=completion(json.dumps({"segments": segments}, ensure_ascii=False), **kwargs),
                          headers={"x-request-id": "req_abc123"})


def translating(transform: Callable[[list[dict[str, Any]]], httpx.Response] | None = None
                ) -> Callable[[httpx.Request], httpx.Response]:
    """A fake model: 'ES<text>' for every segment sent, unless `transform` decides otherwise."""
    def respond(request: httpx.Request) -> httpx.Response:
        segments = sent(request)["segments"]
        if transform is not None:
            return transform(segments)
        return answer([{"id": s["id"], "text": f"ES {s['text']}"} for s in segments])
    return respond


def assert_strict(schema: dict[str, Any]) -> None:
    """The strict structured-output rules: objects list every property as required, allow nothing else."""
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False
        assert sorted(schema["required"]) == sorted(schema["properties"])
        for child in schema["properties"].values():
            assert_strict(child)
    if schema.get("type") == "array":
        assert_strict(schema["items"])
    assert "default" not in schema


async def test_request_path_headers_and_body(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=translating())
    translator = OpenAITranslator(client, model="gpt-4o-mini")
    out = await translator.translate(["Hello there.", "How are you?"], "en", "es", budgets=[14, None])
    assert out == ["ES Hello there.", "ES How are you?"]
    assert route.call_count == 1
    request = route.calls[0].request
    assert request.url == URL
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["model"] == "gpt-4o-mini"
    assert 0 <= body["temperature"] <= 0.3
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "dubbing" in system["content"] and "max_chars" in system["content"]
    assert "en" in system["content"] and "es" in system["content"]
    payload = json.loads(user["content"])
    assert payload["segments"] == [{"id": 0, "text": "Hello there.", "max_chars": 14},
                                   {"id": 1, "text": "How are you?"}]
    assert payload["source_language"] == "en" and payload["target_language"] == "es"
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    spec = fmt["json_schema"]
    assert spec["strict"] is True
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", spec["name"]) and spec["name"] == "dub_translation"
    schema = spec["schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["segments"]["items"]["properties"] == {"id": {"type": "integer"},
                                                                      "text": {"type": "string"}}
    assert_strict(schema)


async def test_realistic_response_parsed_and_usage_counted(client: ProviderClient,
                                                           respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=answer(
        [{"id": 0, "text": "Hola a todos."}, {"id": 1, "text": "  Bienvenidos\nal programa. "}],
        prompt_tokens=310, completion_tokens=42))
    usage: dict[str, float] = {"openai_prompt_tokens": 10}
    out = await OpenAITranslator(client).translate(["Hi everyone.", "Welcome to the show."], "en", "es",
                                                   usage=usage)
    assert out == ["Hola a todos.", "Bienvenidos al programa."]
    assert usage == {"openai_prompt_tokens": 320, "openai_completion_tokens": 42}


async def test_empty_segments_stay_empty_and_are_not_sent(client: ProviderClient,
                                                          respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=translating())
    translator = OpenAITranslator(client)
    out = await translator.translate(["", "One.", "   ", "Two."], "en", "fr", budgets=[5, 10, 5, 0])
    assert out == ["", "ES One.", "", "ES Two."]
    assert sent(route.calls[0].request)["segments"] == [{"id": 1, "text": "One.", "max_chars": 10},
                                                        {"id": 3, "text": "Two."}]
    assert await translator.translate(["", " "], "en", "fr") == ["", ""]
    assert await translator.translate([], "en", "fr") == []
    assert route.call_count == 1


async def test_batching_splits_large_inputs(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=translating())
    texts = [f"Sentence number {i}." for i in range(10)]  # 19-20 characters each
    translator = OpenAITranslator(client, batch_chars=45, max_segments_per_batch=3)
    out = await translator.translate(texts, "en", "de")
    assert out == [f"ES {t}" for t in texts]
    batches = [sent(call.request) for call in route.calls]
    assert route.call_count == 5  # two segments fit in 45 characters
    ids = sorted(s["id"] for b in batches for s in b["segments"])
    assert ids == list(range(10))
    for batch in batches:
        assert len(batch["segments"]) <= 3
        assert sum(len(s["text"]) for s in batch["segments"]) <= 45
        first = batch["segments"][0]["id"]
        assert batch.get("context_before", []) == texts[max(first - 2, 0):first]

    route.reset()
    translator = OpenAITranslator(client, batch_chars=10_000, max_segments_per_batch=4)
    assert await translator.translate(texts, "en", "de") == [f"ES {t}" for t in texts]
    assert route.call_count == 3  # 4 + 4 + 2 by segment count


async def test_parts_of_a_sentence_are_marked_and_kept_in_one_batch(client: ProviderClient,
                                                                     respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=translating())
    texts = ["First line.", "I wonder how much", "he could have done", "for them.", "Last line."]
    translator = OpenAITranslator(client, batch_chars=30, max_segments_per_batch=2)
    out = await translator.translate(texts, "en", "es", groups=[0, 1, 1, 1, 2])
    assert out == [f"ES {t}" for t in texts]
    batches = [sent(call.request)["segments"] for call in route.calls]
    sentence = next(b for b in batches if any(s["id"] == 1 for s in b))
    assert {1, 2, 3} <= {s["id"] for s in sentence}  # over the batch limits, but a sentence is not cut
    assert {s.get("sentence") for s in sentence if s["id"] in (1, 2, 3)} == {1}
    assert all("sentence" not in s for b in batches for s in b if s["id"] in (0, 4))  # alone: no mark
    system = json.loads(route.calls[0].request.content)["messages"][0]["content"]
    assert '"sentence"' in system


async def test_wrong_ids_retry_in_halves_and_stay_aligned(client: ProviderClient,
                                                          respx_mock: respx.MockRouter) -> None:
    def shuffled(segments: list[dict[str, Any]]) -> httpx.Response:
        if len(segments) == 4:  # the whole batch comes back with an id off by one
            return answer([{"id": s["id"] + 1, "text": f"ES {s['text']}"} for s in segments])
        return answer([{"id": s["id"], "text": f"ES {s['text']}"} for s in reversed(segments)])

    route = respx_mock.post(URL).mock(side_effect=translating(shuffled))
    texts = ["a one", "b two", "c three", "d four"]
    with capture_logs() as logs:
        out = await OpenAITranslator(client).translate(texts, "en", "it")
    assert out == [f"ES {t}" for t in texts]
    assert [len(sent(c.request)["segments"]) for c in route.calls] == [4, 2, 2]
    assert any(e["event"] == "openai.batch_split" and e["code"] == "translation_misaligned" for e in logs)


async def test_missing_segment_is_a_misalignment(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    def drops_last(segments: list[dict[str, Any]]) -> httpx.Response:
        kept = segments[:-1] if len(segments) > 1 else segments
        return answer([{"id": s["id"], "text": s["text"].upper()} for s in kept])

    route = respx_mock.post(URL).mock(side_effect=translating(drops_last))
    out = await OpenAITranslator(client).translate(["x", "", "y", "z"], "en", "es")
    assert out == ["X", "", "Y", "Z"]
    assert [len(sent(c.request)["segments"]) for c in route.calls] == [3, 1, 2, 1, 1]


async def test_single_segment_still_misaligned_fails(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=answer([{"id": 99, "text": "?"}]))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["only"], "en", "es")
    assert caught.value.code == "translation_misaligned"


async def test_refusal_narrows_to_the_segment(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    def refuses_bad(segments: list[dict[str, Any]]) -> httpx.Response:
        if any(s["text"] == "bad line" for s in segments):
            return httpx.Response(200, json=completion(None, refusal="I'm sorry, I can't help with that."))
        return answer([{"id": s["id"], "text": f"ES {s['text']}"} for s in segments])

    route = respx_mock.post(URL).mock(side_effect=translating(refuses_bad))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["fine", "bad line"], "en", "es")
    assert caught.value.code == "translation_refused"
    assert "segment 1" in caught.value.message and "can't help" in caught.value.message
    assert route.call_count == 3  # the pair, then each half


async def test_refusal_of_a_batch_recovers_in_halves(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[
        httpx.Response(200, json=completion(None, refusal="I can't assist with that.")),
        answer([{"id": 0, "text": "uno"}]),
        answer([{"id": 1, "text": "dos"}]),
    ])
    usage: dict[str, float] = {}
    assert await OpenAITranslator(client).translate(["one", "two"], "en", "es", usage=usage) == ["uno", "dos"]
    assert route.call_count == 3
    assert usage["openai_prompt_tokens"] == 360  # refused answers cost tokens too


async def test_finish_reason_length(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    cut = '{"segments": [{"id": 0, "text": "Hola'
    respx_mock.post(URL).mock(side_effect=[
        httpx.Response(200, json=completion(cut, finish="length")),
        answer([{"id": 0, "text": "Hola"}]),
        answer([{"id": 1, "text": "Adiós"}]),
    ])
    assert await OpenAITranslator(client).translate(["Hello", "Bye"], "en", "es") == ["Hola", "Adiós"]

    respx_mock.post(URL).mock(side_effect=None, return_value=httpx.Response(200, json=completion(cut, finish="length")))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert caught.value.code == "translation_truncated"


async def test_malformed_json_content(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion("Sure! Here you go: {")))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["a", "b"], "en", "es")
    assert caught.value.code == "translation_malformed"
    assert route.call_count == 2  # the pair, then its first half fails for good

    route.return_value = httpx.Response(200, json=completion(json.dumps({"segments": [{"id": 0}]})))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["a"], "en", "es")
    assert caught.value.code == "translation_malformed"

    route.return_value = httpx.Response(200, json={"object": "chat.completion", "choices": []})
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["a"], "en", "es")
    assert caught.value.code == "translation_malformed"


async def test_429_with_retry_after_ms_then_success(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[
        httpx.Response(429, headers={"retry-after-ms": "60", "x-request-id": "req_1"},
                       json={"error": {"message": "Rate limit reached for gpt-4o-mini on requests per min (RPM)",
                                       "type": "requests", "param": None, "code": "rate_limit_exceeded"}}),
        answer([{"id": 0, "text": "Hola"}]),
    ])
    started = time.perf_counter()
    assert await OpenAITranslator(client).translate(["Hello"], "en", "es") == ["Hola"]
    assert route.call_count == 2
    assert time.perf_counter() - started >= 0.06


async def test_5xx_until_attempts_run_out(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(
        503, headers={"x-request-id": "req_503"},
        json={"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error",
                        "param": None, "code": None}}))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert route.call_count == 3
    assert caught.value.code == "provider_unavailable"
    assert "overloaded" in caught.value.message and "3 attempts" in caught.value.message
    assert "req_503" in caught.value.message and "503" in caught.value.message


async def test_timeout_is_retried_then_unavailable(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert route.call_count == 3
    assert caught.value.code == "provider_unavailable" and "timed out" in caught.value.message

    route.side_effect = [httpx.ReadTimeout("slow"), answer([{"id": 0, "text": "Hola"}])]
    assert await OpenAITranslator(client).translate(["Hello"], "en", "es") == ["Hola"]


async def test_401_fails_at_once_and_never_shows_the_key(client: ProviderClient,
                                                          respx_mock: respx.MockRouter) -> None:
    masked = f"{KEY[:8]}{'*' * 20}{KEY[-4:]}"
    route = respx_mock.post(URL).mock(return_value=httpx.Response(401, headers={"x-request-id": "req_401"}, json={
        "error": {"message": f"Incorrect API key provided: {masked}. You can find your API key at "
                             "https://platform.openai.com/account/api-keys.",
                  "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}))
    with capture_logs() as logs, pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert route.call_count == 1
    error = caught.value
    assert error.code == "provider_auth" and "invalid_api_key" in error.message
    for text in (str(error), repr(error), error.message, repr(logs), repr(client)):
        assert KEY not in text and KEY[3:12] not in text and masked not in text


async def test_403_and_other_4xx(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(403, json={"error": {
        "message": "Country, region, or territory not supported", "type": "request_forbidden", "param": None,
        "code": "unsupported_country_region_territory"}}))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert caught.value.code == "provider_auth"

    route.return_value = httpx.Response(400, json={"error": {
        "message": "Invalid schema for response_format 'dub_translation'", "type": "invalid_request_error",
        "param": "response_format", "code": None}})
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert caught.value.code == "provider_rejected" and "Invalid schema" in caught.value.message

    route.return_value = httpx.Response(404, json={"error": {
        "message": "The model `gpt-nope` does not exist", "type": "invalid_request_error", "param": None,
        "code": "model_not_found"}})
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client, model="gpt-nope").translate(["Hello"], "en", "es")
    assert caught.value.code == "provider_rejected" and "model_not_found" in caught.value.message
    assert route.call_count == 3


async def test_quota_exhausted_is_not_retried_later(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(429, json={"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}))
    with pytest.raises(EngineError) as caught:
        await OpenAITranslator(client).translate(["Hello"], "en", "es")
    assert caught.value.code == "provider_quota"


async def test_shorten_request_and_response(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(
        200, json=completion(json.dumps({"text": "Nos vemos mañana."}), prompt_tokens=80, completion_tokens=9)))
    translator = OpenAITranslator(client)
    assert isinstance(translator, Shortener) and isinstance(translator, Translator)
    usage: dict[str, float] = {}
    short = await translator.shorten("Nos volveremos a ver mañana por la mañana.", "See you tomorrow morning.",
                                     "en", "es", 20, usage=usage)
    assert short == "Nos vemos mañana."
    assert usage == {"openai_prompt_tokens": 80, "openai_completion_tokens": 9}
    body = json.loads(route.calls[0].request.content)
    spec = body["response_format"]["json_schema"]
    assert spec["strict"] is True and spec["schema"]["properties"] == {"text": {"type": "string"}}
    assert_strict(spec["schema"])
    user = json.loads(body["messages"][1]["content"])
    assert user == {"source_language": "en", "target_language": "es", "source_text": "See you tomorrow morning.",
                    "translation": "Nos volveremos a ver mañana por la mañana.", "max_chars": 20}

    # Still too long: returned anyway, the caller decides.
    route.return_value = httpx.Response(200, json=completion(json.dumps({"text": "Nos veremos mañana temprano."})))
    assert await translator.shorten("x" * 40, "y", "en", "es", 10) == "Nos veremos mañana temprano."

    route.return_value = httpx.Response(200, json=completion(None, refusal="I can't help with that."))
    with pytest.raises(EngineError) as caught:
        await translator.shorten("x", "y", "en", "es", 10)
    assert caught.value.code == "translation_refused"

    route.return_value = httpx.Response(200, json=completion('{"txt": "x"}'))
    with pytest.raises(EngineError) as caught:
        await translator.shorten("x", "y", "en", "es", 10)
    assert caught.value.code == "translation_malformed"


async def test_check(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(f"{BASE}/models/gpt-4o-mini").mock(return_value=httpx.Response(200, json={
        "id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}))
    assert await check(client, "gpt-4o-mini") == "openai: model gpt-4o-mini available (owned by system)"
    assert route.calls[0].request.headers["authorization"] == f"Bearer {KEY}"
    respx_mock.get(f"{BASE}/models").mock(return_value=httpx.Response(200, json={
        "object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}, {"id": "gpt-4o", "object": "model"}]}))
    assert await check(client) == "openai: 2 models available"
    route.return_value = httpx.Response(401, json={"error": {"message": "bad key", "type": "invalid_request_error",
                                                             "param": None, "code": "invalid_api_key"}})
    with pytest.raises(EngineError) as caught:
        await check(client, "gpt-4o-mini")
    assert caught.value.code == "provider_auth"


async def test_same_language_and_bad_input(client: ProviderClient, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL)
    translator = OpenAITranslator(client)
    assert await translator.translate([" a  b ", ""], "en", "en-US") == ["a b", ""]
    with pytest.raises(EngineError) as caught:
        await translator.translate(["a"], "en", "es", budgets=[1, 2])
    assert caught.value.code == "bad_input"
    with pytest.raises(EngineError) as caught:
        await translator.translate(["a"], "en", "klingon")
    assert caught.value.code == "unsupported_language"
    assert route.call_count == 0


def test_supports_any_pair() -> None:
    translator = OpenAITranslator(make_client(SETTINGS))
    assert translator.name == "openai" and translator.pairs() == set()
    assert translator.supports("en", "ja") and translator.supports("pt-BR", "ca")
    assert not translator.supports("en", "en") and not translator.supports("en", "xx")


def test_make_client_needs_a_key() -> None:
    with pytest.raises(EngineError) as caught:
        make_client(Settings(openai_api_key=None))
    assert caught.value.code == "provider_auth"
    provider = make_client(SETTINGS)
    assert KEY not in repr(provider) and provider.limit._value == 4


def test_speech_rates() -> None:
    assert 14 <= chars_per_second("en") <= 15 and 15 <= chars_per_second("es") <= 16
    assert chars_per_second("ja") < 10 and chars_per_second("zh") < chars_per_second("ja")
    assert chars_per_second("pt-BR") == chars_per_second("pt")
    assert chars_per_second("xx") == chars_per_second("tlh") > 0
    assert char_budget(2.0, "en") == 29
    assert char_budget(2.0, "ja") == 14
    assert char_budget(0.0, "en") == 1 and char_budget(-3, "es") == 1 and char_budget(float("nan"), "es") == 1
