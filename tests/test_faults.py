"""Faults, tried on the real `dubbing serve` process: database outages, SIGTERM with open streams, kill -9.

Each test watches what an operator would: the job completes, attempts are not spent on outages, no lease
is left behind, a restarted process takes the work back at once and redoes only what was unfinished.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.client import read_events
from service.sample import Sample, make_sample, varied_lines
from tests.support import ServedProcess, admin_url_of, database_name, served
from tests.support.processes import proc_files


@pytest.fixture(scope="module")
def long_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """About 110 seconds of speech: long enough that a stage is still running when the fault comes."""
    return make_sample(tmp_path_factory.mktemp("long"), varied_lines(30, first=0.5, every=3.6))


async def start_job(svc: ServedProcess, sample: Sample, user: str) -> str:
    voice = await svc.upload(user, sample.voice, "voice")
    created = await svc.client.post("/v1/jobs", headers=svc.auth(user), json={
        "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def task_row(database_url: str, job_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM language_tasks WHERE job_id = $1", job_id)
        assert row is not None
        return row
    finally:
        await conn.close()


async def wait_for(database_url: str, job_id: str, condition: str, timeout: float = 120.0) -> asyncpg.Record:
    """Poll the task row until `condition` (SQL on language_tasks) holds."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            row = await conn.fetchrow(f"SELECT * FROM language_tasks WHERE job_id = $1 AND ({condition})", job_id)
            if row is not None:
                return row
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"the task never got to {condition}")


async def job_status(svc: ServedProcess, user: str, job_id: str) -> dict[str, Any]:
    return dict((await svc.client.get(f"/v1/jobs/{job_id}", headers=svc.auth(user))).json())


async def test_database_outages_mid_stage_do_not_spend_attempts(tmp_path: Path, database_url: str,
                                                                 long_sample: Sample) -> None:
    name = database_name(database_url)
    admin = await asyncpg.connect(admin_url_of(database_url))
    async with served(tmp_path / "data", database_url) as svc:
        job_id = await start_job(svc, long_sample, "dora")
        terminated = 0
        for stage in ("stt", "dubbing", "mixing"):
            await wait_for(database_url, job_id, f"stage = '{stage}' OR stage IN ('complete', 'failed')")
            for _ in range(3):  # a burst of cut connections while the stage works
                terminated += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
                await asyncio.sleep(0.3)
        row = await wait_for(database_url, job_id, "stage IN ('complete', 'failed', 'cancelled')", timeout=180)
        assert terminated > 0
        assert row["stage"] == "complete", (row["error_code"], row["error_message"], svc.logs()[-3000:])
        crashes = [line[:600] for line in svc.logs().splitlines() if "stage_failed" in line or "crash" in line]
        assert row["attempts"] == 1, ("a database outage is not the task's failure", crashes)
        assert (await job_status(svc, "dora", job_id))["status"] == "complete"
    await admin.close()


async def test_sigterm_ends_open_streams_hands_back_and_a_new_process_resumes(tmp_path: Path, database_url: str,
                                                                             long_sample: Sample) -> None:
    data = tmp_path / "data"
    async with served(data, database_url, SHUTDOWN_DRAIN_SECONDS="3") as svc:
        job_id = await start_job(svc, long_sample, "ella")
        async with svc.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=svc.auth("ella"),
                                     timeout=60) as stream:
            seen: list[int] = []
            while True:  # follow the stream until the dubbing stage is under way
                [event] = await read_events(stream, limit=1)
                seen.append(event.id or 0)
                if event.event == "progress" and event.data["stage"] == "dubbing":
                    break
            signalled = time.monotonic()
            svc.process.send_signal(signal.SIGTERM)
            rest = await read_events(stream)  # ends cleanly: no error, no hang
        ended_after = time.monotonic() - signalled
        await asyncio.wait_for(svc.process.wait(), 15)
        exited_after = time.monotonic() - signalled
    assert ended_after < 2.0, f"the stream took {ended_after:.1f} s to end"
    assert exited_after < 3 + 5, f"the process took {exited_after:.1f} s to exit"
    assert all(e.event != "done" for e in rest)
    row = await task_row(database_url, job_id)
    assert row["lease_owner"] is None, "the lease was handed back"
    async with served(data, database_url) as again:
        resumed = time.monotonic()
        async with again.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=again.auth("ella"),
                                       params={"last_event_id": str(max(seen))}, timeout=180) as stream:
            first = await read_events(stream, limit=1)
            assert time.monotonic() - resumed < 5.0, "a restarted process takes the task back at once"
            assert first[0].id is not None and first[0].id > max(seen), "no event seen twice"
            history = first + await read_events(stream)
        assert history[-1].event == "done" and history[-1].data["status"] == "complete"
    row = await task_row(database_url, job_id)
    assert row["attempts"] == 1


