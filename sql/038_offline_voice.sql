-- The offline voice a job asked for (docs/offline-voice.md): 'natural' (Kokoro-82M), 'fast' (espeak-ng) or
-- 'auto' (the server's OFFLINE_VOICE). Jobs made before it have 'auto', which is what they got.

ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS offline_voice text NOT NULL DEFAULT 'auto'
        CHECK (offline_voice IN ('auto', 'natural', 'fast'));
