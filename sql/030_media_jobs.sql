-- Media jobs (issue 20): a video, or one soundtrack where speech and background are mixed. The uploaded object is
-- kept in the voice_* columns (it is what the job was made from: retention, downloads and names work unchanged);
-- `media` says it is a mixed recording and holds what the job asked of it and what the probe found:
-- {"has_video", "container", "start_seconds", "end_seconds", "background": "keep"|"drop", "video": {...}}.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS media jsonb;

ALTER TABLE uploads DROP CONSTRAINT IF EXISTS uploads_kind_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_kind_check CHECK (kind IN ('voice', 'background', 'media'));

-- Per language the dubbed `video`; per job what separation gave: the `background_stem` and the `isolated_voice`.
ALTER TABLE artifacts DROP CONSTRAINT IF EXISTS artifacts_kind_check;
ALTER TABLE artifacts ADD CONSTRAINT artifacts_kind_check CHECK (kind IN (
    'master_wav', 'master_web', 'voice_stem', 'captions_srt', 'captions_vtt', 'manifest',
    'transcript_json', 'transcript_srt', 'transcript_vtt', 'video', 'background_stem', 'isolated_voice'));
