"""Webhooks: endpoints subscribers register, and signed deliveries of their events."""
