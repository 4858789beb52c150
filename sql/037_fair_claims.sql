-- Fair shares (issue 23): claims alternate between the users who have runnable tasks, and no user runs more
-- than MAX_TASKS_PER_USER tasks at once. The claim (service/db/fair_claim.py) needs each task's owner on the
-- task row itself, and two partial indexes that make it cost O(users × log n), not a scan of the queue:
--   * the live tasks by owner and due time: one index probe per user to find the users with work (a loose
--     index scan) and that user's oldest runnable tasks;
--   * the leased tasks by owner: how many each user runs right now.

ALTER TABLE language_tasks ADD COLUMN IF NOT EXISTS owner_id text;

UPDATE language_tasks t SET owner_id = j.owner_id FROM jobs j WHERE j.id = t.job_id AND t.owner_id IS NULL;

-- Every insert names its owner, whichever code inserts (the job's owner, copied once: it never changes).
CREATE OR REPLACE FUNCTION language_task_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_id IS NULL THEN
        SELECT owner_id INTO NEW.owner_id FROM jobs WHERE id = NEW.job_id;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS language_tasks_owner ON language_tasks;
CREATE TRIGGER language_tasks_owner BEFORE INSERT ON language_tasks
    FOR EACH ROW EXECUTE FUNCTION language_task_owner();

ALTER TABLE language_tasks ALTER COLUMN owner_id SET NOT NULL;

CREATE INDEX IF NOT EXISTS language_tasks_owner_live ON language_tasks (owner_id, run_after)
    WHERE stage NOT IN ('complete', 'failed', 'cancelled');
CREATE INDEX IF NOT EXISTS language_tasks_owner_leased ON language_tasks (owner_id, lease_expires_at)
    WHERE lease_owner IS NOT NULL;

-- Operators: who is running and waiting, per user (the fair-share view of the queue).
CREATE OR REPLACE VIEW ops.queue_by_user AS
SELECT owner_id,
       count(*) FILTER (WHERE lease_expires_at >= now()) AS running,
       count(*) FILTER (WHERE run_after <= now() AND (lease_expires_at IS NULL OR lease_expires_at < now()))
           AS claimable,
       min(run_after) FILTER (WHERE run_after <= now() AND (lease_expires_at IS NULL OR lease_expires_at < now()))
           AS oldest_claimable_since
FROM language_tasks
WHERE stage NOT IN ('complete', 'failed', 'cancelled')
GROUP BY owner_id
ORDER BY claimable DESC, owner_id;
