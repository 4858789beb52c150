-- What operations need in the tables themselves: when a task's lease was taken and last renewed, when a
-- job's inputs (and the job itself, by its owner) were deleted, a record of retention runs, job
-- cancellation as one function (the API and `ops.cancel_job` both call it), and the indexes the `ops`
-- views (011) and retention read through.

-- Claims set both, heartbeats renew the second. Neither is indexed, so heartbeats stay HOT updates.
ALTER TABLE language_tasks ADD COLUMN leased_at timestamptz;
ALTER TABLE language_tasks ADD COLUMN heartbeat_at timestamptz;

-- Retention removes a finished job's voice and background after INPUT_TTL_HOURS; the row stays, so the
-- history can still be queried. `deleted_at`: the owner deleted the job (DELETE /v1/jobs/{id}); the row
-- stays for operators and is invisible to its owner.
ALTER TABLE jobs ADD COLUMN inputs_deleted_at timestamptz;
ALTER TABLE jobs ADD COLUMN deleted_at timestamptz;

-- Jobs whose inputs are still in storage (finished ones within INPUT_TTL_HOURS and unfinished ones):
-- where retention looks, oldest first, and how it tells whether another job still needs an object.
CREATE INDEX jobs_inputs_present ON jobs (created_at) WHERE inputs_deleted_at IS NULL;
CREATE INDEX jobs_voice_present ON jobs (voice_path) WHERE inputs_deleted_at IS NULL;
CREATE INDEX jobs_background_present ON jobs (background_path)
    WHERE inputs_deleted_at IS NULL AND background_path IS NOT NULL;
-- Jobs per hour and per day (ops.throughput_hourly, ops.jobs_per_user_day).
CREATE INDEX jobs_created ON jobs (created_at);
-- Tasks finished per hour (ops.throughput_hourly).
CREATE INDEX language_tasks_finished ON language_tasks (finished_at) WHERE finished_at IS NOT NULL;
-- Failures and retries (events with an error), and finished stages (events that carry their duration):
-- small partial indexes, so the ops views read a window of them without scanning the whole history.
CREATE INDEX task_events_errors ON task_events (created_at) WHERE data ? 'error';
CREATE INDEX task_events_stage_runs ON task_events (created_at) WHERE data ? 'stage_seconds';

-- Every retention run, from the service's schedule or `dubbing retention`: the schedule runs only when
-- none started within RETENTION_INTERVAL_MINUTES, and operators see here that retention is running.
CREATE TABLE retention_runs (
    id           bigserial PRIMARY KEY,
    runner       text NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'command')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    report       jsonb,
    error        text
);
CREATE INDEX retention_runs_newest ON retention_runs (started_at DESC);

-- Cancel a job's unfinished tasks: each gets a `stage` event (and the job its `done` when it ends), in the
-- job's history and on the NOTIFY channel, like every other transition. `p_owner` NULL is an operator
-- (any job, deleted or not); otherwise only the owner's own, undeleted job. Returns the appended events
-- (empty when nothing was left to cancel), or NULL when there is no such job.
CREATE FUNCTION cancel_job(p_job uuid, p_owner text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_found uuid;
    v_events jsonb;
    v_done jsonb;
BEGIN
    SELECT id INTO v_found FROM jobs
    WHERE id = p_job AND (p_owner IS NULL OR (owner_id = p_owner AND deleted_at IS NULL))
    FOR UPDATE;
    IF v_found IS NULL THEN
        RETURN NULL;
    END IF;
    WITH cancelled AS (
        UPDATE language_tasks
        SET stage = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, finished_at = now(),
            updated_at = now()
        WHERE job_id = p_job AND stage NOT IN ('complete', 'failed', 'cancelled')
        RETURNING id, target_language, stage, progress
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'kind', 'stage', 'task_id', id, 'target_language', target_language, 'stage', stage,
               'progress', progress) ORDER BY target_language), '[]'::jsonb)
    INTO v_events FROM cancelled;
    IF jsonb_array_length(v_events) = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    v_done := refresh_job_status(p_job);
    IF v_done IS NOT NULL THEN
        v_events := v_events || jsonb_build_array(v_done);
    END IF;
    RETURN append_job_events(p_job, v_events);
END
$$;
