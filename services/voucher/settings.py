"""One Settings class for the whole service; every value comes from the environment.

`DATABASE_URL` is read without the `VOUCHER_` prefix because that is what every platform and
docker image sets; everything else is `VOUCHER_*`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The most items one page of a list holds (the documented maximum of every `limit`).
MAX_PAGE_SIZE = 200

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./var/voucher.db"
#: Generous on purpose: a brake on runaway clients, not a quota. Providers' billing systems
#: redeem in bulk, so theirs is above what one process can serve (docs/observability.md).
#: The roles a rate limit is set for.
RateLimitedRole = Literal["operator", "auditor", "enterprise", "provider"]
DEFAULT_RATE_LIMITS: dict[RateLimitedRole, str] = {
    "operator": "6000/minute",
    "auditor": "3000/minute",
    "enterprise": "3000/minute",
    "provider": "120000/minute",
}


def normalise_database_url(url: str) -> str:
    """Map the URLs people actually write to the async drivers the service uses."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def sync_database_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic, CLI checks)."""
    url = normalise_database_url(url)
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


def _listed(value: object) -> object:
    """A list setting written as a JSON list or comma-separated (blank parts dropped)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    #: hide_input_in_errors: a refused DATABASE_URL must not print its password into start-up logs.
    model_config = SettingsConfigDict(
        env_prefix="VOUCHER_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        default=DEFAULT_SQLITE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "VOUCHER_DATABASE_URL"),
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_echo: bool = False
    #: Idempotency records are kept at least this long (the settlement window).
    idempotency_retention_days: int = Field(default=90, ge=1, le=3650)
    page_limit_default: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)
    #: A list's `limit` above this is refused (422); the API documents MAX_PAGE_SIZE.
    page_limit_max: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    log_level: str = "INFO"
    #: Language of error titles/details (and other bilingual text) when a request's
    #: Accept-Language states no usable preference: "en" or "zh-CN" (the demo and compose use zh-CN).
    default_language: Literal["en", "zh-CN"] = "en"

    @field_validator("default_language", mode="before")
    @classmethod
    def _language_tag(cls, value: object) -> object:
        """Tags are case-insensitive: accept zh-cn, zh_CN, zh, EN."""
        text = str(value).strip().replace("_", "-").lower()
        return {"zh": "zh-CN", "zh-cn": "zh-CN", "zh-hans": "zh-CN", "en": "en"}.get(text, value)

    docs_enabled: bool = True
    #: Timezone in which programme periods (caps, settlement periods) are counted.
    default_timezone: str = "Asia/Shanghai"
    #: Ed25519 private key (32-byte seed, base64) that signs audit checkpoints. Development
    #: and tests fall back to a published, insecure seed; production refuses to start without one.
    audit_signing_key: SecretStr | None = None
    #: Public halves (raw 32-byte Ed25519 keys, base64) of keys that signed checkpoints before
    #: the current one: a JSON list or a comma-separated list. Verification checks a stored
    #: checkpoint with the key it names; without these, every checkpoint signed before a change
    #: of key failed verification for good.
    audit_retired_public_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: AES-256 key (32 bytes, base64) that seals the secrets the service must read back: webhook
    #: signing secrets, and the stored answers that show them (services/voucher/secretbox.py).
    #: Development and tests fall back to a published key; production refuses to start without one.
    secrets_key: SecretStr | None = None
    #: Keys that sealed values before the current one (a JSON or comma-separated list): they
    #: still open them until `voucher secrets reseal` has sealed everything under the new key.
    secrets_retired_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: Writing audit events can be switched off only to measure what they cost (`make bench`);
    #: production refuses it.
    audit_events_enabled: bool = True
    #: Largest request body, in bytes (a declared or streamed body over it is 413 before it is
    #: read); uploads (usage reconciliation) may be up to `max_upload_bytes`.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    max_upload_bytes: int = Field(default=16_777_216, ge=1024, le=1_073_741_824)
    #: A bearer token `GET /metrics` requires when set (Prometheus: `authorization: {credentials: …}`).
    #: Unset: public in development and tests, not served (404) in production.
    metrics_token: SecretStr | None = None
    #: Observability and protection (docs/observability.md). Logs are JSON lines unless "text".
    log_format: Literal["json", "text"] = "json"
    #: Requests per principal per fixed window, by role, in the `limits` notation ("600/minute").
    #: Counted where `rate_limit_storage` says: "memory://" counts in each process (with N
    #: workers a principal may get up to N times the limit); "redis://host:6379/0" shares the
    #: counts between every process (docs/security.md).
    rate_limit_enabled: bool = True
    rate_limit_storage: str = Field(default="memory://", pattern=r"^(memory://|rediss?://\S+)$")
    #: Requests with an unknown API key allowed per client address per window; past it, 429
    #: until the window resets (http/throttle.py). Empty: no throttle.
    auth_failure_limit: str | None = "30/minute"
    #: Live (unrevoked, unexpired) keys one principal may hold at once.
    max_live_keys_per_principal: int = Field(default=5, ge=1, le=100)
    #: Webhook endpoints (not deleted) one enterprise or provider may keep: each event of its
    #: own is written once per endpoint by the publisher, which publishes for everyone.
    max_webhook_endpoints_per_owner: int = Field(default=16, ge=1, le=1000)
    rate_limits: dict[RateLimitedRole, str] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS)
    )

    @field_validator("auth_failure_limit")
    @classmethod
    def _auth_failure_limit(cls, value: str | None) -> str | None:
        from limits import parse

        if not value:
            return None
        try:
            parsed = parse(value)
        except ValueError as exc:
            raise ValueError(f"VOUCHER_AUTH_FAILURE_LIMIT is not like '30/minute': {value!r}") from exc
        if parsed.amount < 1 or parsed.multiples < 1:
            raise ValueError(f"VOUCHER_AUTH_FAILURE_LIMIT must allow at least 1 failure per window: {value!r}")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: dict[RateLimitedRole, str]) -> dict[RateLimitedRole, str]:
        """Roles left out keep their default; a limit that does not parse fails at start-up."""
        from limits import parse

        for role, limit in value.items():
            try:
                parsed = parse(limit)
            except ValueError as exc:
                raise ValueError(f"rate limit for {role} is not like '600/minute': {limit!r}") from exc
            # "0/minute" would answer every request of the role 429 for good (a review): a role is
            # shut out by revoking its keys, not by a limit.
            if parsed.amount < 1 or parsed.multiples < 1:
                raise ValueError(f"rate limit for {role} must allow at least 1 request per window: {limit!r}")
        return {**DEFAULT_RATE_LIMITS, **value}

    #: Events and webhooks (docs/decisions.md, "Events and webhooks"). Deliveries go only to
    #: public addresses, unless the destination lies in one of these networks (CIDR), e.g.
    #: ["127.0.0.0/8"] for a receiver on the same machine; plain http is allowed only there.
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Attempts before a delivery is given up (a manual redelivery starts a new round).
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    #: Retry delays grow from this, doubling per attempt, up to the cap, with ±20 % jitter.
    webhook_retry_base_seconds: int = Field(default=30, ge=1, le=86400)
    webhook_retry_cap_seconds: int = Field(default=6 * 3600, ge=1, le=7 * 86400)
    webhook_batch_size: int = Field(default=100, ge=1, le=10000)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    #: `voucher.expiring` is announced this many days before a voucher expires.
    voucher_expiring_days: int = Field(default=7, ge=1, le=365)
    #: Seconds an API-key lookup is reused by a process (0: read the key on every request).
    #: Revocation and rotation evict at once in every process on PostgreSQL (NOTIFY); on SQLite,
    #: at once in the process that made them and within this many seconds in any other.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    #: Seconds between the worker's rounds of jobs.
    worker_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Run the worker inside each API process (`make run` does: one process to start). With
    #: several API processes on PostgreSQL that is safe too; a separate `voucher worker` scales better.
    worker_in_process: bool = False
    #: Sandbox mode (docs/sandbox.md): one clock for every time-dependent rule, read and moved
    #: forward by the operator over `/v1/sandbox/clock`, shown on every response
    #: (`Voucher-Sandbox-Clock`) and in `GET /v1/me`. `make run` turns it on; production refuses it.
    sandbox: bool = False
    #: The web console under /console/ (docs/decisions.md, "Console"). Its session cookie holds
    #: the signed-in API key encrypted and authenticated with a key derived from this secret
    #: (at least 32 characters). Unset: development and tests use a random secret made at start
    #: (sessions end when the process restarts, and are not shared between processes); production
    #: does not serve the console at all.
    console_secret: SecretStr | None = None
    #: A console session ends this many hours after sign-in, whatever happens in between.
    console_session_hours: float = Field(default=8.0, gt=0, le=24)

    @field_validator("console_secret", mode="before")
    @classmethod
    def _console_secret(cls, value: object) -> object:
        """Empty means unset; a set secret is long enough not to be guessed."""
        if isinstance(value, str) and not value.strip():
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text.strip()) < 32:
            raise ValueError("VOUCHER_CONSOLE_SECRET must be at least 32 characters")
        return text.strip() if isinstance(text, str) else value  # a secret file's newline is not the secret

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _listed_networks(cls, value: object) -> object:
        """A JSON list or comma-separated, as the other list settings (`10.0.0.0/8` alone had been
        refused as JSON it could not read; an independent review)."""
        return _listed(value)

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network in CIDR notation: {network!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        url = normalise_database_url(value)
        if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+psycopg://")):
            raise ValueError(
                "DATABASE_URL must be a sqlite:// or postgresql:// URL "
                f"(got a URL starting with {value.split(':', 1)[0]!r})"
            )
        return url

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:  # fail at start-up, not at the first request
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:  # NotFound is a KeyError, not ValueError
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("audit_retired_public_keys", mode="before")
    @classmethod
    def _listed_keys(cls, value: object) -> object:
        return _listed(value)

    @field_validator("secrets_key", mode="before")
    @classmethod
    def _secrets_key(cls, value: object) -> object:
        """Empty means unset; a set key is 32 bytes of base64."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.strip():
            return None
        if isinstance(text, str):
            from services.voucher.secretbox import decode_key

            decode_key(text, "VOUCHER_SECRETS_KEY")
            return text.strip()
        return value

    @field_validator("secrets_retired_keys", mode="before")
    @classmethod
    def _retired_secrets_keys(cls, value: object) -> object:
        from services.voucher.secretbox import decode_key

        value = _listed(value)
        if isinstance(value, list):
            for key in value:
                decode_key(key.get_secret_value() if isinstance(key, SecretStr) else str(key),
                           "VOUCHER_SECRETS_RETIRED_KEYS")
        return value

    @field_validator("audit_retired_public_keys")
    @classmethod
    def _ed25519_public_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS must list base64 keys") from exc
            if len(raw) != 32:
                raise ValueError("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS must list raw 32-byte Ed25519 public keys")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        """A level `logging` knows, in any case: an unknown one had passed here and stopped the
        worker (and the server, after it said it was serving) with logging's own error."""
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping() or level == "NOTSET":
            raise ValueError("VOUCHER_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("audit_signing_key")
    @classmethod
    def _ed25519_seed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            seed = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("VOUCHER_AUDIT_SIGNING_KEY must be base64") from exc
        if len(seed) != 32:
            raise ValueError("VOUCHER_AUDIT_SIGNING_KEY must be a 32-byte Ed25519 seed, base64-encoded")
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _metrics_token(cls, value: object) -> object:
        """Empty means unset (docker-compose passes `${VOUCHER_METRICS_TOKEN:-}`); a set token
        is long enough not to be guessed."""
        if isinstance(value, str) and not value.strip():
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text.strip()) < 16:
            raise ValueError("VOUCHER_METRICS_TOKEN must be at least 16 characters")
        # Stored as it will be compared: a token read from a secret file keeps its newline, which
        # no scraper's header carries, and every scrape had been refused (an independent review).
        return text.strip() if isinstance(text, str) else value

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.page_limit_default > self.page_limit_max:
            raise ValueError("VOUCHER_PAGE_LIMIT_DEFAULT must not exceed VOUCHER_PAGE_LIMIT_MAX")
        if self.environment == "production" and self.is_sqlite:
            raise ValueError(
                "production mode needs PostgreSQL: set DATABASE_URL=postgresql://…"
            )
        if self.environment == "production" and self.audit_signing_key is None:
            raise ValueError(
                "production mode needs VOUCHER_AUDIT_SIGNING_KEY (a base64 Ed25519 seed) to sign "
                "audit checkpoints; generate one with `voucher audit keygen`"
            )
        if self.environment == "production":
            from services.voucher.secretbox import DEVELOPMENT_KEY, decode_key

            if self.secrets_key is None:
                raise ValueError(
                    "production mode needs VOUCHER_SECRETS_KEY (32 bytes, base64) to seal webhook signing "
                    "secrets; generate one with `voucher secrets keygen` and keep it with your backups"
                )
            if decode_key(self.secrets_key.get_secret_value(), "VOUCHER_SECRETS_KEY") == DEVELOPMENT_KEY:
                raise ValueError("VOUCHER_SECRETS_KEY is the published development key, with which anyone can open "
                                 "the sealed secrets; production refuses it (`voucher secrets keygen`)")
        if self.environment == "production":
            # Checked here, as the settings are read, not when the first checkpoint is signed: a
            # worker had started with the published seed and failed every round, and `serve`
            # had said where it listened before it failed (an independent review, December 2026).
            # Anyone can sign with the published seed: as the key, its checkpoints were served as
            # signed by a key of their own; listed as retired, it vouched for a rewritten chain
            # re-signed with it (earlier reviews).
            from services.voucher.audit.signing import DEVELOPMENT_PUBLIC_KEY, DEVELOPMENT_SEED

            if self.audit_signing_key is not None and base64.b64decode(self.audit_signing_key.get_secret_value()) == DEVELOPMENT_SEED:
                raise ValueError("VOUCHER_AUDIT_SIGNING_KEY is the published development seed, with which anyone can "
                                 "sign a checkpoint; production refuses it (generate one with `voucher audit keygen`)")
            if DEVELOPMENT_PUBLIC_KEY in {base64.b64decode(key) for key in self.audit_retired_public_keys}:
                raise ValueError("VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS lists the published development key, whose "
                                 "checkpoints prove nothing; production refuses it")
        if self.environment == "production" and not self.audit_events_enabled:
            raise ValueError("VOUCHER_AUDIT_EVENTS_ENABLED=false is for benchmarks, never production")
        if self.environment == "production" and self.sandbox:
            raise ValueError("VOUCHER_SANDBOX=true moves the service's clock: never in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
