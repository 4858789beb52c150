-- Every voice clone a job made at a TTS provider (issue 21), recorded before the provider is asked (state
-- 'creating', no voice_id yet) so that none outlives its job: the sweep deletes the clones of finished jobs, and
-- after a crash finds a 'creating' clone by its name (dub-<job id>-<speaker>) at the provider.

CREATE TABLE IF NOT EXISTS voice_clones (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL,
    speaker     text NOT NULL,
    provider    text NOT NULL,
    name        text NOT NULL,
    voice_id    text,
    state       text NOT NULL DEFAULT 'creating' CHECK (state IN ('creating', 'ready', 'unusable', 'deleted')),
    owner       text NOT NULL,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- One live clone per speaker of a job; deleted ones stay as the record.
CREATE UNIQUE INDEX IF NOT EXISTS voice_clones_live ON voice_clones (job_id, speaker) WHERE state <> 'deleted';
CREATE INDEX IF NOT EXISTS voice_clones_to_delete ON voice_clones (job_id) WHERE state <> 'deleted';
