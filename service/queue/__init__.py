"""Scale-out: which part of the service a process runs (`roles`), and how work reaches the processes that
run stages (`backends`): PostgreSQL alone (the in-process supervisor claims with SKIP LOCKED), or Dramatiq
messages on Redis (`redis_queue`, `dispatcher`, `service.supervisor.dramatiq_worker`)."""
