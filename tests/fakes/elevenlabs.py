"""ElevenLabs answered by respx in its documented shapes: text-to-speech (raw PCM at 24 kHz), instant voice
clones (`POST /v1/voices/add`, multipart), deleting and listing voices, and its error bodies
(`{"detail": {"status", "message"}}`; a 422's `{"detail": [{"loc", "msg", "type"}]}`)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import respx

BASE = "https://api.elevenlabs.io"
KEY = "el_SECRET_KEY_321"


def pcm_speech(seconds: float, pitch: float = 180.0) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    voice = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (voice * 32767).astype("<i2").tobytes()


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"detail": {"status": code, "message": message}}, headers=headers or {})


UNPROCESSABLE = httpx.Response(422, json={"detail": [{"loc": ["body", "text"], "msg": "field required",
                                                      "type": "value_error.missing"}]})


@dataclass
class FakeElevenLabs:
    seconds_per_char: float = 0.06
    voices: dict[str, str] = field(default_factory=dict)  # voice_id -> name: the account's cloned voices
    speak_requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Answers to give before the normal ones, per endpoint ("speak", "add", "delete"): consumed in order.
    faults: dict[str, list[httpx.Response]] = field(default_factory=dict)
    requires_verification: bool = False

    def install(self, router: respx.MockRouter) -> None:
        router.post(url__regex=rf"{BASE}/v1/text-to-speech/(?P<voice_id>[^/?]+)").mock(side_effect=self.speak)
        router.post(f"{BASE}/v1/voices/add").mock(side_effect=self.add)
        router.delete(url__regex=rf"{BASE}/v1/voices/(?P<voice_id>[^/?]+)").mock(side_effect=self.delete)
        router.get(f"{BASE}/v1/voices").mock(side_effect=self.list)

    def _fault(self, endpoint: str) -> httpx.Response | None:
        queue = self.faults.get(endpoint) or []
        return queue.pop(0) if queue else None

    def speak(self, request: httpx.Request, voice_id: str) -> httpx.Response:
        assert request.headers["xi-api-key"] == KEY
        if fault := self._fault("speak"):
            return fault
        assert request.url.params["output_format"] == "pcm_24000"
        body = json.loads(request.content)
        self.speak_requests.append((voice_id, body, dict(request.url.params)))
        if voice_id.startswith("clone-") and voice_id not in self.voices:
            return error(400, "voice_not_found", f"A voice with voice_id {voice_id} was not found.")
        speed = float(body.get("voice_settings", {}).get("speed", 1.0))
        return httpx.Response(200, content=pcm_speech(len(body["text"]) * self.seconds_per_char / speed),
                              headers={"content-type": "audio/pcm", "request-id": "el-req-1",
                                       "x-character-count": str(len(body["text"]))})

    def add(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["xi-api-key"] == KEY
        assert request.headers["content-type"].startswith("multipart/form-data")
        if fault := self._fault("add"):
            return fault
        content = request.read()
        name = re.search(rb'name="name"\r\n\r\n([^\r]+)', content)
        assert name is not None and b'name="files"; filename="sample.wav"' in content
        voice_id = f"clone-{uuid.uuid4().hex[:12]}"
        self.voices[voice_id] = name.group(1).decode()
        self.added.append({"name": name.group(1).decode(), "voice_id": voice_id, "bytes": len(content)})
        return httpx.Response(200, json={"voice_id": voice_id, "requires_verification": self.requires_verification})

    def delete(self, request: httpx.Request, voice_id: str) -> httpx.Response:
        if fault := self._fault("delete"):
            return fault
        if voice_id not in self.voices:
            return error(400, "voice_not_found", f"A voice with voice_id {voice_id} was not found.")
        del self.voices[voice_id]
        self.deleted.append(voice_id)
        return httpx.Response(200, json={"status": "ok"})

    def list(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"voices": [
            {"voice_id": v, "name": n, "category": "cloned", "labels": {}} for v, n in self.voices.items()]})
