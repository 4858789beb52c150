"""A voice per speaker in the dubbing stage: offline (espeak-ng variants, measured apart), the person's own
pick, and in cloud mode ElevenLabs clones whose whole life (made once per speaker, used, deleted when the job is
over, found again after a crash, refused verification, refused key) is checked against the fake."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

import msgspec
import numpy as np
import pytest
import respx

from service.audio import speakers as speaker_audio
from service.audio.ffmpeg import read_samples
from service.db import jobs, tasks, transcripts, voice_clones
from service.db.jobs import SpeakerChoice
from service.engines.cloud import elevenlabs
from service.engines.protocols import Engines
from service.errors import EngineError, ErrorCode
from service.providers.http import RetryPolicy
from service.sample import Sample
from service.settings import Settings
from service.stages import clones, outputs, voices
from service.stages.outputs import Synthesis, Translation
from service.supervisor import clone_sweep
from tests.fakes.elevenlabs import KEY, FakeElevenLabs, error
from tests.support.stage_bench import LEASE_OWNER, Bench, stage_bench

PROFILES = [{"id": "S1", "speech_seconds": 2.5, "median_pitch": 110.0},
            {"id": "S2", "speech_seconds": 2.0, "median_pitch": 210.0}]


NO_CHOICE = SpeakerChoice()


async def two_speakers(bench: Bench, choice: SpeakerChoice = NO_CHOICE) -> Bench:
    """The bench's two lines said by two people (S1 then S2), with the job's speaker settings."""
    translation = await bench.prepare_translation()
    said = [msgspec.structs.replace(u, speaker=f"S{i + 1}") for i, u in enumerate(translation.units)]
    await outputs.save(bench.work_dir, Translation(translation.source_language, translation.target_language,
                                                   translation.engine, said))
    pool = bench.services.db.pool
    data = await transcripts.ready(pool, bench.job.id)
    assert data is not None
    data["speakers"] = PROFILES
    for i, unit in enumerate(data["units"]):
        unit["speaker"] = f"S{i + 1}"
    await pool.execute("UPDATE transcripts SET data = $2 WHERE job_id = $1", bench.job.id, data)
    await pool.execute("UPDATE jobs SET num_speakers = $2, voice_cloning = $3, speaker_voices = $4::jsonb "
                       "WHERE id = $1", bench.job.id, choice.num_speakers, choice.voice_cloning,
                       json.dumps(choice.voices))
    job = await jobs.by_id(pool, bench.job.id)
    assert job is not None and job.speakers == choice
    return dataclasses.replace(bench, job=job)


def median_pitch(paths: list[str]) -> float:
    f0 = np.concatenate([speaker_audio.steady_pitch(speaker_audio.pitch(
        np.frombuffer(read_samples(p, rate=16000), dtype=np.float32))) for p in paths])
    return float(np.median(f0))


async def test_each_speaker_gets_a_voice_of_their_own(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        bench = await two_speakers(bench)
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
    first, second = synthesis.clips
    assert first.voice and second.voice and first.voice != second.voice
    assert [s.id for s in synthesis.speakers] == ["S1", "S2"]
    assert {s.voice for s in synthesis.speakers} == {first.voice, second.voice}
    assert not any(s.cloned for s in synthesis.speakers)
    # Heard apart: the low speaker's dub sits at least 15 % below the high one's.
    low, high = median_pitch([first.path]), median_pitch([second.path])
    assert high >= low * 1.15, (low, high)


async def test_a_voice_the_person_picked_wins(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines]) -> None:
    async with stage_bench(settings, short, *offline) as bench:
        bench = await two_speakers(bench, SpeakerChoice(2, False, {"S2": "m7@20"}))
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
    assert synthesis.clips[1].voice == "es+m7@20"
    assert [s.chosen for s in synthesis.speakers] == ["pitch", "picked"]


def test_the_choice_is_the_same_in_every_language_and_kept_apart() -> None:
    three = [*PROFILES, {"id": "S3", "speech_seconds": 1.0, "median_pitch": 120.0}]
    spanish = voices.choose("espeak-ng", "es", "es", three, {})
    catalan = voices.choose("espeak-ng", "ca", "ca", three, {})
    assert [v.voice.split("+", 1)[1] for v in spanish.values()] == [v.voice.split("+", 1)[1] for v in catalan.values()]
    assert len({v.voice for v in spanish.values()}) == 3
    for engine, default in (("deepgram-aura", "aura-2-celeste-es"), ("elevenlabs", elevenlabs.DEFAULT_VOICE)):
        chosen = voices.choose(engine, default, "es", three, {})
        assert len({v.voice for v in chosen.values()}) == 3, chosen
    # A language with one documented Aura voice: every speaker has it (said, not hidden).
    assert {v.voice for v in voices.choose("deepgram-aura", "aura-2-agathe-fr", "fr", three, {}).values()} == {
        "aura-2-agathe-fr"}


@asynccontextmanager
async def cloud_bench(settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
                      fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bench]:
    monkeypatch.setattr(clones, "CLONE_MIN_SECONDS", 1.0)  # the bench's lines are short; a real job needs 30 s
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        fake.install(router)
        client = elevenlabs.make_client(settings.with_overrides(elevenlabs_api_key=KEY),
                                        policy=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.02))
        executor, engines = offline
        cloud = Engines(engines.transcriber, engines.translator,
                        elevenlabs.ElevenLabsSynthesizer(client, executor=executor))
        async with stage_bench(settings, short, executor, cloud) as bench:
            yield await two_speakers(bench, SpeakerChoice(2, True, {}))
        await client.aclose()


async def test_clones_live_exactly_as_long_as_their_job(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeElevenLabs()
    async with cloud_bench(settings, short, offline, fake, monkeypatch) as bench:
        pool = bench.services.db.pool
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
        # One clone per speaker, each line spoken with its speaker's clone.
        assert len(fake.added) == 2 and len(fake.voices) == 2
        assert [c.voice for c in synthesis.clips] == [a["voice_id"] for a in fake.added]
        assert all(s.cloned for s in synthesis.speakers)
        ctx = await bench.run("dubbing")  # a second language (or attempt) of the job: the same clones
        assert len(fake.added) == 2
        client = ctx.engine.synthesizer.client  # type: ignore[attr-defined]
        assert await clone_sweep.sweep(pool, client) == 0  # the job is still running: its clones stay
        await jobs.cancel(pool, "u1", bench.job.id)
        assert await clone_sweep.sweep(pool, client) == 2
        assert fake.voices == {} and await voice_clones.live_count(pool, bench.job.id) == 0


async def test_a_failed_job_s_clones_go_too(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeElevenLabs(faults={"speak": [error(400, "invalid_text", "The text is not valid")]})
    async with cloud_bench(settings, short, offline, fake, monkeypatch) as bench:
        pool = bench.services.db.pool
        with pytest.raises(EngineError):
            await bench.run("dubbing")
        assert len(fake.voices) == 2
        assert await tasks.fail(bench.services.db, bench.task.id, LEASE_OWNER, "provider_rejected", "refused")
        client = bench.services.engines.synthesizer.client  # type: ignore[union-attr]
        assert await clone_sweep.sweep(pool, client) == 2
        assert fake.voices == {} and await voice_clones.live_count(pool) == 0


async def test_a_clone_left_by_a_killed_process_is_found_and_deleted(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeElevenLabs()
    async with cloud_bench(settings, short, offline, fake, monkeypatch) as bench:
        pool = bench.services.db.pool
        # kill -9 between the provider's answer and recording it: the row says `creating`, the clone exists.
        dead = f"{socket.gethostname()}:999999:0-deadbeef"
        name = elevenlabs.clone_name(str(bench.job.id), "S1")
        await voice_clones.claim(pool, bench.job.id, "S1", "elevenlabs", name, dead)
        fake.voices["clone-orphan"] = name
        client = bench.services.engines.synthesizer.client  # type: ignore[union-attr]
        assert await clone_sweep.sweep(pool, client) == 1
        assert fake.voices == {} and fake.deleted == ["clone-orphan"]
        # The job goes on after the restart and clones again.
        await bench.run("dubbing")
        assert len(fake.voices) == 2 and await voice_clones.live_count(pool, bench.job.id) == 2


async def test_a_clone_that_needs_verification_is_not_used_nor_kept(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeElevenLabs(requires_verification=True)
    async with cloud_bench(settings, short, offline, fake, monkeypatch) as bench:
        ctx = await bench.run("dubbing")
        synthesis = await outputs.load(ctx.work_dir, Synthesis)
        assert len(fake.added) == 2 and fake.voices == {}
        assert not any(s.cloned for s in synthesis.speakers)
        assert {c.voice for c in synthesis.clips} <= set(voices.ELEVENLABS_PREMADE[0] + voices.ELEVENLABS_PREMADE[1])
        assert await voice_clones.live_count(bench.services.db.pool) == 0


async def test_a_refused_key_leaves_no_clone(
        settings: Settings, short: Sample, offline: tuple[ProcessPoolExecutor, Engines],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeElevenLabs(faults={"add": [error(401, "invalid_api_key", "Invalid API key")]})
    async with cloud_bench(settings, short, offline, fake, monkeypatch) as bench:
        with pytest.raises(EngineError) as caught:
            await bench.run("dubbing")
        assert caught.value.code == ErrorCode.PROVIDER_AUTH
        assert fake.voices == {} and await voice_clones.live_count(bench.services.db.pool) == 0
