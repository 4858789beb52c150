"""Supabase Storage over REST: exact requests, documented answers, 400-with-a-status-in-the-body errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
import respx

from service.errors import ProviderError, StorageError
from service.providers.http import ProviderClient, RetryPolicy
from service.settings import Settings
from service.storage.supabase import (
    SupabaseStorage,
    make_client,
    parse_object_info,
    parse_storage_error,
    storage_error_from,
)

SUPABASE = "https://proj.supabase.co"
API = f"{SUPABASE}/storage/v1"
# Shaped like a legacy service_role key, so the JWT redaction is exercised too.
KEY = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2VydmljZS1zZWNyZXQtc2ln"
FAST = RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.005, total_timeout=10)


def settings(key: str = KEY) -> Settings:
    return Settings(supabase_url=SUPABASE + "/", supabase_service_key=key, storage_bucket="dubbing",
                    supabase_concurrency=4)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SupabaseStorage]:
    client = make_client(settings(), policy=FAST)
    try:
        yield SupabaseStorage(client, SUPABASE, "dubbing", scratch_dir=tmp_path / "scratch")
    finally:
        await client.aclose()


def token(exp: int | None, **claims: object) -> str:
    payload = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    return jwt.encode(payload, "not-the-project-secret-but-long-enough-for-hs256", algorithm="HS256")


def err(status: str, code: str | None, message: str, error: str | None = None) -> httpx.Response:
    body: dict[str, str] = {"statusCode": status, "error": error or code or "error", "message": message}
    if code:
        body["code"] = code
    return httpx.Response(400, json=body)


def assert_authed(request: httpx.Request) -> None:
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["apikey"] == KEY


# -- client ------------------------------------------------------------------------------------


async def test_make_client_base_url_headers_and_request_ids() -> None:
    client = make_client(settings())
    try:
        assert client.base_url == API
        assert client.headers == {"Authorization": f"Bearer {KEY}", "apikey": KEY}
        assert client.concurrency == 4
        assert "sb-request-id" in client.request_id_headers and "x-request-id" in client.request_id_headers
        assert KEY not in repr(client)
    finally:
        await client.aclose()
    with pytest.raises(ValueError):
        make_client(Settings(supabase_url=SUPABASE))


# -- signed URLs -------------------------------------------------------------------------------


async def test_upload_url_is_absolute_and_expires_with_the_token(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    exp = int(time.time()) + 7200
    tok = token(exp, url="dubbing/u1/uploads/a b.wav", scope="upload", upsert=False)
    route = mock.post(f"{API}/object/upload/sign/dubbing/u1/uploads/a%20b.wav").mock(return_value=httpx.Response(
        200, json={"url": f"/object/upload/sign/dubbing/u1/uploads/a b.wav?token={tok}", "token": tok}))
    signed = await storage.create_upload_url("u1/uploads/a b.wav", 900)
    request = route.calls.last.request
    assert request.method == "POST" and request.content == b""
    assert request.url.raw_path == b"/storage/v1/object/upload/sign/dubbing/u1/uploads/a%20b.wav"
    assert_authed(request)
    assert signed.url == f"{API}/object/upload/sign/dubbing/u1/uploads/a%20b.wav?token={tok}"
    assert signed.token == tok
    assert signed.expires_at == datetime.fromtimestamp(exp, UTC)


async def test_upload_url_without_readable_exp_lasts_two_hours(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    mock.post(f"{API}/object/upload/sign/dubbing/u1/v.wav").mock(return_value=httpx.Response(
        200, json={"url": "/object/upload/sign/dubbing/u1/v.wav?token=opaque"}))
    signed = await storage.create_upload_url("u1/v.wav", 60)
    assert signed.token == "opaque"
    assert signed.url == f"{API}/object/upload/sign/dubbing/u1/v.wav?token=opaque"
    remaining = signed.expires_at - datetime.now(UTC)
    assert timedelta(hours=2) - timedelta(seconds=5) < remaining <= timedelta(hours=2)


async def test_download_url_body_absolute_and_download_name(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    exp = int(time.time()) + 600
    tok = token(exp, url="dubbing/u1/jobs/j/es/dub.mp3")
    route = mock.post(f"{API}/object/sign/dubbing/u1/jobs/j/es/dub.mp3").mock(return_value=httpx.Response(
        200, json={"signedURL": f"/object/sign/dubbing/u1/jobs/j/es/dub.mp3?token={tok}"}))
    signed = await storage.create_download_url("u1/jobs/j/es/dub.mp3", 600, "Mi doblaje (es).mp3")
    request = route.calls.last.request
    assert request.method == "POST" and json.loads(request.content) == {"expiresIn": 600}
    assert_authed(request)
    assert signed.url == (f"{API}/object/sign/dubbing/u1/jobs/j/es/dub.mp3?token={tok}"
                          "&download=Mi%20doblaje%20%28es%29.mp3")
    assert signed.token == tok
    assert signed.expires_at == datetime.fromtimestamp(exp, UTC)

    plain = await storage.create_download_url("u1/jobs/j/es/dub.mp3", 600)
    assert plain.url == f"{API}/object/sign/dubbing/u1/jobs/j/es/dub.mp3?token={tok}"


# -- stat --------------------------------------------------------------------------------------


async def test_stat_current_info_shape(mock: respx.MockRouter, storage: SupabaseStorage) -> None:
    route = mock.get(f"{API}/object/info/dubbing/u1/uploads/x/voice.wav").mock(return_value=httpx.Response(200, json={
        "id": "6d1c", "name": "u1/uploads/x/voice.wav", "version": "v1", "bucket_id": "dubbing", "size": 48044,
        "content_type": "audio/wav", "cache_control": "max-age=3600", "etag": '"abc123"',
        "metadata": {"size": 1, "note": "user metadata, not ours"},
        "last_modified": "2025-03-01T10:20:30.123Z", "created_at": "2025-03-01T10:20:29.000Z"}))
    info = await storage.stat("u1/uploads/x/voice.wav")
    assert_authed(route.calls.last.request)
    assert info is not None
    assert (info.path, info.size_bytes, info.content_type, info.etag) == (
        "u1/uploads/x/voice.wav", 48044, "audio/wav", '"abc123"')
    assert info.last_modified == datetime(2025, 3, 1, 10, 20, 30, 123000, UTC)


def test_info_older_shape_under_metadata() -> None:
    info = parse_object_info("a/b.mp3", {
        "name": "a/b.mp3", "updated_at": "2024-05-06T07:08:09+00:00",
        "metadata": {"size": 1234, "mimetype": "audio/mpeg", "eTag": '"e1"', "cacheControl": "max-age=3600",
                     "lastModified": "2024-05-06T07:08:09.000Z", "contentLength": 1234, "httpStatusCode": 200}})
    assert (info.size_bytes, info.content_type, info.etag) == (1234, "audio/mpeg", '"e1"')
    assert info.last_modified == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    with pytest.raises(StorageError) as caught:
        parse_object_info("a/b.mp3", {"name": "a/b.mp3", "size": None, "metadata": None})
    assert caught.value.status == 502


@pytest.mark.parametrize("response", [
    err("404", "NoSuchKey", "Object not found", "not_found"),
    err("404", None, "Object not found", "not_found"),  # older servers: no code
])
async def test_stat_missing_object_is_none(
    mock: respx.MockRouter, storage: SupabaseStorage, response: httpx.Response
) -> None:
    route = mock.get(f"{API}/object/info/dubbing/u1/nope.wav").mock(return_value=response)
    assert await storage.stat("u1/nope.wav") is None
    assert route.call_count == 1


async def test_stat_missing_bucket_raises(mock: respx.MockRouter, storage: SupabaseStorage) -> None:
    mock.get(f"{API}/object/info/dubbing/u1/x.wav").mock(
        return_value=err("404", "NoSuchBucket", "Bucket not found"))
    with pytest.raises(StorageError) as caught:
        await storage.stat("u1/x.wav")
    assert (caught.value.status, caught.value.code) == (404, "NoSuchBucket")


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("response", "status", "code"), [
    (err("409", "ResourceAlreadyExists", "The resource already exists", "Duplicate"), 409, "ResourceAlreadyExists"),
    (err("409", None, "The resource already exists", "Duplicate"), 409, "Duplicate"),
    (err("413", "EntityTooLarge", "The object exceeded the maximum allowed size"), 413, "EntityTooLarge"),
    (err("415", "InvalidMimeType", "mime type text/html is not supported"), 415, "InvalidMimeType"),
    (err("403", "AccessDenied", "new row violates row-level security policy"), 403, "AccessDenied"),
    (err("400", "InvalidJWT", '"exp" claim timestamp check failed'), 400, "InvalidJWT"),
    (err("404", "NoSuchBucket", "Bucket not found"), 404, "NoSuchBucket"),
])
async def test_final_errors_map_to_the_real_status_and_are_not_retried(
    mock: respx.MockRouter, storage: SupabaseStorage, tmp_path: Path, response: httpx.Response, status: int,
    code: str,
) -> None:
    source = tmp_path / "a.mp3"
    source.write_bytes(b"x" * 10)
    route = mock.post(f"{API}/object/dubbing/u1/a.mp3").mock(return_value=response)
    with pytest.raises(StorageError) as caught:
        await storage.write_file("u1/a.mp3", str(source), "audio/mpeg")
    assert (caught.value.status, caught.value.code) == (status, code)
    assert route.call_count == 1


async def test_local_copy_of_missing_object_is_404_and_leaves_no_file(
    mock: respx.MockRouter, storage: SupabaseStorage, tmp_path: Path
) -> None:
    mock.get(f"{API}/object/authenticated/dubbing/u1/gone.wav").mock(
        return_value=err("404", "NoSuchKey", "Object not found", "not_found"))
    with pytest.raises(StorageError) as caught:
        async with storage.local_copy("u1/gone.wav"):
            pytest.fail("no copy of a missing object")
    assert (caught.value.status, caught.value.code) == (404, "NoSuchKey")
    assert os.listdir(tmp_path / "scratch") == []


@pytest.mark.parametrize(("status", "code"), [
    ("500", "InternalError"), ("503", "DatabaseConnectionLimit"), ("429", None), ("544", "DatabaseTimeout")])
async def test_a_400_whose_body_says_429_or_5xx_is_retried(
    mock: respx.MockRouter, storage: SupabaseStorage, status: str, code: str | None
) -> None:
    route = mock.get(f"{API}/object/info/dubbing/u1/x.wav").mock(side_effect=[
        err(status, code, "try again"),
        httpx.Response(200, json={"size": 3, "content_type": "audio/wav", "etag": '"e"',
                                  "last_modified": "2025-01-01T00:00:00Z"}),
    ])
    info = await storage.stat("u1/x.wav")
    assert info is not None and info.size_bytes == 3
    assert route.call_count == 2


async def test_retryable_body_status_gives_up_with_that_status(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    route = mock.post(f"{API}/object/sign/dubbing/u1/x.wav").mock(
        return_value=err("503", "DatabaseConnectionLimit", "The database has reached its connection limit"))
    with pytest.raises(StorageError) as caught:
        await storage.create_download_url("u1/x.wav", 60)
    assert route.call_count == FAST.attempts
    assert (caught.value.status, caught.value.code) == (503, "DatabaseConnectionLimit")
    assert "3 attempts" in caught.value.message


async def test_real_5xx_and_timeouts_are_retried_then_mapped(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    route = mock.get(f"{API}/bucket/dubbing").mock(side_effect=[
        httpx.Response(502, text="<html>bad gateway</html>"), httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"id": "dubbing", "name": "dubbing", "public": False,
                                  "file_size_limit": 524288000, "allowed_mime_types": ["audio/wav"]})])
    assert "private" in await storage.check()
    assert route.call_count == 3
    route.side_effect = httpx.ConnectError("refused")
    with pytest.raises(StorageError) as caught:
        await storage.check()
    assert (caught.value.status, caught.value.code) == (503, "connection_failed")


def test_parse_storage_error_shapes() -> None:
    assert parse_storage_error(httpx.Response(400, content=b"")) == ("http_400", "Bad Request")
    assert parse_storage_error(httpx.Response(400, json={"statusCode": "404", "error": "not_found",
                                                         "message": "Object not found"})) == (
        "NoSuchKey", "Object not found")
    assert parse_storage_error(httpx.Response(400, json={"statusCode": "404", "error": "Bucket not found",
                                                         "message": "Bucket not found"}))[0] == "NoSuchBucket"
    assert parse_storage_error(httpx.Response(401, json={"message": "Invalid API key"})) == (
        "Unauthorized", "Invalid API key")
    assert parse_storage_error(httpx.Response(502, text="upstream down")) == ("http_502", "upstream down")


async def test_plain_provider_client_still_gets_real_statuses(mock: respx.MockRouter) -> None:
    """A client built elsewhere: SupabaseStorage installs the status hook itself; and without the hook
    storage_error_from still maps the code of a bare 400."""
    client = ProviderClient("s", API, {"Authorization": f"Bearer {KEY}", "apikey": KEY}, policy=FAST,
                            error_parser=parse_storage_error)
    try:
        store = SupabaseStorage(client, SUPABASE, "dubbing")
        route = mock.get(f"{API}/object/info/dubbing/u/x").mock(side_effect=[
            err("500", "InternalError", "boom"), err("404", "NoSuchKey", "Object not found")])
        assert await store.stat("u/x") is None
        assert route.call_count == 2
    finally:
        await client.aclose()
    bare = ProviderError("s", 400, "EntityTooLarge", "too big")
    assert storage_error_from(bare).status == 413
    assert storage_error_from(ProviderError("s", 400, "http_418", "teapot")).status == 418
    assert storage_error_from(ProviderError("s", 400, "SomethingNew", "?")).status == 400


@pytest.mark.parametrize("key", [KEY, "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"])
async def test_secrets_never_reach_error_messages(mock: respx.MockRouter, tmp_path: Path, key: str) -> None:
    client = make_client(settings(key), policy=FAST)
    store = SupabaseStorage(client, SUPABASE, "dubbing", scratch_dir=tmp_path)
    leaky = f"bad header Authorization: Bearer {key}; apikey={key}; url /object/sign/x?token=eyJabc.eyJdef.ghi"
    try:
        mock.post(f"{API}/object/sign/dubbing/u1/x.wav").mock(return_value=err("400", "InvalidJWT", leaky))
        mock.get(f"{API}/object/info/dubbing/u1/x.wav").mock(return_value=httpx.Response(500, text=leaky))
        for call in (store.create_download_url("u1/x.wav", 60), store.stat("u1/x.wav")):
            with pytest.raises(StorageError) as caught:
                await call
            exc = caught.value
            chain = [exc, exc.__cause__]
            for text in [exc.message, str(exc), repr(exc)] + [str(e) for e in chain if e is not None]:
                assert key not in text and "eyJabc" not in text
            assert "[redacted]" in exc.message
    finally:
        await client.aclose()


# -- bytes -------------------------------------------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_local_copy_streams_into_a_temp_file_then_removes_it(
    mock: respx.MockRouter, storage: SupabaseStorage, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    route = mock.get(f"{API}/object/authenticated/dubbing/u1/uploads/x/voice.wav").mock(
        return_value=httpx.Response(200, headers={"content-type": "audio/wav"}, content=_chunks(data, 7000)))
    async with storage.local_copy("u1/uploads/x/voice.wav") as local:
        assert Path(local).read_bytes() == data
        assert Path(local).parent == tmp_path / "scratch" and local.endswith(".wav")
    assert not Path(local).exists()
    assert_authed(route.calls.last.request)


async def test_read_yields_the_object_bytes(mock: respx.MockRouter, storage: SupabaseStorage) -> None:
    data = os.urandom(100_000)
    mock.get(f"{API}/object/authenticated/dubbing/u1/a.bin").mock(
        return_value=httpx.Response(200, content=_chunks(data, 4096)))
    chunks = [chunk async for chunk in storage.read("u1/a.bin", chunk_size=8192)]
    assert b"".join(chunks) == data and len(chunks) > 1
    mock.get(f"{API}/object/authenticated/dubbing/u1/none.bin").mock(
        return_value=err("404", "NoSuchKey", "Object not found"))
    with pytest.raises(StorageError) as caught:
        _ = [chunk async for chunk in storage.read("u1/none.bin")]
    assert caught.value.status == 404


async def test_write_file_streams_with_upsert_and_retries_with_a_fresh_body(
    mock: respx.MockRouter, storage: SupabaseStorage, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    source = tmp_path / "dub.mp3"
    source.write_bytes(data)
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        if len(bodies) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"Id": "1b2c", "Key": "dubbing/u1/jobs/j/es/dub.mp3"})

    route = mock.post(f"{API}/object/dubbing/u1/jobs/j/es/dub.mp3").mock(side_effect=answer)
    info = await storage.write_file("u1/jobs/j/es/dub.mp3", str(source), "audio/mpeg")
    request = route.calls.last.request
    assert_authed(request)
    assert request.headers["x-upsert"] == "true"
    assert request.headers["content-type"] == "audio/mpeg"
    assert request.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in request.headers
    assert bodies == [data, data]
    assert (info.path, info.size_bytes, info.content_type) == ("u1/jobs/j/es/dub.mp3", len(data), "audio/mpeg")


async def test_delete_batches_of_1000_and_reports_what_existed(
    mock: respx.MockRouter, storage: SupabaseStorage
) -> None:
    names = [f"u1/jobs/j/es/f{i}.mp3" for i in range(2500)]
    existing = set(names[::2])
    seen: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["prefixes"]
        seen.append(batch)
        rows = [{"name": n, "bucket_id": "dubbing", "id": str(i)} for i, n in enumerate(batch) if n in existing]
        return httpx.Response(200, json=rows)

    route = mock.delete(f"{API}/object/dubbing").mock(side_effect=answer)
    deleted = await storage.delete(names)
    assert route.call_count == 3
    assert [len(b) for b in seen] == [1000, 1000, 500]
    assert [n for b in seen for n in b] == names
    assert all(call.request.method == "DELETE" for call in route.calls)
    assert_authed(route.calls.last.request)
    assert deleted == [n for n in names if n in existing]
    assert await storage.delete([]) == []
    assert route.call_count == 3


async def test_check_reports_the_bucket(mock: respx.MockRouter, storage: SupabaseStorage) -> None:
    route = mock.get(f"{API}/bucket/dubbing").mock(return_value=httpx.Response(200, json={
        "id": "dubbing", "name": "dubbing", "public": False, "file_size_limit": None, "allowed_mime_types": None}))
    assert "'dubbing'" in await storage.check()
    assert_authed(route.calls.last.request)
    mock.get(f"{API}/bucket/dubbing").mock(return_value=err("404", "NoSuchBucket", "Bucket not found"))
    with pytest.raises(StorageError) as caught:
        await storage.check()
    assert caught.value.status == 404


@pytest.mark.parametrize("path", ["../etc/passwd", "u1/../../x", "/abs", "u1//x", "u1/./x", "a\\b", ""])
async def test_traversal_is_refused_without_a_request(
    mock: respx.MockRouter, storage: SupabaseStorage, path: str
) -> None:
    for call in (storage.stat(path), storage.create_upload_url(path, 60), storage.create_download_url(path, 60),
                 storage.delete(["ok/x", path])):
        with pytest.raises(StorageError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (400, "InvalidKey")
    assert mock.calls.call_count == 0


async def test_object_paths_are_quoted_per_segment(mock: respx.MockRouter, storage: SupabaseStorage) -> None:
    route = mock.get(url__regex=r".*/object/info/.*").mock(return_value=err("404", "NoSuchKey", "Object not found"))
    assert await storage.stat("u1/a b/ü?#&.wav") is None
    assert route.calls.last.request.url.raw_path == (
        b"/storage/v1/object/info/dubbing/u1/a%20b/%C3%BC%3F%23%26.wav")
