-- IF NOT EXISTS: development databases of the branches this came from applied it under another file name.
-- The names the inputs had on the uploader's computer ("interview.mp3"): a job is titled after its voice, and its
-- downloads are named after it ("interview_es.mp3"). Uploads and jobs made before this have none.
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS filename text CHECK (length(filename) BETWEEN 1 AND 255);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS voice_filename text CHECK (length(voice_filename) BETWEEN 1 AND 255),
                 ADD COLUMN IF NOT EXISTS background_filename text CHECK (length(background_filename) BETWEEN 1 AND 255);
