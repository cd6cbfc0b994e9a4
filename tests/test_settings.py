"""Settings come from the environment and refuse bad configuration at start-up."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from services.voucher.settings import (
    DEFAULT_SQLITE_URL,
    Settings,
    normalise_database_url,
    sync_database_url,
)

PG = "voucher:secret@db.internal:5432/voucher"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DATABASE_URL or VOUCHER_* from the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("VOUCHER_") or name.upper() == "DATABASE_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def _error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.value.errors()]


def test_defaults_are_an_embedded_sqlite_development_setup() -> None:
    settings = Settings()
    assert settings.environment == "development"
    assert settings.database_url == DEFAULT_SQLITE_URL
    assert settings.is_sqlite
    assert settings.default_timezone == "Asia/Shanghai"
    assert settings.page_limit_default <= settings.page_limit_max


def test_unprefixed_database_url_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://{PG}")
    settings = Settings()
    assert settings.database_url == f"postgresql+psycopg://{PG}"
    assert not settings.is_sqlite


def test_prefixed_database_url_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_DATABASE_URL", f"postgresql://{PG}")
    assert Settings().database_url == f"postgresql+psycopg://{PG}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (f"postgres://{PG}", f"postgresql+psycopg://{PG}"),  # Heroku-style
        (f"postgresql://{PG}", f"postgresql+psycopg://{PG}"),
        (f"postgresql+psycopg://{PG}", f"postgresql+psycopg://{PG}"),
        (f"  postgres://{PG}\n", f"postgresql+psycopg://{PG}"),
        ("sqlite:///./var/voucher.db", "sqlite+aiosqlite:///./var/voucher.db"),
        ("sqlite:////srv/voucher/voucher.db", "sqlite+aiosqlite:////srv/voucher/voucher.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_are_normalised_to_the_async_drivers(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    assert normalise_database_url(given) == expected
    monkeypatch.setenv("DATABASE_URL", given)
    assert Settings().database_url == expected


def test_sync_url_for_alembic() -> None:
    assert sync_database_url("sqlite:///./var/voucher.db") == "sqlite:///./var/voucher.db"
    assert sync_database_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"
    assert sync_database_url(f"postgres://{PG}") == f"postgresql+psycopg://{PG}"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@localhost/voucher",
        "mysql+aiomysql://root:hunter2@localhost/voucher",
        "postgresql+asyncpg://u:hunter2@h/db",
        "oracle://u:hunter2@h/db",
        "voucher.db",
    ],
)
def test_unknown_database_scheme_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["DATABASE_URL"]
    assert "sqlite:// or postgresql://" in str(exc.value)
    # The start-up error ends up in logs: it must not print the URL's password.
    assert "hunter2" not in str(exc.value)


def test_production_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="production mode needs PostgreSQL"):
        Settings()  # the default database is SQLite
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./prod.db")
    with pytest.raises(ValidationError, match="production mode needs PostgreSQL"):
        Settings()


SEED = base64.b64encode(bytes(range(32))).decode()
SECRETS_KEY = base64.b64encode(bytes(range(32, 64))).decode()


def test_production_with_postgresql_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgres://{PG}")
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", SECRETS_KEY)
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", SEED)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_production_needs_its_own_checkpoint_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgres://{PG}")
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", SECRETS_KEY)
    with pytest.raises(ValidationError, match="VOUCHER_AUDIT_SIGNING_KEY"):
        Settings()
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", SEED)
    monkeypatch.setenv("VOUCHER_AUDIT_EVENTS_ENABLED", "false")
    with pytest.raises(ValidationError, match="never production"):
        Settings()


@pytest.mark.parametrize("seed", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_signing_key_must_be_a_32_byte_seed(monkeypatch: pytest.MonkeyPatch, seed: str) -> None:
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", seed)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["audit_signing_key"]
    assert seed not in str(exc.value) or not seed  # a secret is never echoed back


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["environment"]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Asia/Beijing", "UTC ", "", "../etc/passwd"])
def test_unknown_default_timezone_is_refused(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("VOUCHER_DEFAULT_TIMEZONE", zone)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["default_timezone"]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/London", "UTC"])
def test_known_timezones_are_accepted(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("VOUCHER_DEFAULT_TIMEZONE", zone)
    assert Settings().default_timezone == zone


def test_page_limit_default_above_max_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_PAGE_LIMIT_DEFAULT", "150")
    monkeypatch.setenv("VOUCHER_PAGE_LIMIT_MAX", "100")
    with pytest.raises(ValidationError, match="PAGE_LIMIT_DEFAULT must not exceed"):
        Settings()
    monkeypatch.setenv("VOUCHER_PAGE_LIMIT_DEFAULT", "100")  # equal is fine
    settings = Settings()
    assert (settings.page_limit_default, settings.page_limit_max) == (100, 100)
    monkeypatch.setenv("VOUCHER_PAGE_LIMIT_MAX", "201")  # above what the API documents
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOUCHER_PAGE_LIMIT_MAX", "0"),
        ("VOUCHER_PAGE_LIMIT_MAX", "1001"),
        ("VOUCHER_DATABASE_POOL_SIZE", "0"),
        ("VOUCHER_IDEMPOTENCY_RETENTION_DAYS", "0"),
        ("VOUCHER_IDEMPOTENCY_RETENTION_DAYS", "many"),
    ],
)
def test_out_of_range_numbers_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == [name.removeprefix("VOUCHER_").lower()]


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.page_limit_max = 5  # type: ignore[misc]


def test_retired_checkpoint_keys_are_a_list_of_32_byte_public_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = SEED, base64.b64encode(bytes(range(32, 64))).decode()
    for written in (f"{one}, {two}", f'["{one}", "{two}"]'):
        monkeypatch.setenv("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS", written)
        assert Settings().audit_retired_public_keys == [one, two]
    for bad in ("not base64!", base64.b64encode(b"short").decode(), "[1", '["x"'):
        monkeypatch.setenv("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS", bad)
        with pytest.raises(ValidationError) as exc:
            Settings()
        assert _error_fields(exc) == ["audit_retired_public_keys"]
    monkeypatch.setenv("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS", "")
    assert Settings().audit_retired_public_keys == []


def test_production_refuses_the_development_key_among_the_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can sign with the published development seed: listed as retired, it vouched for a
    rewritten chain re-signed with it (an independent review)."""
    from services.voucher.audit.signing import DEVELOPMENT_PUBLIC_KEY, Signer

    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgres://{PG}")
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", SECRETS_KEY)
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", SEED)
    monkeypatch.setenv("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS", base64.b64encode(DEVELOPMENT_PUBLIC_KEY).decode())
    with pytest.raises(ValidationError, match="development key"):
        Settings()  # as the settings are read: a worker had started and failed every round
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "development")
    assert Signer.from_settings(Settings()).retired == (DEVELOPMENT_PUBLIC_KEY,)


