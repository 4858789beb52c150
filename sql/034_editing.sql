-- Editing a dub after the fact (issue 22): the transcript and each language's translation as rows a person edits,
-- revision counters, the edit history per segment, and artifacts kept per revision.
--
-- transcripts.revision       NULL until the editable copy of the recogniser's units exists (made on first use);
--                            then 1, one more at every edit (If-Match of the API).
-- transcript_segments        the editable units: what the stages dub from once it exists.
-- language_segments          per language and segment: the text, the source text it was made from, whether a
--                            person wrote it, and what the last finished render used (for `stale`).
-- segment_edits              who changed what, when, old and new: one row per changed field.
-- language_renders           one row per finished render of a language: its revision and the caption cues it
--                            published (each cue's text pieces per segment, for the proofread round-trip).
-- language_tasks.revision    the language's revision: one more at every edit that changes what it would render.
-- artifacts.revision         the language revision an artifact was rendered at; earlier ones stay until their TTL.

ALTER TABLE transcripts ADD COLUMN IF NOT EXISTS revision integer CHECK (revision >= 1);

CREATE TABLE IF NOT EXISTS transcript_segments (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    id          integer NOT NULL CHECK (id >= 0),
    start_seconds double precision NOT NULL CHECK (start_seconds >= 0),
    end_seconds double precision NOT NULL,
    speaker     text CHECK (length(speaker) BETWEEN 1 AND 64),
    text        text NOT NULL,
    group_id    integer NOT NULL,
    changed_at_revision integer NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, id),
    CONSTRAINT segment_has_time CHECK (end_seconds > start_seconds)
);

CREATE TABLE IF NOT EXISTS language_segments (
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target_language text NOT NULL,
    segment_id      integer NOT NULL,
    source_text     text NOT NULL,
    text            text NOT NULL,
    edited          boolean NOT NULL DEFAULT false,
    rendered_text   text,
    rendered_start  double precision,
    rendered_end    double precision,
    PRIMARY KEY (job_id, target_language, segment_id)
);

CREATE TABLE IF NOT EXISTS segment_edits (
    id              bigserial PRIMARY KEY,
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    segment_id      integer NOT NULL,
    target_language text,  -- NULL: the source transcript
    revision        integer NOT NULL,  -- the transcript's (or the language's) revision the edit made
    editor          text NOT NULL,
    action          text NOT NULL CHECK (action IN ('edit', 'split', 'merge', 'captions')),
    field           text NOT NULL CHECK (field IN ('text', 'start', 'end', 'speaker')),
    old_value       text,
    new_value       text,
    edited_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS segment_edits_by_segment ON segment_edits (job_id, segment_id, edited_at);

CREATE TABLE IF NOT EXISTS language_renders (
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target_language text NOT NULL,
    revision        integer NOT NULL,
    cues            jsonb NOT NULL,
    rendered_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, target_language, revision)
);

ALTER TABLE language_tasks ADD COLUMN IF NOT EXISTS revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1);

ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1);
ALTER TABLE artifacts DROP CONSTRAINT IF EXISTS one_artifact_per_kind;
ALTER TABLE artifacts ADD CONSTRAINT one_artifact_per_kind
    UNIQUE NULLS NOT DISTINCT (job_id, target_language, kind, revision);

-- Start rendering a finished language again from `translating` (its transcript is there: no speech recognition),
-- under the job row's lock like every task change; the job's status follows. Returns the appended events, or
-- NULL when the task is still running (a render asked for twice is one render).
CREATE OR REPLACE FUNCTION start_render(p_job uuid, p_language text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_old language_tasks;
    v_new language_tasks;
    v_events jsonb;
    v_done jsonb;
BEGIN
    PERFORM 1 FROM jobs WHERE id = p_job FOR UPDATE;
    SELECT * INTO v_old FROM language_tasks WHERE job_id = p_job AND target_language = p_language FOR UPDATE;
    IF v_old.id IS NULL OR v_old.stage NOT IN ('complete', 'failed', 'cancelled') THEN
        RETURN NULL;
    END IF;
    UPDATE language_tasks
    SET stage = 'translating', progress = 0.2, error_code = NULL, error_message = NULL, attempts = 0, claims = 0,
        run_after = now(), finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL, dispatched_at = NULL,
        dispatched_to = NULL, updated_at = now()
    WHERE id = v_old.id RETURNING * INTO v_new;
    v_events := jsonb_build_array(jsonb_build_object(
        'kind', 'stage', 'task_id', v_new.id, 'target_language', v_new.target_language, 'stage', v_new.stage,
        'progress', v_new.progress,
        'data', jsonb_build_object('render', jsonb_build_object('revision', v_new.revision,
                                                                'previous_stage', v_old.stage))));
    v_done := refresh_job_status(p_job);
    IF v_done IS NOT NULL THEN
        v_events := v_events || jsonb_build_array(v_done);
    END IF;
    RETURN append_job_events(p_job, v_events);
END
$$;
