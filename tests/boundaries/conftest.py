"""The boundary tests run in the redemption tests' world (the same programme terms)."""

from tests.redemption.test_routes import world  # noqa: F401 - a fixture, used by name

__all__ = ["world"]
