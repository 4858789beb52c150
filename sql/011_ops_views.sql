-- The `ops` schema: what an operator reads (views with stable column names) and the two things an
-- operator does by hand (retry a task, cancel a job), both through the same transition code as the API:
-- an event row in the job's history and a NOTIFY, so open progress streams see them.
-- docs/operations.md documents every column and what to do about each finding.

CREATE SCHEMA ops;

-- Tasks not yet finished, per stage (every unfinished stage has a row, in pipeline order): how many,
-- how many a supervisor could claim now, how many are leased and running, how many wait out a retry's
-- backoff, and since when the oldest claimable one has been waiting.
CREATE VIEW ops.queue_depth AS
WITH live AS (
    SELECT stage,
           count(*) AS tasks,
           count(*) FILTER (WHERE run_after <= now()
                              AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS claimable,
           count(*) FILTER (WHERE lease_expires_at >= now()) AS running,
           count(*) FILTER (WHERE lease_owner IS NULL AND run_after > now()) AS waiting_to_retry,
           min(greatest(run_after, coalesce(lease_expires_at, run_after)))
               FILTER (WHERE run_after <= now()
                         AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS oldest_claimable_since
    FROM language_tasks
    WHERE stage NOT IN ('complete', 'failed', 'cancelled')
    GROUP BY stage
)
SELECT s.stage,
       coalesce(l.tasks, 0) AS tasks,
       coalesce(l.claimable, 0) AS claimable,
       coalesce(l.running, 0) AS running,
       coalesce(l.waiting_to_retry, 0) AS waiting_to_retry,
       l.oldest_claimable_since,
       extract(epoch FROM now() - l.oldest_claimable_since)::float8 AS oldest_claimable_age_seconds
FROM (VALUES (1, 'queued'), (2, 'stt'), (3, 'translating'), (4, 'dubbing'), (5, 'mixing'), (6, 'exporting'))
     AS s(position, stage)
LEFT JOIN live l ON l.stage = s.stage
ORDER BY s.position;

-- Tasks a live lease holds: who (host:pid:start-nonce), since when, when it last renewed the lease.
CREATE VIEW ops.running_tasks AS
SELECT t.id AS task_id, t.job_id, j.owner_id, t.target_language, t.stage,
       round(t.progress::numeric, 4) AS progress, t.attempts, t.claims,
       t.lease_owner,
       t.leased_at,
       extract(epoch FROM now() - t.leased_at)::float8 AS lease_age_seconds,
       t.heartbeat_at AS last_heartbeat_at,
       extract(epoch FROM now() - t.heartbeat_at)::float8 AS heartbeat_age_seconds,
       t.lease_expires_at,
       t.started_at
FROM language_tasks t
JOIN jobs j ON j.id = t.job_id
WHERE t.stage NOT IN ('complete', 'failed', 'cancelled') AND t.lease_expires_at >= now()
ORDER BY t.leased_at;

-- Tasks whose lease ran out and that no supervisor has claimed again: their process died or lost the
-- database, and no live supervisor is polling (or all are at MAX_CONCURRENT_TASKS).
CREATE VIEW ops.stalled_tasks AS
SELECT t.id AS task_id, t.job_id, j.owner_id, t.target_language, t.stage,
       round(t.progress::numeric, 4) AS progress, t.attempts, t.claims,
       t.lease_owner,
       t.leased_at,
       t.heartbeat_at AS last_heartbeat_at,
       t.lease_expires_at,
       extract(epoch FROM now() - t.lease_expires_at)::float8 AS stalled_seconds
FROM language_tasks t
JOIN jobs j ON j.id = t.job_id
WHERE t.stage NOT IN ('complete', 'failed', 'cancelled') AND t.lease_expires_at < now()
ORDER BY t.lease_expires_at;

-- Failures of the last 24 hours by error code and the stage they happened in: tasks that failed for good
-- and failed stages that were retried, how many jobs and users met them, the latest message.
CREATE VIEW ops.failures_24h AS
SELECT e.data -> 'error' ->> 'code' AS error_code,
       coalesce(e.data ->> 'failed_in', e.stage) AS stage,
       count(*) FILTER (WHERE e.kind = 'failed') AS failed_tasks,
       count(*) FILTER (WHERE e.kind <> 'failed') AS retried,
       count(DISTINCT e.job_id) AS jobs,
       count(DISTINCT j.owner_id) AS users,
       min(e.created_at) AS first_at,
       max(e.created_at) AS last_at,
       (array_agg(e.data -> 'error' ->> 'message' ORDER BY e.created_at DESC))[1] AS last_message,
       (array_agg(e.task_id ORDER BY e.created_at DESC))[1] AS last_task_id
FROM task_events e
JOIN jobs j ON j.id = e.job_id
WHERE e.data ? 'error' AND e.created_at > now() - interval '24 hours'
GROUP BY 1, 2
ORDER BY failed_tasks DESC, retried DESC, error_code;

-- How long each stage took per engine over a window, from the `stage` events that end a stage (their data
-- carries `finished_stage`, `engine`, `stage_seconds` and `figures`, written by the supervisor).
-- `x_realtime` is seconds of input audio per second of stage time.
CREATE FUNCTION ops.stage_duration_stats(p_window interval)
RETURNS TABLE (stage text, engine text, runs bigint, p50_seconds float8, p95_seconds float8,
               max_seconds float8, mean_seconds float8, total_seconds float8, audio_seconds float8,
               x_realtime float8)
LANGUAGE sql STABLE AS $$
    SELECT e.data ->> 'finished_stage',
           coalesce(e.data ->> 'engine', 'unknown'),
           count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY (e.data ->> 'stage_seconds')::float8),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY (e.data ->> 'stage_seconds')::float8),
           max((e.data ->> 'stage_seconds')::float8),
           avg((e.data ->> 'stage_seconds')::float8),
           sum((e.data ->> 'stage_seconds')::float8),
           sum((e.data -> 'figures' ->> 'audio_seconds')::float8),
           sum((e.data -> 'figures' ->> 'audio_seconds')::float8)
               / nullif(sum((e.data ->> 'stage_seconds')::float8), 0)
    FROM task_events e
    WHERE e.data ? 'stage_seconds' AND e.created_at > now() - p_window
    GROUP BY 1, 2
    ORDER BY array_position(ARRAY['stt', 'translating', 'dubbing', 'mixing', 'exporting'], e.data ->> 'finished_stage'), 2
