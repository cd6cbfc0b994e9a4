"""Events: the transactional outbox subscribers read (`GET /v1/events`) or are sent (webhooks)."""
