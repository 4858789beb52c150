-- Every signed upload URL the API hands out: who asked, for which object, of what declared size. A job
-- can only be made from an upload of the caller's that arrived at the size it declared; an upload no job
-- used is removed by retention after UPLOAD_TTL_HOURS. Rows stay (marked deleted) for the history.
CREATE TABLE uploads (
    object_path           text PRIMARY KEY,
    owner_id              text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('voice', 'background')),
    content_type          text NOT NULL,
    declared_size_bytes   bigint NOT NULL CHECK (declared_size_bytes > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    url_expires_at        timestamptz NOT NULL,
    first_job_id          uuid REFERENCES jobs (id) ON DELETE SET NULL,
    used_at               timestamptz,
    deleted_at            timestamptz,
    CONSTRAINT upload_owned CHECK (object_path LIKE owner_id || '/%')
);

-- Retention looks for uploads no job used, oldest first.
CREATE INDEX uploads_unused ON uploads (created_at) WHERE used_at IS NULL AND deleted_at IS NULL;
