"""What goes, and when: artifacts past their expiry (ARTIFACT_TTL_HOURS), the inputs of jobs that finished more
than INPUT_TTL_HOURS ago, uploads no job used after UPLOAD_TTL_HOURS, the scratch files of jobs that are over; and
at once, everything of a job its owner deletes. `dubbing retention` runs it (from cron), and so does the service
every RETENTION_INTERVAL_MINUTES (`retention_schedule.py`).

Each step takes its rows in batches under FOR UPDATE SKIP LOCKED, so two runs at once share the work and never do
it twice; it deletes the files inside that transaction and marks the rows deleted as it commits. A file is deleted
before its row is marked, a row whose file is already gone is marked all the same, and a failure leaves the batch
for the next run. Rows stay, marked, so the history stays queryable.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import asyncpg

from service import metrics, scratch
from service.db import artifacts, jobs, translations, uploads
from service.settings import Settings
from service.storage import Storage

BATCH = 500


@dataclass
class RetentionReport:
    """What a run deleted (or, for a dry run, would delete): objects and their bytes, per kind."""

    artifacts: int = 0
    artifact_bytes: int = 0
    input_jobs: int = 0
    inputs: int = 0
    input_bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    scratch_dirs: int = 0
    scratch_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        return [
            f"expired artifacts: {self.artifacts} ({_size(self.artifact_bytes)})",
            f"inputs of finished or deleted jobs: {self.inputs} objects of {self.input_jobs} jobs "
            f"({_size(self.input_bytes)})",
            f"unused uploads: {self.uploads} ({_size(self.upload_bytes)} declared)",
            f"scratch folders of finished jobs: {self.scratch_dirs} ({_size(self.scratch_bytes)})",
        ]


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def run(pool: asyncpg.Pool, storage: Storage, settings: Settings) -> RetentionReport:
    """Delete everything that is due; safe to run from several processes at once."""
    report = RetentionReport()
    while True:
        async with artifacts.to_remove(pool, BATCH) as batch:
            if not batch:
                break
            await storage.delete([a.object_path for a in batch])
        report.artifacts += len(batch)
        report.artifact_bytes += sum(a.size_bytes for a in batch)
    while True:
        async with jobs.inputs_to_remove(pool, settings.input_ttl_hours, BATCH) as inputs:
            if not inputs.job_ids:
                break
            await storage.delete(inputs.paths)
        report.input_jobs += len(inputs.job_ids)
        report.inputs += len(inputs.paths)
        report.input_bytes += inputs.bytes
    while True:
        async with uploads.unused_to_remove(pool, settings.upload_ttl_hours, BATCH) as unused:
            if not unused:
                break
            await storage.delete([u.object_path for u in unused])
        report.uploads += len(unused)
        report.upload_bytes += sum(u.declared_size_bytes for u in unused)
    report.scratch_dirs, report.scratch_bytes = await _finished_scratch(pool, settings.scratch_dir, remove=True)
    metrics.retention_deleted("artifact", report.artifacts, report.artifact_bytes)
    metrics.retention_deleted("input", report.inputs, report.input_bytes)
    metrics.retention_deleted("upload", report.uploads, report.upload_bytes)
    metrics.retention_deleted("scratch", report.scratch_dirs, report.scratch_bytes)
    return report


async def preview(pool: asyncpg.Pool, settings: Settings) -> RetentionReport:
    """What `run` would delete now, changing nothing (`dubbing retention --dry-run`)."""
    report = RetentionReport()
    report.artifacts, report.artifact_bytes = await artifacts.due(pool)
    report.input_jobs, report.inputs, report.input_bytes = await jobs.inputs_due(pool, settings.input_ttl_hours)
    report.uploads, report.upload_bytes = await uploads.unused_due(pool, settings.upload_ttl_hours)
    report.scratch_dirs, report.scratch_bytes = await _finished_scratch(pool, settings.scratch_dir, remove=False)
    return report


@dataclass(frozen=True)
class JobFilesRemoved:
    artifacts: int
    inputs: int


async def delete_job_files(pool: asyncpg.Pool, storage: Storage, scratch_dir: Path, job_id: UUID) -> JobFilesRemoved:
    """Every file of a job its owner deleted: artifacts, inputs (those no other job still uses) and scratch.
    Storage errors propagate; whatever is left then goes at the next retention run."""
    async with artifacts.to_remove(pool, BATCH, job_id=job_id) as batch:
        await storage.delete([a.object_path for a in batch])
    async with jobs.inputs_to_remove(pool, 0, 1, job_id=job_id) as inputs:
        await storage.delete(inputs.paths)
    await anyio.to_thread.run_sync(scratch.remove, scratch.job_dir(scratch_dir, job_id))
    return JobFilesRemoved(len(batch), len(inputs.paths))


async def _finished_scratch(pool: asyncpg.Pool, scratch_dir: Path, remove: bool) -> tuple[int, int]:
    """The scratch folders of jobs that are over or deleted, but for those with a complete language whose artifacts
    live (the supervisor removes the others as a job ends; this is the safety net): (folders, bytes), removed
    unless `remove` is False."""
    if not await anyio.Path(scratch_dir).exists():
        return 0, 0
    names = [p.name for p in await anyio.to_thread.run_sync(lambda: list(scratch_dir.iterdir())) if p.is_dir()]
    over = await jobs.finished_among(pool, names)
    kept = await translations.editable_among(pool, over)  # a re-render reuses their clips until they expire
    finished = [job_id for job_id in over if job_id not in kept]
    total = 0
    for job_id in finished:
        folder = scratch_dir / job_id
        total += await anyio.to_thread.run_sync(_bytes_under, folder)
        if remove:
            await anyio.to_thread.run_sync(scratch.remove, folder)
    return len(finished), total


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
