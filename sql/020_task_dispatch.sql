-- QUEUE_BACKEND=dramatiq: whether a task has a message out on Redis. The task row stays the truth (stage,
-- lease, run_after, attempts); these two columns only keep the dispatcher from sending a task twice and tell it
-- when a message was lost. `dispatched_at` is set when a message is sent and cleared when the task is claimed,
-- so a task that is runnable, unleased and has no `dispatched_at` needs a message: a new job whose enqueue
-- failed, a task handed back at shutdown or released for a retry, a lease that ran out under a dead worker.
-- `dispatched_to` is the Redis server's run_id at sending time: a restarted (or failed-over) Redis has
-- another one, and its messages may be gone.

ALTER TABLE language_tasks
    ADD COLUMN dispatched_at timestamptz,
    ADD COLUMN dispatched_to text;
