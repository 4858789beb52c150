"""The words of the domain, defined once: stages (in order), job statuses, artifact kinds, event kinds.

The stage registry, the OpenAPI enums, the page's stage order (`/config.json`) and the schema tests
(tests/db/test_schema_matches_domain.py, which reads the CHECK constraints and the `stage_order` table
back from PostgreSQL) all derive from these; nothing else spells them out.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a language task is. The work stages run in declaration order."""

    QUEUED = "queued"
    STT = "stt"
    TRANSLATING = "translating"
    DUBBING = "dubbing"
    MIXING = "mixing"
    EXPORTING = "exporting"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def next(self) -> Stage:
        """The stage after this one; the last work stage is followed by `complete`."""
        if self is Stage.QUEUED:
            return WORK_STAGES[0]
        index = WORK_STAGES.index(self)
        return WORK_STAGES[index + 1] if index + 1 < len(WORK_STAGES) else Stage.COMPLETE


# The stages that do work, in the order a task passes through them.
WORK_STAGES: tuple[Stage, ...] = (Stage.STT, Stage.TRANSLATING, Stage.DUBBING, Stage.MIXING, Stage.EXPORTING)
TERMINAL: frozenset[Stage] = frozenset({Stage.COMPLETE, Stage.FAILED, Stage.CANCELLED})
# Every stage in the order a task can reach it: waiting, the work stages, then the ends (which rank alike).
# Served to the page (`/config.json`) and kept in the `stage_order` table (sql/021) for the ops views.
STAGE_ORDER: tuple[Stage, ...] = (Stage.QUEUED, *WORK_STAGES, Stage.COMPLETE, Stage.FAILED, Stage.CANCELLED)


class JobStatus(StrEnum):
    """A job's status follows from its tasks (sql/004 `job_status_from_tasks`)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETE, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
)


class ArtifactKind(StrEnum):
    """What a job produces: per language (the first six, and `video` for media with a picture) or once per job
    (the transcript; for media jobs the separated `background_stem` and `isolated_voice`)."""

    MASTER_WAV = "master_wav"
    MASTER_WEB = "master_web"
    VOICE_STEM = "voice_stem"
    CAPTIONS_SRT = "captions_srt"
    CAPTIONS_VTT = "captions_vtt"
    MANIFEST = "manifest"
    TRANSCRIPT_JSON = "transcript_json"
    TRANSCRIPT_SRT = "transcript_srt"
    TRANSCRIPT_VTT = "transcript_vtt"
    VIDEO = "video"
    BACKGROUND_STEM = "background_stem"
    ISOLATED_VOICE = "isolated_voice"

    @property
    def job_level(self) -> bool:
        return self in (ArtifactKind.TRANSCRIPT_JSON, ArtifactKind.TRANSCRIPT_SRT, ArtifactKind.TRANSCRIPT_VTT,
                        ArtifactKind.BACKGROUND_STEM, ArtifactKind.ISOLATED_VOICE)

    @property
    def content_type(self) -> str:
        """The content type it is stored with (`master_web` depends on WEB_FORMAT: see `web_content_type`; `video`
    on the input's container: see `media.container`)."""
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    ArtifactKind.MASTER_WAV: "audio/wav",
    ArtifactKind.VOICE_STEM: "audio/wav",
    ArtifactKind.MASTER_WEB: "audio/mpeg",
    ArtifactKind.CAPTIONS_SRT: "application/x-subrip",
    ArtifactKind.CAPTIONS_VTT: "text/vtt",
    ArtifactKind.MANIFEST: "application/json",
    ArtifactKind.TRANSCRIPT_JSON: "application/json",
    ArtifactKind.TRANSCRIPT_SRT: "application/x-subrip",
    ArtifactKind.TRANSCRIPT_VTT: "text/vtt",
    ArtifactKind.VIDEO: "video/mp4",
    ArtifactKind.BACKGROUND_STEM: "audio/wav",
    ArtifactKind.ISOLATED_VOICE: "audio/wav",
}


def web_content_type(web_format: str) -> str:
    return "audio/ogg" if web_format == "opus" else "audio/mpeg"


class EventKind(StrEnum):
    """What a `task_events` row (and the progress stream's `event:` line) says happened."""

    STAGE = "stage"
    PROGRESS = "progress"
    ARTIFACT = "artifact"
    FAILED = "failed"
    DONE = "done"


class InputKind(StrEnum):
    """What a user uploads for a job."""

    VOICE = "voice"
    BACKGROUND = "background"
    MEDIA = "media"  # a video, or one soundtrack with speech and background mixed (separated by the service)


class BackgroundMode(StrEnum):
    """What a media job does with what separation leaves besides the voice."""

    KEEP = "keep"
    DROP = "drop"
