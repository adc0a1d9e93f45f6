"""Configuration from the environment (SPEC §6); CLI flags override.

One settings class for every command, so a variable means the same thing to
the producer, the worker, replay and the tests. Secrets are `SecretStr` so they
never appear in a repr or a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """Bad or missing configuration: a one-line message for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"

    video_events_token: SecretStr | None = None
    cf_webhook_secret: SecretStr | None = None
    fastpix_webhook_secret: SecretStr | None = None
    gjirafa_webhook_token: SecretStr | None = None

    window_grace_ms: int = Field(5000, gt=0)
    reconnect_window_s: int = Field(60, gt=0)
    tick_interval_ms: int = Field(1000, gt=0)

    events_topic: str = "video.live-input-events"
    windows_topic: str = "video.disconnect-windows"
    late_topic: str = "video.live-input-events.late"
    dlq_topic: str = "video.live-input-events.dlq"
    topic_partitions: int = Field(6, gt=0)
    topic_replication: int = Field(1, gt=0)

    max_body_bytes: int = Field(65536, gt=0)
    # librdkafka's message.timeout.ms is an int32: a larger value would wrap.
    publish_timeout_ms: int = Field(5000, gt=0, le=2_147_483_647)

    # The worker's Faust app id: its consumer group and the prefix of its changelog
    # topic. Workers with the same id share the partitions; a new id starts over.
    processor_app_id: str = Field("livewindows-processor", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    # How long a worker that died without leaving the group holds its partitions.
    processor_session_timeout_ms: int = Field(10_000, ge=1000)
    # faust: the Faust worker (SPEC); kafka: the same core on a confluent-kafka loop
    # with one Kafka transaction per batch (exactly-once, several times faster).
    processor_engine: Literal["faust", "kafka"] = "faust"
    # Where a worker serves Prometheus metrics (GET /metrics); unset: it does not.
    processor_metrics_port: int | None = Field(None, ge=1, le=65535)
    # Where `livewindows billing` serves Prometheus metrics; unset: it does not.
    billing_metrics_port: int | None = Field(None, ge=1, le=65535)
    # The IANA zone of billing periods (SPEC §7): the calendar days and months the
    # billing consumer keeps rollups for, and `billing report`'s default zone.
    billing_timezone: str = "UTC"

    # Lines on stderr: text for people, json (one object per line) for a log
    # pipeline; the JSON keys are listed in plumbing/logs.py.
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("events_topic", "windows_topic", "late_topic", "dlq_topic")
    @classmethod
    def _topic_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name) or name in (".", ".."):
            raise ValueError(f"not a valid Kafka topic name: {name!r}")
        return name

    @field_validator("billing_timezone")
    @classmethod
    def _iana_zone(cls, name: str) -> str:
        # livewindows.billing.periods.load_zone, which this layer cannot import.
        problem = f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)"
        if name in ("localtime", "posixrules"):  # files of the database, not zones
            raise ValueError(problem)
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(problem) from None
        return name

    @property
    def topics(self) -> tuple[str, str, str, str]:
        return (self.events_topic, self.windows_topic, self.late_topic, self.dlq_topic)


def secret_values(secret: SecretStr | None) -> tuple[str, ...]:
    """The comma-separated values of a rotating secret, blanks dropped."""
    if secret is None:
        return ()
    return tuple(part.strip() for part in secret.get_secret_value().split(",") if part.strip())


def load_settings(env_file: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment (and `env_file`) with CLI overrides.

    Errors become `ConfigError` naming the variable, never a traceback.
    """
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigError(f"--env-file {env_file}: no such file")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(_env_file=env_file, **given)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
