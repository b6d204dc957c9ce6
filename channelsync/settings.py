"""All configuration, read from the environment (one pydantic-settings class).

Every field maps to an upper-case environment variable of the same name
(``database_url`` ← ``DATABASE_URL``). Secrets are ``SecretStr`` so that they
never show up in ``repr()``, logs or exception text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./channelsync.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # --- Kafka / Faust -------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]; unset = start the embedded broker on loopback",
    )
    app_id: str = "channelsync"
    topic_prefix: str = Field(
        default="", description="prepended to every topic name (shared clusters, test isolation)"
    )
    topic_partitions: int = Field(default=4, ge=1)
    topic_replicas: int = Field(default=1, ge=1)
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    broker_session_timeout: float = 10.0
    broker_rebalance_timeout: float = 10.0
    broker_heartbeat_interval: float = 1.0
    broker_commit_interval: float = 1.0
    consumer_group_instance_id: str | None = None
    consumer_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=30_000,
        description="longest a fetch waits for data (faust hard-codes 1500 ms; the embedded "
        "broker answers only when the wait ends, so this is latency per hop)",
    )

    dispatcher_mode: Literal["inline", "off"] = Field(
        default="inline",
        description="inline: the worker executes the ledger itself; off: it does not, and "
        "`channelsync dispatcher` processes do (PostgreSQL only)",
    )
    dispatcher_poll_seconds: float = Field(
        default=0.05,
        gt=0,
        le=60,
        description="a separate dispatcher's idle poll of the ledger (no in-process nudge)",
    )

    # --- store ---------------------------------------------------------------------------------
    database_url: str = DEFAULT_DATABASE_URL
    database_schema: str | None = Field(
        default=None, description="PostgreSQL schema to use (tests give each run its own)"
    )

    # --- connectors ----------------------------------------------------------------------------
    http_timeout_seconds: float = 10.0
    retry_max_attempts: int = 5
    retry_backoff_base_seconds: float = 0.5
    retry_backoff_max_seconds: float = 30.0

    naverpay_enabled: bool = True
    naverpay_api_url: str = "http://127.0.0.1:18081"
    naverpay_client_id: str = "sandbox-client"
    naverpay_client_secret: SecretStr = SecretStr("$2a$04$sandboxsandboxsandboxu")
    naverpay_account_id: str = "default"
    naverpay_rate_per_second: float = 2.0

    qoo10_enabled: bool = True
    qoo10_api_url: str = "http://127.0.0.1:18082"
    qoo10_api_key: SecretStr = SecretStr("sandbox-api-key")
    qoo10_user_id: str = "sandbox-seller"
    qoo10_password: SecretStr = SecretStr("sandbox-password")
    qoo10_account_id: str = "default"
    qoo10_rate_per_second: float = 5.0

    goodsflow_enabled: bool = True
    goodsflow_api_url: str = "http://127.0.0.1:18083"
    goodsflow_api_key: SecretStr = SecretStr("sandbox-goodsflow-key")
    goodsflow_rate_per_second: float = 10.0

    # --- daemons -------------------------------------------------------------------------------
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    overlap_window_seconds: float = Field(default=600.0, ge=0)
    tracking_poll_interval_seconds: float = Field(default=60.0, gt=0)
    stale_invoice_after_seconds: float = Field(default=3 * 24 * 3600.0, gt=0)
    metrics_port: int = Field(default=9108, description="0 disables the metrics endpoint")
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
