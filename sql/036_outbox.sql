-- Integrations (issue 23): signed webhooks and Stripe meter events, sent from an outbox.
--
-- A row in `outbox` is written by a trigger on `task_events`, so it commits in the same transaction as the
-- state change it reports (a task completing, a job ending or being cancelled): a crash can neither lose
-- an event nor invent one. The delivery loop (service/integrations/delivery.py) sends each row until the
-- receiver takes it, recording every attempt in `outbox_attempts`. One row per message: its id is the
-- Standard Webhooks `webhook-id`, the same on every retry; a Stripe row's identifier is the task id.

ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS webhook_url text CHECK (length(webhook_url) BETWEEN 1 AND 2000),
    -- The Stripe customer named by the JWT claim STRIPE_CUSTOMER_CLAIM when the job was made (if any).
    ADD COLUMN IF NOT EXISTS billing_customer text CHECK (length(billing_customer) BETWEEN 1 AND 255);

-- Who pays for whose usage: an operator's mapping of a user to their Stripe customer (takes precedence over
-- the JWT claim recorded on the job).
CREATE TABLE IF NOT EXISTS billing_customers (
    owner_id            text PRIMARY KEY,
    stripe_customer_id  text NOT NULL CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS outbox (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    destination      text NOT NULL CHECK (destination IN ('webhook', 'stripe')),
    event_type       text NOT NULL CHECK (event_type IN (
        'language.completed', 'job.completed', 'job.failed', 'job.cancelled')),
    job_id           uuid NOT NULL,   -- no foreign key: a bill outlives the job row
    task_id          uuid,
    owner_id         text NOT NULL,
    url              text,            -- where a webhook goes (the job's webhook_url when the event happened)
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_status      integer,
    last_error       text,
    CONSTRAINT webhook_has_url CHECK (destination <> 'webhook' OR url IS NOT NULL),
    CONSTRAINT delivered_when_done CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);
-- The delivery loop reads only what is still to send, through this partial index.
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_by_job ON outbox (job_id);
-- One meter event per completed language, whatever happens (a task completed twice cannot bill twice).
CREATE UNIQUE INDEX IF NOT EXISTS outbox_one_bill_per_task ON outbox (task_id) WHERE destination = 'stripe';

CREATE TABLE IF NOT EXISTS outbox_attempts (
    id               bigserial PRIMARY KEY,
    outbox_id        uuid NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    status           integer,         -- the HTTP status, NULL when no answer came (refused, timeout, SSRF)
    latency_ms       double precision NOT NULL,
    error            text,
    response_excerpt text
);
CREATE INDEX IF NOT EXISTS outbox_attempts_by_message ON outbox_attempts (outbox_id, attempt);

-- The event a webhook carries, Standard Webhooks' shape: {type, timestamp, data}.
CREATE OR REPLACE FUNCTION outbox_payload(p_type text, p_job jobs, p_event task_events) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', p_type,
        'timestamp', to_char(p_event.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', CASE WHEN p_type = 'language.completed' THEN jsonb_build_object(
                    'job_id', p_job.id, 'task_id', p_event.task_id, 'target_language', p_event.target_language,
                    'source_language', p_job.source_language,
                    'duration_seconds', round(p_job.voice_duration_seconds::numeric, 3))
                ELSE jsonb_build_object(
                    'job_id', p_job.id, 'status', p_event.data ->> 'status',
                    'languages', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                      'task_id', t.id, 'target_language', t.target_language, 'stage', t.stage,
                                      'error', CASE WHEN t.error_code IS NULL THEN NULL ELSE jsonb_build_object(
                                                   'code', t.error_code, 'message', t.error_message) END)
                                      ORDER BY t.target_language), '[]'::jsonb)
                                  FROM language_tasks t WHERE t.job_id = p_job.id))
                END)
$$;

-- From a job's history to its outbox: `language.completed` when a task enters `complete`, `job.*` with the
-- job's `done` event (a partial job, some languages complete, is `job.completed` with status `partial`).
CREATE OR REPLACE FUNCTION outbox_from_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_type text;
    v_job jobs;
BEGIN
    IF NEW.kind = 'stage' AND NEW.stage = 'complete' THEN
        v_type := 'language.completed';
    ELSIF NEW.kind = 'done' THEN
        v_type := CASE NEW.data ->> 'status' WHEN 'failed' THEN 'job.failed' WHEN 'cancelled' THEN 'job.cancelled'
                  ELSE 'job.completed' END;
    ELSE
        RETURN NULL;
    END IF;
    SELECT * INTO v_job FROM jobs WHERE id = NEW.job_id;
    IF v_job.webhook_url IS NOT NULL THEN
        INSERT INTO outbox (destination, event_type, job_id, task_id, owner_id, url, payload)
        VALUES ('webhook', v_type, v_job.id, NEW.task_id, v_job.owner_id, v_job.webhook_url,
                outbox_payload(v_type, v_job, NEW));
    END IF;
    IF v_type = 'language.completed' THEN
        -- Always written; the delivery loop marks it `skipped` when STRIPE_API_KEY is unset.
        INSERT INTO outbox (destination, event_type, job_id, task_id, owner_id, payload)
        VALUES ('stripe', v_type, v_job.id, NEW.task_id, v_job.owner_id, jsonb_build_object(
                    'task_id', NEW.task_id, 'job_id', v_job.id, 'owner_id', v_job.owner_id,
                    'target_language', NEW.target_language,
                    'dubbed_seconds', round(v_job.voice_duration_seconds::numeric, 3),
                    'customer', v_job.billing_customer,
                    'timestamp', extract(epoch FROM NEW.created_at)::bigint))
        ON CONFLICT (task_id) WHERE destination = 'stripe' DO NOTHING;
    END IF;
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS task_events_outbox ON task_events;
CREATE TRIGGER task_events_outbox AFTER INSERT ON task_events
    FOR EACH ROW WHEN (NEW.kind IN ('stage', 'done')) EXECUTE FUNCTION outbox_from_event();

-- Operators: every message with its last attempt, newest first.
CREATE OR REPLACE VIEW ops.outbox AS
SELECT o.id AS message_id, o.destination, o.event_type, o.state, o.job_id, o.task_id, o.owner_id, o.url,
       o.attempts, o.created_at, o.next_attempt_at, o.delivered_at, o.last_status, o.last_error,
       extract(epoch FROM o.delivered_at - o.created_at)::float8 AS delivery_seconds,
       a.latency_ms AS last_latency_ms, a.response_excerpt AS last_response_excerpt
FROM outbox o
LEFT JOIN LATERAL (SELECT latency_ms, response_excerpt FROM outbox_attempts
                   WHERE outbox_id = o.id ORDER BY attempt DESC LIMIT 1) a ON true
ORDER BY o.created_at DESC;

-- Every attempt of every message, newest first.
CREATE OR REPLACE VIEW ops.outbox_attempts AS
SELECT a.outbox_id AS message_id, o.destination, o.event_type, a.attempt, a.attempted_at, a.status,
       a.latency_ms, a.error, a.response_excerpt
FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id
ORDER BY a.attempted_at DESC;

-- Send a message again now, with the same id (a receiver that already has it recognises it). Returns its state.
CREATE OR REPLACE FUNCTION ops.resend(p_message uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_found uuid;
BEGIN
    UPDATE outbox SET state = 'pending', next_attempt_at = now(), delivered_at = NULL
    WHERE id = p_message RETURNING id INTO v_found;
    IF v_found IS NULL THEN
        RAISE EXCEPTION 'there is no outbox message %', p_message USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM pg_notify('outbox', '');
    RETURN 'pending';
END
$$;