$$;

CREATE VIEW ops.stage_durations AS
SELECT * FROM ops.stage_duration_stats(interval '24 hours');

-- The last 48 hours, one row per hour (empty hours too): jobs created, tasks finished by outcome and the
-- seconds of input audio the completed tasks dubbed.
CREATE VIEW ops.throughput_hourly AS
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - interval '47 hours', date_trunc('hour', now()),
                           interval '1 hour') AS hour
), finished AS (
    SELECT date_trunc('hour', t.finished_at) AS hour,
           count(*) FILTER (WHERE t.stage = 'complete') AS tasks_completed,
           count(*) FILTER (WHERE t.stage = 'failed') AS tasks_failed,
           count(*) FILTER (WHERE t.stage = 'cancelled') AS tasks_cancelled,
           sum(j.voice_duration_seconds) FILTER (WHERE t.stage = 'complete') AS audio_seconds_dubbed
    FROM language_tasks t
    JOIN jobs j ON j.id = t.job_id
    WHERE t.finished_at >= date_trunc('hour', now()) - interval '47 hours'
    GROUP BY 1
), created AS (
    SELECT date_trunc('hour', created_at) AS hour, count(*) AS jobs_created
    FROM jobs
    WHERE created_at >= date_trunc('hour', now()) - interval '47 hours'
    GROUP BY 1
)
SELECT h.hour,
       coalesce(c.jobs_created, 0) AS jobs_created,
       coalesce(f.tasks_completed, 0) AS tasks_completed,
       coalesce(f.tasks_failed, 0) AS tasks_failed,
       coalesce(f.tasks_cancelled, 0) AS tasks_cancelled,
       coalesce(f.audio_seconds_dubbed, 0)::float8 AS audio_seconds_dubbed
FROM hours h
LEFT JOIN finished f ON f.hour = h.hour
LEFT JOIN created c ON c.hour = h.hour
ORDER BY h.hour DESC;

