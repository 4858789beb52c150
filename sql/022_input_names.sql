-- The names the inputs had on the uploader's computer ("interview.mp3"): a job is titled after its voice, and its
-- downloads are named after it ("interview_es.mp3"). Uploads and jobs made before this have none.
ALTER TABLE uploads ADD COLUMN filename text CHECK (length(filename) BETWEEN 1 AND 255);
ALTER TABLE jobs ADD COLUMN voice_filename text CHECK (length(voice_filename) BETWEEN 1 AND 255),
                 ADD COLUMN background_filename text CHECK (length(background_filename) BETWEEN 1 AND 255);