def test_production_refuses_the_published_development_seed_as_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given as VOUCHER_AUDIT_SIGNING_KEY, the published seed had started production, and its
    checkpoints were served as signed by a key of its own (an independent review)."""
    from services.voucher.audit.signing import DEVELOPMENT_SEED, Signer

    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgres://{PG}")
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", SECRETS_KEY)
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", base64.b64encode(DEVELOPMENT_SEED).decode())
    with pytest.raises(ValidationError, match="published development seed"):
        Settings()  # as the settings are read, before `serve` says where it listens
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "development")
    assert Signer.from_settings(Settings()).is_development
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", SEED)
    assert not Signer.from_settings(Settings()).is_development


def test_an_unknown_log_level_is_refused_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """`LOUD` had passed the settings and stopped the worker with logging's own error."""
    monkeypatch.setenv("VOUCHER_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["log_level"] and "VOUCHER_LOG_LEVEL" in str(exc.value)
    monkeypatch.setenv("VOUCHER_LOG_LEVEL", "warning")
    assert Settings().log_level == "WARNING"


def test_production_needs_a_key_to_seal_webhook_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgres://{PG}")
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", SEED)
    monkeypatch.delenv("VOUCHER_SECRETS_KEY", raising=False)
    with pytest.raises(ValidationError, match="VOUCHER_SECRETS_KEY"):
        Settings()
    from services.voucher.secretbox import DEVELOPMENT_KEY

    monkeypatch.setenv("VOUCHER_SECRETS_KEY", base64.b64encode(DEVELOPMENT_KEY).decode())
    with pytest.raises(ValidationError, match="published development key"):
        Settings()
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "development")
    assert Settings().secrets_key is not None  # development may use it, as it does when unset


@pytest.mark.parametrize("field,value", [
    ("VOUCHER_SECRETS_KEY", "not base64!"), ("VOUCHER_SECRETS_KEY", base64.b64encode(b"short").decode()),
    ("VOUCHER_SECRETS_RETIRED_KEYS", f"{SECRETS_KEY},{base64.b64encode(b'short').decode()}"),
])
def test_a_secrets_key_must_be_32_bytes_of_base64_and_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(field, value)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == [field.removeprefix("VOUCHER_").lower()]
    assert value not in str(exc.value) and SECRETS_KEY not in str(exc.value)


def test_retired_secrets_keys_are_a_list_and_empty_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", "")
    monkeypatch.setenv("VOUCHER_SECRETS_RETIRED_KEYS", "")
    assert Settings().secrets_key is None and Settings().secrets_retired_keys == []
    monkeypatch.setenv("VOUCHER_SECRETS_RETIRED_KEYS", f"{SECRETS_KEY}, {SEED}")
    assert [k.get_secret_value() for k in Settings().secrets_retired_keys] == [SECRETS_KEY, SEED]
    monkeypatch.setenv("VOUCHER_SECRETS_RETIRED_KEYS", f'["{SEED}"]')
    assert [k.get_secret_value() for k in Settings().secrets_retired_keys] == [SEED]
    from pydantic import SecretStr

    assert Settings(secrets_key=SecretStr(" ")).secrets_key is None  # given in code, blank is unset too


def test_webhook_networks_are_a_json_list_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """`10.0.0.0/8` alone had been refused as JSON that could not be read, where every other list
    setting takes commas (an independent review, December 2026)."""
    for written in ("10.0.0.0/8, 127.0.0.0/8", '["10.0.0.0/8", "127.0.0.0/8"]'):
        monkeypatch.setenv("VOUCHER_WEBHOOK_ALLOWED_NETWORKS", written)
        assert Settings().webhook_allowed_networks == ["10.0.0.0/8", "127.0.0.0/8"]
    monkeypatch.setenv("VOUCHER_WEBHOOK_ALLOWED_NETWORKS", "")
    assert Settings().webhook_allowed_networks == []
    monkeypatch.setenv("VOUCHER_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8,intranet")
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert _error_fields(exc) == ["webhook_allowed_networks"]
