-- Core schema: jobs, their per-language tasks, the event history and the artifacts.
-- Every state a row can be in is spelled out in a CHECK so wrong states cannot be written.

CREATE TABLE jobs (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id                  text NOT NULL,
    status                    text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'complete', 'partial', 'failed', 'cancelled')),
    source_language           text NOT NULL,
    voice_path                text NOT NULL,
    voice_content_type        text NOT NULL,
    voice_size_bytes          bigint NOT NULL CHECK (voice_size_bytes > 0),
    voice_sha256              text NOT NULL CHECK (voice_sha256 ~ '^[0-9a-f]{64}$'),
    voice_duration_seconds    double precision NOT NULL CHECK (voice_duration_seconds > 0),
    background_path           text,
    background_content_type   text,
    background_size_bytes     bigint CHECK (background_size_bytes > 0),
    background_sha256         text CHECK (background_sha256 ~ '^[0-9a-f]{64}$'),
    background_duration_seconds double precision CHECK (background_duration_seconds > 0),
    idempotency_key           text CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    request_hash              text NOT NULL,
    last_event_seq            bigint NOT NULL DEFAULT 0,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT voice_owned CHECK (voice_path LIKE owner_id || '/%'),
    CONSTRAINT background_complete CHECK (
        (background_path IS NULL AND background_content_type IS NULL AND background_size_bytes IS NULL
         AND background_sha256 IS NULL AND background_duration_seconds IS NULL)
        OR
        (background_path IS NOT NULL AND background_content_type IS NOT NULL
         AND background_size_bytes IS NOT NULL AND background_sha256 IS NOT NULL
         AND background_duration_seconds IS NOT NULL AND background_path LIKE owner_id || '/%')
    ),
    CONSTRAINT idempotency_unique UNIQUE (owner_id, idempotency_key)
);

CREATE INDEX jobs_owner_newest ON jobs (owner_id, created_at DESC, id DESC);

CREATE TABLE language_tasks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id            uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target_language   text NOT NULL,
    stage             text NOT NULL DEFAULT 'queued'
        CHECK (stage IN ('queued', 'stt', 'translating', 'dubbing', 'mixing', 'exporting',
                         'complete', 'failed', 'cancelled')),
    progress          real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_after         timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    error_code        text,
    error_message     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT one_task_per_language UNIQUE (job_id, target_language),
    CONSTRAINT lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT terminal_has_no_lease CHECK (
        stage NOT IN ('complete', 'failed', 'cancelled') OR lease_owner IS NULL),
    CONSTRAINT failed_has_reason CHECK ((stage = 'failed') = (error_code IS NOT NULL)),
    CONSTRAINT complete_is_whole CHECK (stage <> 'complete' OR progress = 1),
    CONSTRAINT finished_when_terminal CHECK (
        (stage IN ('complete', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

-- The claim query scans only rows that can still run; terminal rows never enter the index.
CREATE INDEX language_tasks_claimable ON language_tasks (run_after)
    WHERE stage NOT IN ('complete', 'failed', 'cancelled');
CREATE INDEX language_tasks_by_job ON language_tasks (job_id);

-- A hot queue table: vacuum it early and often so dead tuples from stage updates do not pile up.
ALTER TABLE language_tasks SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05,
    fillfactor = 80
);

CREATE TABLE task_events (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    task_id     uuid REFERENCES language_tasks (id) ON DELETE CASCADE,
    target_language text,
    kind        text NOT NULL CHECK (kind IN ('stage', 'progress', 'artifact', 'failed', 'done')),
    stage       text,
    progress    real CHECK (progress >= 0 AND progress <= 1),
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- seq is per job and handed out under the job row's lock, so it commits in order.
    CONSTRAINT event_seq_unique UNIQUE (job_id, seq)
);

CREATE TABLE artifacts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_id          uuid REFERENCES language_tasks (id) ON DELETE CASCADE,
    target_language  text,
    kind             text NOT NULL CHECK (kind IN (
        'master_wav', 'master_web', 'voice_stem', 'captions_srt', 'captions_vtt', 'manifest',
        'transcript_json', 'transcript_srt', 'transcript_vtt')),
    object_path      text NOT NULL,
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes       bigint NOT NULL CHECK (size_bytes >= 0),
    content_type     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at),
    CONSTRAINT language_matches_task CHECK ((task_id IS NULL) = (target_language IS NULL)),
    CONSTRAINT one_artifact_per_kind UNIQUE NULLS NOT DISTINCT (job_id, target_language, kind)
);

CREATE INDEX artifacts_expiring ON artifacts (expires_at) WHERE deleted_at IS NULL;
