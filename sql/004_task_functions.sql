-- Task transitions as one round trip each. Every change to a task locks its job row first (the
-- same order job cancellation uses), updates the task if the caller still holds its lease, appends
-- the event (and the job's `done` event when it was the last task to finish) with the job's next
-- sequence numbers, and NOTIFYs once. The Python side (service/tasks.py, events.py, jobs.py) calls
-- these; this file is the one place that knows how a job's status follows from its tasks.

CREATE FUNCTION job_status_from_tasks(p_job uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN count(*) = 0 OR bool_and(stage = 'queued') THEN 'queued'
        WHEN bool_or(stage NOT IN ('complete', 'failed', 'cancelled')) THEN 'running'
        WHEN bool_and(stage = 'complete') THEN 'complete'
        WHEN bool_or(stage = 'complete') THEN 'partial'
        WHEN bool_or(stage = 'failed') THEN 'failed'
        ELSE 'cancelled'
    END
    FROM language_tasks WHERE job_id = p_job
$$;

-- Set the job's status from its tasks; returns the `done` event when the job has just ended.
CREATE FUNCTION refresh_job_status(p_job uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_old text;
    v_new text;
BEGIN
    SELECT status INTO v_old FROM jobs WHERE id = p_job FOR UPDATE;
    v_new := job_status_from_tasks(p_job);
    IF v_new IS DISTINCT FROM v_old THEN
        UPDATE jobs SET status = v_new, updated_at = now() WHERE id = p_job;
    END IF;
    IF v_new IN ('complete', 'partial', 'failed', 'cancelled')
       AND v_old NOT IN ('complete', 'partial', 'failed', 'cancelled') THEN
        RETURN jsonb_build_object('kind', 'done', 'data', jsonb_build_object('status', v_new));
    END IF;
    RETURN NULL;
END
$$;

-- Append events ({kind, task_id, target_language, stage, progress, data}) to a job's history under
-- its row lock, so a job's sequence numbers commit in order; NOTIFY them once. Returns the rows as
-- the stream shows them.
CREATE FUNCTION append_job_events(p_job uuid, p_events jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := jsonb_array_length(p_events);
    v_last bigint;
    v_rows jsonb;
    v_payload text;
BEGIN
    IF v_count = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    UPDATE jobs SET last_event_seq = last_event_seq + v_count, updated_at = now()
    WHERE id = p_job RETURNING last_event_seq INTO v_last;
    WITH inserted AS (
        INSERT INTO task_events (job_id, seq, task_id, target_language, kind, stage, progress, data)
        SELECT p_job, v_last - v_count + e.ord, (e.ev ->> 'task_id')::uuid, e.ev ->> 'target_language',
               e.ev ->> 'kind', e.ev ->> 'stage', (e.ev ->> 'progress')::real, coalesce(e.ev -> 'data', '{}')
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(ev, ord)
        RETURNING *
    )
    -- As the stream shows them: times in UTC with microseconds, progress to 4 places.
    SELECT jsonb_agg(jsonb_build_object(
               'job_id', job_id, 'seq', seq, 'kind', kind, 'task_id', task_id,
               'target_language', target_language, 'stage', stage,
               'progress', round(progress::numeric, 4), 'data', data,
               'at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
           ORDER BY seq)
    INTO v_rows FROM inserted;
    v_payload := jsonb_build_object('job_id', p_job, 'events', v_rows)::text;
    IF octet_length(v_payload) > 7000 THEN  -- NOTIFY payloads stop at 8000 bytes
        v_payload := jsonb_build_object('job_id', p_job, 'refetch', true)::text;
    END IF;
    PERFORM pg_notify('job_events', v_payload);
    RETURN v_rows;
END
$$;

-- Change a leased task: new stage (NULL keeps it), progress (with no new stage it only moves
-- forward), error, lease release, a later run_after. Returns the appended events, or NULL when
-- the caller no longer holds the lease (cancelled, or taken over after expiry).
CREATE FUNCTION change_task(
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