async def test_kill9_resumes_within_seconds_and_redoes_only_unfinished_clips(tmp_path: Path, database_url: str,
                                                                            long_sample: Sample) -> None:
    data = tmp_path / "data"
    async with served(data, database_url) as svc:
        job_id = await start_job(svc, long_sample, "fay")
        clips = data / "scratch" / job_id / "es" / "clips"
        deadline = time.monotonic() + 120
        while len(list(clips.glob("*.json"))) < 3:  # a few clips spoken: the stage is under way
            assert time.monotonic() < deadline, "the dubbing stage never started"
            await asyncio.sleep(0.002)
        workers = [pid for pid, _ in descendants(svc.process.pid)]
        svc.process.kill()  # the service alone, as the OOM killer or an operator's kill -9 would
        await svc.process.wait()
        deadline = time.monotonic() + 10
        while alive := [pid for pid in workers if running(pid)]:
            assert time.monotonic() < deadline, f"the dead service's pool processes live on: {alive}"
            await asyncio.sleep(0.05)
    finished = {p.name: p.stat().st_mtime_ns for p in clips.glob("*.wav") if (clips / f"{p.stem}.json").exists()}
    units = len(list(clips.glob("*.json")))
    assert finished, "some clips were finished before the kill"
    async with served(data, database_url) as again:
        restarted = time.monotonic()
        await wait_for(database_url, job_id, "lease_owner IS NOT NULL AND lease_expires_at > now()", timeout=10)
        assert time.monotonic() - restarted < 5.0, "the dead process's lease is freed at start-up"
        row = await wait_for(database_url, job_id, "stage IN ('complete', 'failed')", timeout=180)
        assert row["stage"] == "complete", (row["error_message"], again.logs()[-2000:])
    kept = {name: mtime for name, mtime in finished.items() if (clips / name).exists()}
    # The task's scratch goes when it completes; what it reused was reported by the stage before that.
    assert units > 0 and (kept == {} or all(finished[n] == m for n, m in kept.items()))
    conn = await asyncpg.connect(database_url)
    reused = await conn.fetchval("SELECT max((data->>'reused')::int) FROM task_events WHERE job_id = $1", job_id)
    await conn.close()
    assert reused is not None and reused >= len(finished), "finished clips were reused, not spoken again"
    assert not list(data.rglob(".*.part")), "no partial file is left behind"
    assert row["attempts"] == 1


def no_server_path(message: str) -> bool:
    return re.search(r"(?<![\w.:/])/(?:[\w.+-]+/)+", message) is None


async def test_error_messages_never_show_server_paths(tmp_path: Path, database_url: str) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + os.urandom(4000))
    async with served(tmp_path / "data", database_url) as svc:
        voice = await svc.upload("gus", junk, "voice")
        response = await svc.client.post("/v1/jobs", headers=svc.auth("gus"), json={
            "voice_object": voice, "source_language": "en", "target_languages": ["es"]})
        assert response.status_code == 422
        assert no_server_path(response.json()["error"]["message"]), response.json()
        assert str(tmp_path) not in response.text


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process under `root`, from /proc."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for pid, raw in proc_files("stat"):
        stat = raw.decode(errors="replace")
        rest = stat[stat.rfind(")") + 2:].split()
        names[pid] = stat[stat.find("(") + 1: stat.rfind(")")]
        children.setdefault(int(rest[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, names.get(child, "")))
            todo.append(child)
    return found


async def test_cancelling_during_the_mix_stops_the_work_in_the_pool(tmp_path: Path, database_url: str,
                                                                   long_sample: Sample) -> None:
    async with served(tmp_path / "data", database_url) as svc:
        voice = await svc.upload("hal", long_sample.voice, "voice")
        background = await svc.upload("hal", long_sample.background, "background")
        created = await svc.client.post("/v1/jobs", headers=svc.auth("hal"), json={
            "voice_object": voice, "background_object": background, "source_language": "en",
            "target_languages": ["es"]})
        job_id = created.json()["id"]
        await wait_for(database_url, job_id, "stage = 'mixing' AND progress >= (3 + 0.6) / 5")  # the mix itself
        cancelled = await svc.client.post(f"/v1/jobs/{job_id}/cancel", headers=svc.auth("hal"))
        assert cancelled.json()["status"] == "cancelled"
        # Well inside the lease's heartbeat (20 s): the cancellation's notification stops the task at once.
        deadline = time.monotonic() + 5.0
        while any(name == "ffmpeg" for _, name in descendants(svc.process.pid)):
            assert time.monotonic() < deadline, "ffmpeg kept running for a cancelled job"
            await asyncio.sleep(0.05)
        scratch = tmp_path / "data" / "scratch" / job_id
        while scratch.exists():
            assert time.monotonic() < deadline, "a cancelled job's scratch stays"
            await asyncio.sleep(0.05)
