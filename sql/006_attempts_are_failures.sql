-- Attempts count the task's own failures only. A claim used to spend one, so a process killed by the
-- machine, a database blip that let a lease expire, or a deploy all counted against the task; now a
-- claim counts in `claims` (which guards against a task that kills its process every time) and
-- `attempts` moves only when a failed stage is retried (change_task with a release and a run_after).

ALTER TABLE language_tasks ADD COLUMN claims integer NOT NULL DEFAULT 0 CHECK (claims >= 0);
UPDATE language_tasks SET claims = attempts;

CREATE OR REPLACE FUNCTION change_task(
    p_task uuid, p_owner text, p_kind text, p_stage text, p_progress real,
    p_error_code text, p_error_message text, p_release boolean, p_run_after_seconds double precision,
    p_data jsonb
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_job uuid;
    v_row language_tasks;
    v_terminal boolean := coalesce(p_stage IN ('complete', 'failed', 'cancelled'), false);
    v_events jsonb;
    v_done jsonb;
BEGIN
    SELECT job_id INTO v_job FROM language_tasks WHERE id = p_task;
    IF v_job IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM jobs WHERE id = v_job FOR UPDATE;
    UPDATE language_tasks SET
        stage = coalesce(p_stage, stage),
        progress = CASE
            WHEN p_progress IS NULL THEN progress
            WHEN p_stage IS NULL THEN greatest(progress, p_progress)
            ELSE p_progress END,
        error_code = coalesce(p_error_code, error_code),
        error_message = coalesce(p_error_message, error_message),
        -- A release with a later run_after is a retry: the task's own failure, the only thing that
        -- spends an attempt.
        attempts = attempts + CASE WHEN p_release AND p_run_after_seconds IS NOT NULL THEN 1 ELSE 0 END,
        lease_owner = CASE WHEN p_release OR v_terminal THEN NULL ELSE lease_owner END,
        lease_expires_at = CASE WHEN p_release OR v_terminal THEN NULL ELSE lease_expires_at END,
        finished_at = CASE WHEN v_terminal THEN now() ELSE finished_at END,
        run_after = CASE WHEN p_run_after_seconds IS NULL THEN run_after
                         ELSE now() + make_interval(secs => p_run_after_seconds) END,
        updated_at = now()
    WHERE id = p_task AND lease_owner = p_owner AND stage NOT IN ('complete', 'failed', 'cancelled')
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_events := jsonb_build_array(jsonb_build_object(
        'kind', p_kind, 'task_id', v_row.id, 'target_language', v_row.target_language,
        'stage', v_row.stage, 'progress', v_row.progress, 'data', coalesce(p_data, '{}'::jsonb)));
    IF p_stage IS NOT NULL THEN  -- only a stage change can change the job's status
        v_done := refresh_job_status(v_job);
        IF v_done IS NOT NULL THEN
            v_events := v_events || jsonb_build_array(v_done);
        END IF;
    END IF;
    RETURN append_job_events(v_job, v_events);
END
$$;
