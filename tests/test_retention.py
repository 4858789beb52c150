"""Retention removes expired artifacts from storage and marks their rows; nothing else is touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from service import retention
from service.db import artifacts
from service.db.artifacts import NewArtifact
from service.settings import Settings
from tests.support import running_service


async def test_expired_artifacts_are_deleted_and_marked(settings: Settings, tmp_path: Path) -> None:
    async with running_service(settings, run_supervisor=False) as svc:
        job = (await svc.create_job("rita", ["es"])).json()
        storage = svc.app.state.storage
        source = tmp_path / "file.srt"
        source.write_text("1\n00:00:00,000 --> 00:00:01,000\nhola\n")
        kept_path, old_path = f"rita/jobs/{job['id']}/source/kept.srt", f"rita/jobs/{job['id']}/source/old.srt"
        for path, kind in ((kept_path, "transcript_srt"), (old_path, "transcript_vtt")):
            await storage.write_file(path, str(source), "application/x-subrip")
            await artifacts.record(svc.pool, NewArtifact(
                job["id"], None, None, kind, path, "0" * 64, source.stat().st_size, "application/x-subrip"),
                timedelta(hours=48))
        await svc.pool.execute("UPDATE artifacts SET created_at = now() - interval '3 days', "
                               "expires_at = now() - interval '1 day' WHERE object_path = $1", old_path)

        report = await retention.expire_artifacts(svc.pool, storage)
        assert report.artifacts_deleted == 1
        assert await storage.stat(old_path) is None
        assert await storage.stat(kept_path) is not None
        rows = {r["object_path"]: r["deleted_at"] for r in await svc.pool.fetch("SELECT * FROM artifacts")}
        assert rows[old_path] is not None and rows[kept_path] is None
        listed = (await svc.client.get(f"/v1/jobs/{job['id']}/artifacts", headers=svc.auth("rita"))).json()
        assert [a["object_path"] for a in listed["artifacts"]] == [kept_path]
        again = await retention.expire_artifacts(svc.pool, storage)
        assert again.artifacts_deleted == 0
