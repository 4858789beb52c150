-- IF NOT EXISTS: development databases of the branches this came from applied it under another file name.
-- The spoken language the recogniser detected in the voice recording (from its first minute of speech), and how
-- sure it was (0..1). Set when the job asked for `auto`, and also when it named a language, so a disagreement can
-- be reported; NULL until the transcription stage has run, or when the engine cannot detect.

ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS detected_language text,
    ADD COLUMN IF NOT EXISTS detected_language_confidence real CHECK (detected_language_confidence BETWEEN 0 AND 1);
