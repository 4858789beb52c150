"""QUOTA_MINUTES_PER_DAY at job creation: 429 quota_exceeded with Retry-After and what is left, nothing written;
GET /v1/usage tells the day and the month."""

from __future__ import annotations

import asyncio

from service.settings import Settings
from tests.support import running_service, wav_bytes


async def test_over_the_quota_is_429_and_writes_nothing(settings: Settings) -> None:
    # 6 source minutes x 2 languages a day: a 60 s voice into 2 languages is 2 minutes.
    async with running_service(settings.with_overrides(quota_minutes_per_day=6.0), run_supervisor=False) as svc:
        voice = await svc.upload("hal", wav_bytes(60.0))

        async def create(targets: list[str]):  # type: ignore[no-untyped-def]
            return await svc.client.post("/v1/jobs", headers=svc.auth("hal"), json={
                "voice_object": voice, "source_language": "en", "target_languages": targets})

        assert (await create(["es", "fr"])).status_code == 201
        assert (await create(["es", "de"])).status_code == 201
        before = await svc.count_rows()
        refused = await create(["es", "fr", "de"])  # 3 minutes, 2 left
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert "2.00 of your 6 minutes" in refused.json()["error"]["message"]
        assert 0 < int(refused.headers["Retry-After"]) <= 86400
        assert refused.headers["X-Quota-Minutes-Left"] == "2.00"
        assert await svc.count_rows() == before
        # Made at once, two jobs that fit only one at a time: exactly one is taken.
        results = await asyncio.gather(create(["es", "it"]), create(["fr", "it"]))
        assert sorted(r.status_code for r in results) == [201, 429]
        assert (await svc.create_job("ivy", ["es"])).status_code == 201  # another user has their own quota

        usage = (await svc.client.get("/v1/usage", headers=svc.auth("hal"))).json()
        assert usage["day"]["minutes_used"] == 6.0 and usage["day"]["minutes_left"] == 0.0
        assert usage["day"]["quota_minutes"] == 6.0 and usage["day"]["languages"] == 6
        assert usage["day"]["jobs"] == 3 and usage["day"]["dubbed_minutes"] == 0.0
        assert usage["month"]["minutes_used"] >= 6.0 and usage["month"]["start"] <= usage["day"]["start"]
        assert (await svc.client.get("/v1/usage")).status_code == 401


async def test_without_a_quota_usage_still_counts(settings: Settings) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        for _ in range(3):
            assert (await svc.create_job("jo", ["es", "fr"])).status_code == 201
        day = (await svc.client.get("/v1/usage", headers=svc.auth("jo"))).json()["day"]
        assert day["quota_minutes"] is None and day["minutes_left"] is None
        assert abs(day["minutes_used"] - 0.1) < 0.01  # 3 jobs x 1 s x 2 languages
