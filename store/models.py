"""SQLAlchemy models: the store is the single source of truth (no faust tables).

Tables: orders, order_lines, invoices, claims, holds, channel_ops (outbound ledger, unique
idempotency key), channel_changes (inbound log, unique dedupe key), ingest_cursors,
status_history, processed_events (per-event dedupe of commands without external effects) and
failed_events (the durable record of every message sent to a dead-letter topic).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = Numeric(14, 2)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, Decimal: Money, dict[str, Any]: JSON}


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("channel", "account", "channel_order_id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64), default="default")
    channel_order_id: Mapped[str | None] = mapped_column(String(128))
    payment_method: Mapped[str] = mapped_column(String(32))
    paid: Mapped[bool] = mapped_column(Boolean, default=True)
    payment_deadline: Mapped[datetime | None]
    buyer_name: Mapped[str] = mapped_column(String(100), default="")
    address: Mapped[dict[str, Any]] = mapped_column(JSON)
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    total_paid: Mapped[Decimal] = mapped_column(default=Decimal(0))
    refunded: Mapped[Decimal] = mapped_column(default=Decimal(0))
    mileage_used: Mapped[Decimal] = mapped_column(default=Decimal(0))
    earning_base: Mapped[Decimal | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", lazy="selectin"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (Index("ix_order_lines_channel_unit", "channel_unit_id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str] = mapped_column(String(16), default="parcel")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(default=Decimal(0))
    amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    status: Mapped[str] = mapped_column(String(24), index=True)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel_unit_id: Mapped[str | None] = mapped_column(String(128))
    split_parent_id: Mapped[str | None] = mapped_column(String(128))
    channel_notified: Mapped[list[str]] = mapped_column(JSON, default=list)
    shipped_quantity: Mapped[int | None]
    collapse: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # R15 record
    invoice_rejection: Mapped[str | None] = mapped_column(Text)  # R18: marketplace's reason
    delivered_at: Mapped[datetime | None]

    order: Mapped[Order] = relationship(back_populates="lines")


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_number", "carrier", "tracking_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("order_lines.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(16))
    tracking_number: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16), default="parcel")
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    validity_error: Mapped[str | None] = mapped_column(Text)
    tracking_state: Mapped[str] = mapped_column(String(24), default="NONE")
    last_scan_at: Mapped[datetime | None]
    waybill_id: Mapped[str | None] = mapped_column(String(64))
    reprint_required: Mapped[bool] = mapped_column(Boolean, default=False)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class Claim(Base):
    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("order_lines.id"), index=True)
    channel_claim_id: Mapped[str | None] = mapped_column(String(128))
    claim_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    fee: Mapped[Decimal | None]
    fee_payment: Mapped[str | None] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    raised_by: Mapped[str] = mapped_column(String(300))
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")


class ChannelOp(Base):
    """The outbound ledger: one row per intended external call (S1)."""

    __tablename__ = "channel_ops"
    __table_args__ = (
        Index("ix_channel_ops_state", "state", "next_attempt_at"),
        Index("ix_channel_ops_result_emitted", "result_emitted", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    order_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    unit_id: Mapped[str | None] = mapped_column(String(128), index=True)  # dispatch: the unit
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source_event_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    next_attempt_at: Mapped[datetime | None]
    #: the final result (succeeded / failed) was acknowledged by the broker (results outbox)
    result_emitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ChannelChangeRow(Base):
    """Inbound change log: one row per marketplace fact (dedupe key unique, R17)."""

    __tablename__ = "channel_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    channel_order_id: Mapped[str] = mapped_column(String(128), index=True)
    order_id: Mapped[str | None] = mapped_column(String(128))
    changed_at: Mapped[datetime]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class IngestCursor(Base):
    __tablename__ = "ingest_cursors"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StatusHistory(Base):
    __tablename__ = "status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(128), index=True)
    line_id: Mapped[str | None] = mapped_column(String(128))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(300))
    note: Mapped[str] = mapped_column(Text, default="")


class ProcessedEvent(Base):
    """Events whose effect is complete: a redelivery is answered as a duplicate (S1)."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class FailedEvent(Base):
    """Durable record of a message refused by an agent (written before the message is acked)."""

    __tablename__ = "failed_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    partition: Mapped[int | None]
    offset: Mapped[int | None]
    reason: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    dead_lettered: Mapped[bool] = mapped_column(Boolean, default=False)
