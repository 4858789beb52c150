"""One stage at a time: a job made from a short generated recording, one claimed task, and a `StageContext` for it
with the real offline engines, a real process pool and local storage, so a test runs a single stage function on
prepared inputs and checks what it hands the next one (tests/stages/test_<stage>.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import soundfile

from service.audio.probe import sha256_of
from service.db import connection, jobs, tasks, transcripts
from service.db.database import Database
from service.db.jobs import InputObject, NewJob, StoredJob
from service.db.listener import Listener
from service.db.tasks import ClaimedTask
from service.engines.protocols import Engines
from service.engines.selection import offline_engines
from service.engines.types import Segment, Transcript
from service.sample import Sample, make_sample
from service.settings import Settings
from service.stages import outputs
from service.stages.context import StageContext, StageServices
from service.stages.outputs import TranslatedUnit, Translation
from service.stages.registry import stages
from service.stages.units import Unit
from service.storage.local import LocalStorage
from service.workpool import cpu_pool

# Two short lines (about 5 s of speech in all): enough for every stage to have real work, fast to process.
LINES = ((0.5, "Welcome to the dubbing test."), (3.2, "Thank you for listening."))
# What Apertium makes of them, for the stages after translating (prepared, not the test's subject).
SPANISH = ("Bienvenido a la prueba de doblaje.", "Gracias por escuchar.")
LEASE_OWNER = "stage-bench"


def short_sample(folder: Path) -> Sample:
    return make_sample(folder, LINES)


@contextmanager
def pool_and_engines(numba_dir: Path) -> Iterator[tuple[ProcessPoolExecutor, Engines]]:
    """A one-worker process pool and the offline engines on it (as `dubbing serve` makes them), for a module."""
    from service.engines.offline.whisper import default_model_dir

    executor = cpu_pool.create(1, str(numba_dir))
    try:
        yield executor, offline_engines(executor, default_model_dir())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class Bench:
    services: StageServices
    job: StoredJob
    task: ClaimedTask
    sample: Sample

    def context(self, stage: str) -> StageContext:
        return StageContext(self.task, self.job, stage, self.services)

    def stored_file(self, object_path: str) -> Path:
        """Where local storage keeps an object."""
        storage = self.services.storage
        assert isinstance(storage, LocalStorage)
        return storage.file_path(object_path)

    @property
    def work_dir(self) -> Path:
        return self.context("stt").work_dir

    async def run(self, *names: str) -> StageContext:
        """Run these stages' functions in order (entering each, as the runner does); the last one's context."""
        registry = stages()
        ctx = self.context(names[0])
        for name in names:
            assert await tasks.enter_stage(self.services.db, self.task.id, LEASE_OWNER, name)
            ctx = self.context(name)
            await registry[name](ctx)
        return ctx

    async def prepare_transcript(self) -> list[Unit]:
        """The job's transcript as the stt stage leaves it: one unit per spoken line, where it was spoken."""
        units = [Unit(i, round(start, 3), round(end, 3), text, i)
                 for i, ((start, end), (_, text)) in enumerate(zip(self.sample.speech, LINES, strict=True))]
        transcript = Transcript("en", self.job.voice.duration_seconds,
                                tuple(Segment(u.id, u.start, u.end, u.text, ()) for u in units), "prepared", "none")
        data = {**transcript.to_json(),
                "units": [{"id": u.id, "start": u.start, "end": u.end, "text": u.text, "group": u.group}
                          for u in units],
                "speech": [list(s) for s in self.sample.speech]}
        pool = self.services.db.pool
        owner = f"{LEASE_OWNER}/{self.task.id}"
        assert (await transcripts.acquire(pool, self.job.id, owner, 60)).state == "mine"
        assert await transcripts.complete(pool, self.job.id, owner, data)
        return units

    async def prepare_translation(self) -> Translation:
        """The translating stage's output for the prepared transcript."""
        units = await self.prepare_transcript()
        translated = [TranslatedUnit(u.id, u.start, u.end, u.group, u.text, text)
                      for u, text in zip(units, SPANISH, strict=True)]
        translation = Translation("en", self.task.target_language, "prepared", translated)
        await outputs.save(self.work_dir, translation)
        return translation


async def _stored_input(storage: LocalStorage, owner: str, local: Path) -> InputObject:
    path = f"{owner}/uploads/{uuid.uuid4()}/{local.name}"
    info = await storage.write_file(path, str(local), "audio/wav")
    return InputObject(path, "audio/wav", info.size_bytes, sha256_of(str(local)), soundfile.info(str(local)).duration)


@asynccontextmanager
async def stage_bench(settings: Settings, sample: Sample, executor: ProcessPoolExecutor, engines: Engines,
                      background: bool = True, target: str = "es") -> AsyncIterator[Bench]:
    """A job (voice, and the background bed unless told otherwise) into `target`, its task claimed."""
    async with AsyncExitStack() as stack:
        pool = await connection.create_pool(settings.database_url or "", max_size=4)
        stack.push_async_callback(pool.close)
        listener = Listener(settings.database_url or "")
        await listener.start()
        stack.push_async_callback(listener.stop)
        storage = LocalStorage(settings.storage_dir, "dubbing", "http://x", settings.jwt_secret)
        voice = await _stored_input(storage, "u1", sample.voice)
        bed = await _stored_input(storage, "u1", sample.background) if background else None
        job_id, _ = await jobs.create(pool, NewJob("u1", "en", [target], voice, bed, None, uuid.uuid4().hex))
        [task] = await tasks.claim(pool, LEASE_OWNER, 1, 300)
        job = await jobs.by_id(pool, job_id)
        assert job is not None
        services = StageServices(settings, Database.on(pool), listener, storage, executor, engines)
        yield Bench(services, job, task, sample)
