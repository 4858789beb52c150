"""The Redis transport of QUEUE_BACKEND=dramatiq: Dramatiq's broker used from our event loop (`redis_queue`), and
the sends that keep one message out per task that needs one (`dispatcher`). Which backend a process uses, and
what runs the messages, is wired in `service.wiring`."""
