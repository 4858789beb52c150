"""Integrations (issue 23): signed webhooks and Stripe meter events from the outbox, and the SSRF guard."""
