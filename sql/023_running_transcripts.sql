-- IF NOT EXISTS: development databases of the branches this came from applied it under another file name.
-- Every sweep looks for the leases this host's dead processes hold (supervisor/owners.py), transcripts'
-- among them: only the running ones can hold one, a handful among every job's transcript.
CREATE INDEX IF NOT EXISTS transcripts_running ON transcripts (job_id) WHERE state = 'running';
