"""Local storage's signed URLs, on Supabase Storage's wire format."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import jwt
import pytest

from service.errors import StorageError
from service.settings import Settings
from service.storage import tokens
from service.storage.local import LocalStorage, check_object_path
from tests.support import JWT_SECRET, Service, running_service, wav_bytes


@pytest.fixture
async def service(settings: Settings):  # type: ignore[no-untyped-def]
    async with running_service(settings.with_overrides(max_upload_bytes=200_000), run_supervisor=False) as svc:
        yield svc


async def _signed_upload(service: Service, user: str = "alice", size: int = 1000) -> dict[str, str]:
    response = await service.client.post(
        "/v1/uploads", headers=service.auth(user),
        json={"files": [{"kind": "voice", "filename": "v.wav", "content_type": "audio/wav", "size_bytes": size}]},
    )
    assert response.status_code == 201
    return dict(response.json()["uploads"][0])


async def test_put_then_download_with_ranges_and_etag(service: Service) -> None:
    data = wav_bytes(1.0)
    upload = await _signed_upload(service, size=len(data))
    put = await service.client.put(upload["upload_url"], content=data, headers={"Content-Type": "audio/wav"})
    assert put.status_code == 200
    assert put.json() == {"Key": f"dubbing/{upload['object_path']}"}

    storage: LocalStorage = service.services.storage
    url = (await storage.create_download_url(upload["object_path"], 60)).url
    full = await service.client.get(url)
    assert full.status_code == 200
    assert hashlib.sha256(full.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert full.headers["content-type"] == "audio/wav"
    part = await service.client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    cached = await service.client.get(url, headers={"If-None-Match": full.headers["etag"]})
    assert cached.status_code == 304
    beyond = await service.client.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416


async def test_multipart_upload_like_supabase_js(service: Service) -> None:
    data = wav_bytes(0.5)
    upload = await _signed_upload(service, size=len(data))
    response = await service.client.put(
        upload["upload_url"], files={"": ("v.wav", data, "audio/wav")}, data={"cacheControl": "3600"}
    )
    assert response.status_code == 200, response.text
    info = await service.services.storage.stat(upload["object_path"])
    assert info.size_bytes == len(data) and info.content_type == "audio/wav"


async def test_token_bound_to_one_path_and_scope(service: Service) -> None:
    upload = await _signed_upload(service)
    token = upload["upload_url"].split("token=")[1]
    other_path = f"{service.base_url}/storage/v1/object/upload/sign/dubbing/alice/uploads/other/voice.wav"
    wrong_path = await service.client.put(f"{other_path}?token={token}", content=b"x",
                                          headers={"Content-Type": "audio/wav"})
    assert wrong_path.status_code == 403
    assert wrong_path.json()["statusCode"] == "403"
    download_with_upload_token = await service.client.get(
        upload["upload_url"].replace("/object/upload/sign/", "/object/sign/"))
    assert download_with_upload_token.status_code == 400
    assert download_with_upload_token.json()["code"] == "InvalidJWT"
    no_token = await service.client.put(upload["upload_url"].split("?")[0], content=b"x")
    assert no_token.status_code == 400


async def test_expired_and_forged_tokens(service: Service) -> None:
    upload = await _signed_upload(service)
    path = upload["object_path"]
    base = upload["upload_url"].split("?")[0]
    key = tokens.storage_key(JWT_SECRET)
    expired = jwt.encode({"url": f"dubbing/{path}", "scope": "upload", "exp": int(time.time()) - 10}, key,
                         algorithm="HS256")
    response = await service.client.put(f"{base}?token={expired}", content=b"x", headers={"Content-Type": "audio/wav"})
    assert response.status_code == 400
    assert "exp" in response.json()["message"]
    forged = jwt.encode({"url": f"dubbing/{path}", "scope": "upload", "exp": int(time.time()) + 60}, "guess" * 10,
                        algorithm="HS256")
    response = await service.client.put(f"{base}?token={forged}", content=b"x", headers={"Content-Type": "audio/wav"})
    assert response.status_code == 400


async def test_upload_limits_leave_nothing_behind(service: Service) -> None:
    upload = await _signed_upload(service)
    too_big = await service.client.put(upload["upload_url"], content=b"\0" * 300_000,
                                       headers={"Content-Type": "audio/wav"})
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "EntityTooLarge"
    wrong_type = await service.client.put(upload["upload_url"], content=b"hello",
                                          headers={"Content-Type": "text/html"})
    assert wrong_type.status_code == 415

    async def chunked():  # no Content-Length: the limit is enforced while streaming
        for _ in range(40):
            yield b"\0" * 10_000

    streamed = await service.client.put(upload["upload_url"], content=chunked(), headers={"Content-Type": "audio/wav"})
    assert streamed.status_code == 413
    storage: LocalStorage = service.services.storage
    assert await storage.stat(upload["object_path"]) is None
    leftovers = [p for p in Path(storage.root).rglob("*") if p.is_file() and p.name != "jwt_secret"]
    assert leftovers == []


async def test_second_upload_to_same_path_conflicts(service: Service) -> None:
    upload = await _signed_upload(service, size=len(wav_bytes()))
    first = await service.client.put(upload["upload_url"], content=wav_bytes(), headers={"Content-Type": "audio/wav"})
    second = await service.client.put(upload["upload_url"], content=wav_bytes(), headers={"Content-Type": "audio/wav"})
    assert (first.status_code, second.status_code) == (200, 409)


async def test_a_signed_upload_url_writes_once_even_when_asked_to_overwrite(service: Service) -> None:
    original = wav_bytes(1.0)
    upload = await _signed_upload(service, size=len(original))
    first = await service.client.put(upload["upload_url"], content=original, headers={"Content-Type": "audio/wav"})
    assert first.status_code == 200
    replay = await service.client.put(upload["upload_url"], content=wav_bytes(1.0, freq=880.0),
                                      headers={"Content-Type": "audio/wav", "x-upsert": "true"})
    assert replay.status_code == 409 and replay.json()["statusCode"] == "409"
    async with service.services.storage.local_copy(upload["object_path"]) as path:
        assert Path(path).read_bytes() == original


async def test_an_upload_must_be_the_size_it_declared(service: Service) -> None:
    upload = await _signed_upload(service, size=1000)
    wav = {"Content-Type": "audio/wav"}
    bigger = await service.client.put(upload["upload_url"], content=b"\0" * 235_000, headers=wav)
    assert bigger.status_code == 413
    smaller = await service.client.put(upload["upload_url"], content=b"\0" * 999, headers=wav)
    assert smaller.status_code == 400 and "1000" in smaller.json()["message"]
    storage: LocalStorage = service.services.storage
    assert await storage.stat(upload["object_path"]) is None
    exact = await service.client.put(upload["upload_url"], content=b"\0" * 1000, headers=wav)
    assert exact.status_code == 200


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b", "a\x00b",
                                  ".meta/x"])
def test_paths_cannot_escape_the_root(path: str) -> None:
    with pytest.raises(StorageError):
        check_object_path(path)


async def test_traversal_through_the_url_is_refused(service: Service) -> None:
    storage: LocalStorage = service.services.storage
    key = tokens.storage_key(JWT_SECRET)
    token, _ = tokens.sign(key, "dubbing", "../../secret.wav", tokens.UPLOAD, 60)
    url = f"{service.base_url}/storage/v1/object/upload/sign/dubbing/..%2F..%2Fsecret.wav?token={token}"
    response = await service.client.put(url, content=b"x", headers={"Content-Type": "audio/wav"})
    assert response.status_code in (400, 403, 404)
    assert not (Path(storage.root).parent / "secret.wav").exists()


async def test_concurrent_uploads_never_expose_partial_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, "b", "http://x", JWT_SECRET)

    async def body(byte: bytes):
        for _ in range(50):
            yield byte * 4096
            await asyncio.sleep(0)

    await asyncio.gather(*(storage.receive(f"u/{i}.wav", body(bytes([i])), "audio/wav", 10**7) for i in range(5)))
    for i in range(5):
        target = storage.file_path(f"u/{i}.wav")
        assert target.read_bytes() == bytes([i]) * 4096 * 50
    assert not list(tmp_path.rglob("*.part"))
