"""Supabase Storage, Deepgram and OpenAI answered by respx, on their documented wire shapes.

An in-memory bucket stands behind the Storage routes, so objects uploaded by the "browser" and by
the worker can be read back; Deepgram's listen answers with the sample's real speech times, speak
answers with a WAV whose length follows the text, and OpenAI translates by a fixed rule.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import numpy as np
import respx
import soundfile

from service.settings import Settings

PROJECT = "https://proj.supabase.co"
STORAGE = f"{PROJECT}/storage/v1"
DEEPGRAM = "https://api.deepgram.com"
OPENAI = "https://api.openai.com/v1"
SIGNING_KEY = "fake-storage-signing-key-" * 2


SECRETS = {"supabase": "sb_secret_SUPERSECRETVALUE123", "deepgram": "dg_SECRET_KEY_456",
           "openai": "sk-proj-SECRETKEY789", "jwt": "legacy-jwt-secret-" * 3}


def cloud_settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        supabase_url=PROJECT, supabase_service_key=SECRETS["supabase"], jwt_secret=SECRETS["jwt"],
        deepgram_api_key=SECRETS["deepgram"], openai_api_key=SECRETS["openai"], cpu_workers=2,
    )


def _storage_error(status: int, code: str, message: str) -> httpx.Response:
    """Storage's habit: HTTP 400 with the real status as a string in the body."""
    return httpx.Response(400, json={"statusCode": str(status), "code": code, "error": code, "message": message})


def _token(bucket_path: str, scope: str, ttl: int) -> str:
    now = int(time.time())
    return jwt.encode({"url": bucket_path, "scope": scope, "iat": now, "exp": now + ttl}, SIGNING_KEY,
                      algorithm="HS256")


