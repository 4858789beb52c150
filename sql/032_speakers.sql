-- Who speaks (issue 21): the job's hint for how many speakers there are (0 = find out), whether each speaker's own
-- voice may be cloned (the person creating the job confirmed the speakers' consent), and the voices the person
-- picked for some speakers ({"S1": "<an engine's voice id>"}).

ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS num_speakers smallint NOT NULL DEFAULT 0 CHECK (num_speakers BETWEEN 0 AND 8),
    ADD COLUMN IF NOT EXISTS voice_cloning boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS speaker_voices jsonb NOT NULL DEFAULT '{}'::jsonb;