-- Bytes in storage per user: artifacts, job inputs (voice + background, as recorded at job creation) and
-- uploads no job used; live (still in storage) and deleted (by retention or the user). Largest first.
CREATE VIEW ops.storage_by_user AS
WITH artifact_bytes AS (
    SELECT j.owner_id,
           count(*) FILTER (WHERE a.deleted_at IS NULL) AS artifacts_live,
           coalesce(sum(a.size_bytes) FILTER (WHERE a.deleted_at IS NULL), 0) AS artifact_bytes_live,
           coalesce(sum(a.size_bytes) FILTER (WHERE a.deleted_at IS NOT NULL), 0) AS artifact_bytes_deleted
    FROM artifacts a
    JOIN jobs j ON j.id = a.job_id
    GROUP BY j.owner_id
), input_bytes AS (
    SELECT owner_id,
           count(*) AS jobs,
           coalesce(sum(voice_size_bytes + coalesce(background_size_bytes, 0))
                        FILTER (WHERE inputs_deleted_at IS NULL), 0) AS input_bytes_live,
           coalesce(sum(voice_size_bytes + coalesce(background_size_bytes, 0))
                        FILTER (WHERE inputs_deleted_at IS NOT NULL), 0) AS input_bytes_deleted
    FROM jobs
    GROUP BY owner_id
), upload_bytes AS (
    SELECT owner_id,
           coalesce(sum(declared_size_bytes) FILTER (WHERE deleted_at IS NULL), 0) AS unused_upload_bytes_live,
           coalesce(sum(declared_size_bytes) FILTER (WHERE deleted_at IS NOT NULL), 0) AS unused_upload_bytes_deleted
    FROM uploads
    WHERE used_at IS NULL
    GROUP BY owner_id
), owners AS (
    SELECT owner_id FROM input_bytes UNION SELECT owner_id FROM upload_bytes
)
SELECT o.owner_id,
       (coalesce(a.artifact_bytes_live, 0) + coalesce(i.input_bytes_live, 0)
        + coalesce(u.unused_upload_bytes_live, 0))::bigint AS live_bytes,
       (coalesce(a.artifact_bytes_deleted, 0) + coalesce(i.input_bytes_deleted, 0)
        + coalesce(u.unused_upload_bytes_deleted, 0))::bigint AS deleted_bytes,
       coalesce(i.jobs, 0) AS jobs,
       coalesce(a.artifacts_live, 0) AS artifacts_live,
       coalesce(a.artifact_bytes_live, 0)::bigint AS artifact_bytes_live,
       coalesce(a.artifact_bytes_deleted, 0)::bigint AS artifact_bytes_deleted,
       coalesce(i.input_bytes_live, 0)::bigint AS input_bytes_live,
       coalesce(i.input_bytes_deleted, 0)::bigint AS input_bytes_deleted,
       coalesce(u.unused_upload_bytes_live, 0)::bigint AS unused_upload_bytes_live,
       coalesce(u.unused_upload_bytes_deleted, 0)::bigint AS unused_upload_bytes_deleted
FROM owners o
LEFT JOIN artifact_bytes a ON a.owner_id = o.owner_id
LEFT JOIN input_bytes i ON i.owner_id = o.owner_id
LEFT JOIN upload_bytes u ON u.owner_id = o.owner_id
ORDER BY live_bytes DESC, o.owner_id;

-- Bytes in storage per kind of object: each artifact kind, `voice_input`, `background_input` and
-- `unused_upload` (declared size); live and deleted.
CREATE VIEW ops.storage_by_kind AS
SELECT kind,
       count(*) FILTER (WHERE deleted_at IS NULL) AS live_objects,
       coalesce(sum(size_bytes) FILTER (WHERE deleted_at IS NULL), 0)::bigint AS live_bytes,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted_objects,
       coalesce(sum(size_bytes) FILTER (WHERE deleted_at IS NOT NULL), 0)::bigint AS deleted_bytes
FROM (
    SELECT kind, size_bytes, deleted_at FROM artifacts
    UNION ALL
    SELECT 'voice_input', voice_size_bytes, inputs_deleted_at FROM jobs
    UNION ALL
    SELECT 'background_input', background_size_bytes, inputs_deleted_at FROM jobs WHERE background_path IS NOT NULL
    UNION ALL
    SELECT 'unused_upload', declared_size_bytes, deleted_at FROM uploads WHERE used_at IS NULL
) AS objects
GROUP BY kind
ORDER BY live_bytes DESC, kind;

-- Jobs per user per day (UTC) over the last 30 days, with their languages' outcomes.
CREATE VIEW ops.jobs_per_user_day AS
SELECT (j.created_at AT TIME ZONE 'UTC')::date AS day,
       j.owner_id,
       count(*) AS jobs,
       coalesce(sum(t.languages), 0) AS languages,
       coalesce(sum(t.complete), 0) AS tasks_completed,
       coalesce(sum(t.failed), 0) AS tasks_failed,
       coalesce(sum(t.cancelled), 0) AS tasks_cancelled,
       sum(j.voice_duration_seconds)::float8 AS audio_seconds,
       count(*) FILTER (WHERE j.deleted_at IS NOT NULL) AS deleted_jobs
