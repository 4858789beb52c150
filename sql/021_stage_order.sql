-- The order of a task's stages, kept in one table instead of spelled out in each view: `service/domain.py`
-- (STAGE_ORDER) is the source, tests/db/test_schema_matches_domain.py checks this table against it. The ops
-- views read it: `ops.queue_depth` lists the stages that are not terminal, `ops.stage_duration_stats` orders
-- its rows by it.

CREATE TABLE stage_order (
    stage text PRIMARY KEY,
    position smallint NOT NULL UNIQUE,
    terminal boolean NOT NULL
);

INSERT INTO stage_order (stage, position, terminal) VALUES
    ('queued', 0, false),
    ('stt', 1, false),
    ('translating', 2, false),
    ('dubbing', 3, false),
    ('mixing', 4, false),
    ('exporting', 5, false),
    ('complete', 6, true),
    ('failed', 7, true),
    ('cancelled', 8, true);

CREATE OR REPLACE VIEW ops.queue_depth AS
WITH live AS (
    SELECT stage,
           count(*) AS tasks,
           count(*) FILTER (WHERE run_after <= now()
                              AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS claimable,
           count(*) FILTER (WHERE lease_expires_at >= now()) AS running,
           count(*) FILTER (WHERE lease_owner IS NULL AND run_after > now()) AS waiting_to_retry,
           min(greatest(run_after, coalesce(lease_expires_at, run_after)))
               FILTER (WHERE run_after <= now()
                         AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS oldest_claimable_since
    FROM language_tasks
    -- As the partial index on unfinished tasks (001) spells it, so that index answers.
    WHERE stage NOT IN ('complete', 'failed', 'cancelled')
    GROUP BY stage
)
SELECT s.stage,
       coalesce(l.tasks, 0) AS tasks,
       coalesce(l.claimable, 0) AS claimable,
       coalesce(l.running, 0) AS running,
       coalesce(l.waiting_to_retry, 0) AS waiting_to_retry,
       l.oldest_claimable_since,
       extract(epoch FROM now() - l.oldest_claimable_since)::float8 AS oldest_claimable_age_seconds
FROM stage_order s
LEFT JOIN live l ON l.stage = s.stage
WHERE NOT s.terminal
ORDER BY s.position;

CREATE OR REPLACE FUNCTION ops.stage_duration_stats(p_window interval)
RETURNS TABLE (stage text, engine text, runs bigint, p50_seconds float8, p95_seconds float8,
               max_seconds float8, mean_seconds float8, total_seconds float8, audio_seconds float8,
               x_realtime float8)
LANGUAGE sql STABLE AS $$
    SELECT e.data ->> 'finished_stage',
           coalesce(e.data ->> 'engine', 'unknown'),
           count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY (e.data ->> 'stage_seconds')::float8),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY (e.data ->> 'stage_seconds')::float8),
           max((e.data ->> 'stage_seconds')::float8),
           avg((e.data ->> 'stage_seconds')::float8),
           sum((e.data ->> 'stage_seconds')::float8),
           sum((e.data -> 'figures' ->> 'audio_seconds')::float8),
           sum((e.data -> 'figures' ->> 'audio_seconds')::float8)
               / nullif(sum((e.data ->> 'stage_seconds')::float8), 0)
    FROM task_events e
    LEFT JOIN stage_order o ON o.stage = e.data ->> 'finished_stage'
    WHERE e.data ? 'stage_seconds' AND e.created_at > now() - p_window
    GROUP BY 1, 2, o.position
    ORDER BY o.position, 2
$$;
