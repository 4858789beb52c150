-- One transcript per job, shared by its language tasks: the first task to reach `stt` takes the
-- lease and transcribes, the others wait for `ready`. An expired lease (its process died) can be
-- taken over by the next task that looks.
CREATE TABLE transcripts (
    job_id            uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    state             text NOT NULL CHECK (state IN ('running', 'ready', 'failed')),
    lease_owner       text,
    lease_expires_at  timestamptz,
    language          text,
    engine            text,
    model             text,
    segment_count     integer CHECK (segment_count >= 0),
    data              jsonb,
    error_code        text,
    error_message     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ready_has_data CHECK ((state = 'ready') = (data IS NOT NULL)),
    CONSTRAINT failed_has_reason CHECK ((state = 'failed') = (error_code IS NOT NULL)),
    CONSTRAINT running_is_leased CHECK ((state = 'running') = (lease_owner IS NOT NULL))
);