FROM jobs j
LEFT JOIN LATERAL (
    SELECT count(*) AS languages,
           count(*) FILTER (WHERE stage = 'complete') AS complete,
           count(*) FILTER (WHERE stage = 'failed') AS failed,
           count(*) FILTER (WHERE stage = 'cancelled') AS cancelled
    FROM language_tasks WHERE job_id = j.id
) t ON true
WHERE j.created_at > now() - interval '30 days'
GROUP BY 1, 2
ORDER BY day DESC, jobs DESC, j.owner_id;

-- The latest retention runs (schedule or command): when, how long, what they removed, what went wrong.
CREATE VIEW ops.retention_runs AS
SELECT id, trigger, runner, started_at, finished_at,
       extract(epoch FROM finished_at - started_at)::float8 AS seconds,
       report, error
FROM retention_runs
ORDER BY started_at DESC
LIMIT 100;

-- Run a task again. A failed task goes back to `queued` with a fresh budget of MAX_ATTEMPTS (its earlier
-- error, attempts and claims go into the event's data) and starts over from speech to text, which reuses
-- the job's transcript unless that failed too (then it is transcribed again). A task waiting out a
-- retry's backoff, or stalled with an expired lease, becomes claimable now. A running task (live lease),
-- a completed or a cancelled one, or one whose job's inputs are gone, is refused with an error.
-- Returns the appended events; supervisors are woken (`tasks_ready`).
CREATE FUNCTION ops.retry_task(p_task uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_job uuid;
    v_gone timestamptz;
    v_old language_tasks;
    v_new language_tasks;
    v_events jsonb;
    v_done jsonb;
BEGIN
    SELECT job_id INTO v_job FROM language_tasks WHERE id = p_task;
    IF v_job IS NULL THEN
        RAISE EXCEPTION 'there is no task %', p_task USING ERRCODE = 'no_data_found';
    END IF;
    SELECT coalesce(deleted_at, inputs_deleted_at) INTO v_gone FROM jobs WHERE id = v_job FOR UPDATE;
    IF v_gone IS NOT NULL THEN
        RAISE EXCEPTION 'the inputs of job % were deleted at %: its tasks cannot run again', v_job, v_gone
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO v_old FROM language_tasks WHERE id = p_task FOR UPDATE;
    IF v_old.stage IN ('complete', 'cancelled') THEN
        RAISE EXCEPTION 'task % is %: only a failed, waiting or stalled task is retried', p_task, v_old.stage
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_old.lease_expires_at >= now() THEN
        RAISE EXCEPTION 'task % is running (lease held by % until %)', p_task, v_old.lease_owner,
            v_old.lease_expires_at USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_old.stage = 'failed' THEN
        UPDATE language_tasks
        SET stage = 'queued', progress = 0, error_code = NULL, error_message = NULL, attempts = 0, claims = 0,
            run_after = now(), finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = p_task RETURNING * INTO v_new;
        -- A failed transcript would fail the task again at once: let it be made afresh.
        DELETE FROM transcripts WHERE job_id = v_job AND state = 'failed';
    ELSE
        UPDATE language_tasks
        SET run_after = now(), lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = p_task RETURNING * INTO v_new;
    END IF;
    v_events := jsonb_build_array(jsonb_build_object(
        'kind', 'stage', 'task_id', v_new.id, 'target_language', v_new.target_language, 'stage', v_new.stage,
        'progress', v_new.progress,
        'data', jsonb_build_object('retried_by', 'operator', 'previous', jsonb_build_object(
            'stage', v_old.stage, 'attempts', v_old.attempts, 'claims', v_old.claims,
            'error_code', v_old.error_code, 'error_message', v_old.error_message,
            'lease_owner', v_old.lease_owner))));
    v_done := refresh_job_status(v_job);
    IF v_done IS NOT NULL THEN
        v_events := v_events || jsonb_build_array(v_done);
    END IF;
    PERFORM pg_notify('tasks_ready', '');
    RETURN append_job_events(v_job, v_events);
END
$$;

-- Cancel every unfinished task of a job, as `POST /v1/jobs/{id}/cancel` does (the same `cancel_job`).
CREATE FUNCTION ops.cancel_job(p_job uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_events jsonb;
BEGIN
    v_events := cancel_job(p_job, NULL);
    IF v_events IS NULL THEN
        RAISE EXCEPTION 'there is no job %', p_job USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_events;
END
$$;
