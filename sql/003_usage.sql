-- What each language task consumed from paid providers (audio seconds transcribed, characters
-- synthesized, tokens in and out): the base for cost reports and billing.
ALTER TABLE language_tasks ADD COLUMN usage jsonb NOT NULL DEFAULT '{}'::jsonb;
