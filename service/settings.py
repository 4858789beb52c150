"""The one settings object, read from the environment once at start-up."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AudioFormat:
    """A file format the service takes: its name as people know it, its media types, its file extensions."""

    name: str
    types: tuple[str, ...]
    extensions: tuple[str, ...]


# The one list of accepted formats: the API's content-type enum, its 415 message, and (through /config.json)
# the page's hint, its file picker's `accept`, and its check of a file as soon as it is picked.
AUDIO_FORMATS = (
    AudioFormat("WAV", ("audio/wav", "audio/x-wav", "audio/wave"), (".wav",)),
    AudioFormat("MP3", ("audio/mpeg", "audio/mp3"), (".mp3",)),
    AudioFormat("M4A", ("audio/mp4", "audio/x-m4a"), (".m4a",)),
    AudioFormat("AAC", ("audio/aac",), (".aac",)),
    AudioFormat("OGG", ("audio/ogg",), (".ogg", ".oga")),
    AudioFormat("Opus", ("audio/opus",), (".opus",)),
    AudioFormat("WebM", ("audio/webm",), (".webm",)),
    AudioFormat("FLAC", ("audio/flac", "audio/x-flac"), (".flac",)),
)
ALLOWED_AUDIO_TYPES = tuple(media_type for audio_format in AUDIO_FORMATS for media_type in audio_format.types)
# Videos, for uploads of kind `media` only (an audio file of that kind is one mixed soundtrack).
VIDEO_FORMATS = (
    AudioFormat("MP4", ("video/mp4",), (".mp4", ".m4v")),
    AudioFormat("MOV", ("video/quicktime",), (".mov",)),
    AudioFormat("WebM", ("video/webm",), (".webm",)),
    AudioFormat("MKV", ("video/x-matroska",), (".mkv",)),
)
ALLOWED_VIDEO_TYPES = tuple(media_type for video_format in VIDEO_FORMATS for media_type in video_format.types)
ALLOWED_UPLOAD_TYPES = ALLOWED_AUDIO_TYPES + ALLOWED_VIDEO_TYPES


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


def _pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """`es=aura-2-celeste-es,de=aura-2-julius-de` → (("es", "aura-2-celeste-es"), ...)."""
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return tuple((k.strip(), v.strip()) for k, v in pairs)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return float(raw) if raw not in (None, "") else default


def _number(env: Mapping[str, str], name: str, default: int | float) -> int | float:
    """An int or a float, as its default is."""
    return _float(env, name, default) if isinstance(default, float) else _int(env, name, default)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path(".dubbing")
    database_url: str | None = None
    database_listen_url: str | None = None
    jwt_secret: str = field(default="", repr=False)
    supabase_url: str | None = None
    # The web page: local sign-in exists only with the secret generated into DATA_DIR (local mode).
    local_auth: bool = False
    supabase_anon_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    log_format: str = "console"
    log_level: str = "info"

    storage_bucket: str = "dubbing"
    max_upload_bytes: int = 500 * 1024 * 1024
    allowed_content_types: tuple[str, ...] = ALLOWED_AUDIO_TYPES
    # Media jobs (docs/media.md): a video or one mixed soundtrack, its own size and length limits.
    max_media_bytes: int = 2 * 1024 ** 3
    max_media_seconds: float = 2 * 3600.0
    elevenlabs_api_key: str | None = field(default=None, repr=False)
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    upload_url_ttl_seconds: int = 2 * 3600
    download_url_ttl_seconds: int = 3600
    artifact_ttl_hours: int = 48
    # Operations (docs/operations.md): retention of inputs and unused uploads, its schedule, /metrics.
    input_ttl_hours: int = 48
    upload_ttl_hours: int = 24
    retention_interval_minutes: float = 60.0
    metrics_token: str | None = field(default=None, repr=False)
    max_target_languages: int = 10
    min_input_seconds: float = 0.5

    lease_seconds: float = 60.0
    max_attempts: int = 3
    retry_base_seconds: float = 5.0
    poll_interval_seconds: float = 5.0
    claim_batch_size: int = 8
    max_concurrent_tasks: int = 4
    stage_concurrency: int = 2
    cpu_workers: int = 2
    sse_keepalive_seconds: float = 15.0
    shutdown_drain_seconds: float = 30.0

    whisper_model_dir: str | None = None
    # The multilingual model for non-English speech and detection: "" uses the packaged Whisper base
    # (joined into DATA_DIR/models once), "none" turns it off (English only), else a CTranslate2 model folder.
    whisper_multilingual_dir: str = ""
    # The offline voice (docs/offline-voice.md): kokoro | espeak | auto (Kokoro-82M where it is measurably
    # more intelligible, espeak-ng elsewhere); a job may ask for "natural" (Kokoro) or "fast" (espeak-ng).
    offline_voice: str = "auto"
    # Kokoro's model: "" joins the packaged parts into DATA_DIR/models once, "none" turns Kokoro off, else a
    # folder holding kokoro.onnx, vocab.json and voices_ja.npz.
    kokoro_model_dir: str = ""
    sample_rate: int = 48000
    max_engine_rate: float = 1.25
    stretch_ceiling: float = 1.25
    min_tempo: float = 0.85
    unit_pause_seconds: float = 0.3
    caption_max_cps: float = 17.0
    duck_db: float = -12.0
    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    web_format: str = "mp3"

    # Cloud providers: each stage uses its cloud engine when the key is set, the offline one otherwise.
    supabase_service_key: str | None = field(default=None, repr=False)
    deepgram_api_key: str | None = field(default=None, repr=False)
    deepgram_base_url: str = "https://api.deepgram.com"
    deepgram_stt_model: str = "nova-3"
    deepgram_tts_voices: tuple[tuple[str, str], ...] = ()
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    supabase_concurrency: int = 16
    deepgram_stt_concurrency: int = 20
    deepgram_tts_concurrency: int = 10
    openai_concurrency: int = 8

    # Scale-out (service/queue/): what this process does, and how work reaches the processes that run stages.
    role: str = "all"  # all | api | worker (`dubbing serve --role`)
    queue_backend: str = "postgres"  # postgres (the in-process supervisor) | dramatiq (Redis)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = "dramatiq"  # key prefix, so deployments can share one Redis

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def embedded_db_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"

    @property
    def cloud_storage(self) -> bool:
        return bool(self.supabase_url and self.supabase_service_key)

    @property
    def iss(self) -> str | None:
        """The token issuer to require: only checked when a Supabase project is configured."""
        return f"{self.supabase_url.rstrip('/')}/auth/v1" if self.supabase_url else None

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        host = env.get("HOST", "127.0.0.1")
        port = _int(env, "PORT", 8000)
        data_dir = Path(env.get("DATA_DIR", ".dubbing"))
        cpus = os.cpu_count() or 2
        defaults: dict[str, Any] = {f.name: f.default for f in fields(cls)}
        numbers: dict[str, Any] = {name: _number(env, name.upper(), defaults[name]) for name in NUMBERS_FROM_ENV}
        return cls(
            host=host,
            port=port,
            public_base_url=env.get("PUBLIC_BASE_URL", f"http://{host}:{port}").rstrip("/"),
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or None,
            database_listen_url=env.get("DATABASE_LISTEN_URL") or None,
            # A local secret is generated only in local mode; a Supabase project brings its own keys.
            jwt_secret=env.get("SUPABASE_JWT_SECRET")
            or ("" if env.get("SUPABASE_URL") else local_jwt_secret(data_dir)),
            supabase_url=env.get("SUPABASE_URL") or None,
            local_auth=not env.get("SUPABASE_JWT_SECRET") and not env.get("SUPABASE_URL"),
            supabase_anon_key=env.get("SUPABASE_ANON_KEY") or None,
            cors_origins=tuple(o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()),
            log_format=env.get("LOG_FORMAT", "console"),
            log_level=env.get("LOG_LEVEL", "info"),
            storage_bucket=env.get("STORAGE_BUCKET", "dubbing"),
            metrics_token=env.get("METRICS_TOKEN") or None,
            cpu_workers=_int(env, "CPU_WORKERS", cpus),
            whisper_model_dir=env.get("WHISPER_MODEL_DIR") or None,
            whisper_multilingual_dir=env.get("WHISPER_MULTILINGUAL_MODEL_DIR", ""),
            offline_voice=(env.get("OFFLINE_VOICE") or "auto").strip().lower(),
            kokoro_model_dir=env.get("KOKORO_MODEL_DIR", ""),
            web_format=env.get("WEB_FORMAT", "mp3"),
            supabase_service_key=env.get("SUPABASE_SERVICE_KEY") or None,
            deepgram_api_key=env.get("DEEPGRAM_API_KEY") or None,
            deepgram_base_url=env.get("DEEPGRAM_BASE_URL", "https://api.deepgram.com").rstrip("/"),
            deepgram_stt_model=env.get("DEEPGRAM_STT_MODEL", "nova-3"),
            deepgram_tts_voices=_pairs(env.get("DEEPGRAM_TTS_VOICES", "")),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            elevenlabs_api_key=env.get("ELEVENLABS_API_KEY") or None,
            elevenlabs_base_url=env.get("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io").rstrip("/"),
            openai_base_url=env.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
            openai_model=env.get("OPENAI_MODEL", "gpt-4o-mini"),
            queue_backend=env.get("QUEUE_BACKEND") or "postgres",
            redis_url=env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            redis_namespace=env.get("REDIS_NAMESPACE") or "dramatiq",
            **numbers,
        )


# The numbers read from the environment by their name in capitals (`lease_seconds` from LEASE_SECONDS), as an
# int or a float like their default above, which they keep when the variable is unset or empty.
NUMBERS_FROM_ENV = (
    "max_upload_bytes", "max_media_bytes", "max_media_seconds",
    "upload_url_ttl_seconds", "download_url_ttl_seconds", "artifact_ttl_hours",
    "input_ttl_hours", "upload_ttl_hours", "retention_interval_minutes", "min_input_seconds",
    "lease_seconds", "max_attempts", "retry_base_seconds", "poll_interval_seconds", "max_concurrent_tasks",
    "claim_batch_size", "stage_concurrency", "sse_keepalive_seconds", "shutdown_drain_seconds",
    "sample_rate", "max_engine_rate", "stretch_ceiling", "min_tempo", "unit_pause_seconds", "caption_max_cps",
    "duck_db", "target_lufs", "true_peak_dbtp",
    "supabase_concurrency", "deepgram_stt_concurrency", "deepgram_tts_concurrency", "openai_concurrency",
)


def local_jwt_secret(data_dir: Path) -> str:
    """A secret generated once per data directory, so local tokens survive restarts."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    os.replace(tmp, path)
    return secret