def speech_wav(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    padded = np.concatenate([np.zeros(rate // 10), voice, np.zeros(rate // 10)]).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, padded, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class FakeCloud:
    lines: list[tuple[float, float, str]]
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    listen_bodies: list[Any] = field(default_factory=list)
    speak_texts: list[str] = field(default_factory=list)
    chat_requests: list[Any] = field(default_factory=list)
    seconds_per_char: float = 0.055

    def install(self, router: respx.MockRouter) -> None:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{PROJECT}/auth/v1/.well-known/jwks.json").mock(return_value=httpx.Response(200, json={"keys": []}))
        router.post(url__regex=rf"{STORAGE}/object/upload/sign/(?P<bp>.+)").mock(side_effect=self.sign_upload)
        router.put(url__regex=rf"{STORAGE}/object/upload/sign/(?P<bp>[^?]+)").mock(side_effect=self.browser_put)
        router.post(url__regex=rf"{STORAGE}/object/sign/(?P<bp>.+)").mock(side_effect=self.sign_download)
        router.get(url__regex=rf"{STORAGE}/object/sign/(?P<bp>[^?]+)").mock(side_effect=self.signed_get)
        router.get(url__regex=rf"{STORAGE}/object/info/(?P<bp>.+)").mock(side_effect=self.info)
        router.get(url__regex=rf"{STORAGE}/object/authenticated/(?P<bp>.+)").mock(side_effect=self.authenticated_get)
        router.post(url__regex=rf"{STORAGE}/object/(?P<bp>(?!sign/|upload/|info/|list/).+)").mock(
            side_effect=self.service_upload)
        router.post(f"{DEEPGRAM}/v1/listen").mock(side_effect=self.listen)
        router.post(f"{DEEPGRAM}/v1/speak").mock(side_effect=self.speak)
        router.post(f"{OPENAI}/chat/completions").mock(side_effect=self.chat)

    # -- Supabase Storage ----------------------------------------------------------------------
    def sign_upload(self, request: httpx.Request, bp: str) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer ") and request.headers["apikey"]
        bucket_path = unquote(bp)
        token = _token(bucket_path, "upload", 7200)
        return httpx.Response(200, json={"url": f"/object/upload/sign/{bucket_path}?token={token}", "token": token})

    def browser_put(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        claims = jwt.decode(request.url.params["token"], SIGNING_KEY, algorithms=["HS256"])
        if claims["url"] != bucket_path:
            return _storage_error(400, "InvalidSignature", "The url does not match the signature")
        if bucket_path in self.objects:
            return _storage_error(409, "Duplicate", "The resource already exists")
        self.objects[bucket_path] = (request.content, request.headers["content-type"])
        return httpx.Response(200, json={"Key": bucket_path})

    def sign_download(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        if bucket_path not in self.objects:
            return _storage_error(404, "NoSuchKey", "Object not found")
        expires = json.loads(request.content)["expiresIn"]
        token = _token(bucket_path, "download", expires)
        return httpx.Response(200, json={"signedURL": f"/object/sign/{bucket_path}?token={token}"})

    def signed_get(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        jwt.decode(request.url.params["token"], SIGNING_KEY, algorithms=["HS256"])
        data, content_type = self.objects[bucket_path]
        return httpx.Response(200, content=data, headers={"content-type": content_type})

    def info(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        if bucket_path not in self.objects:
            return _storage_error(404, "NoSuchKey", "Object not found")
        data, content_type = self.objects[bucket_path]
        bucket, name = bucket_path.split("/", 1)
        return httpx.Response(200, json={
            "id": "0b4c0a1e-0000-4000-8000-000000000000", "name": name, "version": "v1", "bucket_id": bucket,
            "size": len(data), "content_type": content_type, "cache_control": "max-age=3600",
            "etag": '"abc"', "metadata": {}, "last_modified": "2026-11-24T12:00:00.000Z",
            "created_at": "2026-11-24T12:00:00.000Z"})

    def authenticated_get(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        if bucket_path not in self.objects:
            return _storage_error(404, "NoSuchKey", "Object not found")
        data, content_type = self.objects[bucket_path]
        return httpx.Response(200, content=data, headers={"content-type": content_type})

    def service_upload(self, request: httpx.Request, bp: str) -> httpx.Response:
        bucket_path = unquote(bp)
        if bucket_path in self.objects and request.headers.get("x-upsert") != "true":
            return _storage_error(409, "Duplicate", "The resource already exists")
        self.objects[bucket_path] = (request.read(), request.headers["content-type"])
        return httpx.Response(200, json={"Id": "5e0b0a1e-0000-4000-8000-000000000000", "Key": bucket_path})

    # -- Deepgram --------------------------------------------------------------------------------
    def listen(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Token ")
        self.listen_bodies.append(json.loads(request.content))
        utterances = []
        for i, (start, end, text) in enumerate(self.lines):
            words = text.split()
            step = (end - start) / len(words)
            utterances.append({
                "start": start, "end": end, "confidence": 0.98, "channel": 0, "transcript": text, "id": f"u{i}",
                "words": [{"word": re.sub(r"[^\w']", "", w).lower(), "start": start + k * step,
                           "end": start + (k + 1) * step, "confidence": 0.98, "punctuated_word": w}
                          for k, w in enumerate(words)]})
        duration = self.lines[-1][1] + 1.0
        return httpx.Response(200, headers={"dg-request-id": "dg-req-1"}, json={
            "metadata": {"request_id": "dg-req-1", "created": "2026-11-24T12:00:00.000Z", "duration": duration,
                         "channels": 1, "models": ["m"], "model_info": {"m": {"name": "general-nova-3"}}},
            "results": {"channels": [{"alternatives": [{"transcript": " ".join(t for *_, t in self.lines),
                                                        "confidence": 0.98, "words": []}]}],
                        "utterances": utterances}})

    def speak(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["encoding"] == "linear16" and request.url.params["container"] == "wav"
        text = json.loads(request.content)["text"]
        self.speak_texts.append(text)
        speed = float(request.url.params.get("speed", "1.0"))
        rate = int(request.url.params.get("sample_rate", "24000"))
        return httpx.Response(200, content=speech_wav(len(text) * self.seconds_per_char / speed, rate),
                              headers={"content-type": "audio/wav", "dg-request-id": "dg-speak"})

    # -- OpenAI ------------------------------------------------------------------------------------
    def chat(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.chat_requests.append(body)
        assert body["response_format"]["json_schema"]["strict"] is True
        user = json.loads(body["messages"][-1]["content"])
        if "segments" in user:
            out: Any = {"segments": [{"id": s["id"], "text": f"es {s['text']}"[: s.get("max_chars") or 999]}
                                     for s in user["segments"]]}
        else:
            out = {"text": str(user["translation"])[: int(user["max_chars"])]}
        return httpx.Response(200, headers={"x-request-id": "req_123"}, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1764000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(out), "refusal": None},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}})
