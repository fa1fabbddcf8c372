"""Typed SQLAlchemy 2 models: users, campaigns and their rendered variants."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .read_only import RoutingSession


class Base(DeclarativeBase):
    # A naming convention keeps constraint names, and so migrations, stable across databases.
    metadata = sa.MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


# GET and HEAD requests read on autocommit, read-only connections (portal/read_only.py).
db = SQLAlchemy(model_class=Base, session_options={"class_": RoutingSession})

# Microsecond timestamps on MySQL/MariaDB too: leases and "newest first" need them.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

STATUSES = ("pending", "processing", "completed", "failed")
SOURCE_TYPES = ("upload", "local", "dropbox", "ai_generated")
RATIOS = ("1:1", "9:16", "16:9")


def utcnow() -> datetime:
    """Naive UTC, the same on SQLite and MariaDB."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return uuid.uuid4().hex


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Campaign(db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (sa.Index("ix_campaigns_owner_created", "owner_id", "created_at"),
                      sa.Index("ix_campaigns_status_created", "status", "created_at"))

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # The brief.
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text)
    target_market: Mapped[str] = mapped_column(sa.String(200))
    campaign_message: Mapped[str] = mapped_column(sa.String(500))
    products_description: Mapped[str] = mapped_column(sa.Text)
    generate_by_ai: Mapped[bool] = mapped_column(default=False)
    # Where the source image comes from.
    source_type: Mapped[str] = mapped_column(sa.String(16))
    source_path: Mapped[str | None] = mapped_column(sa.String(1024))
    ai_prompt: Mapped[str | None] = mapped_column(sa.Text)
    source_filename: Mapped[str | None] = mapped_column(sa.String(255))
    source_width: Mapped[int | None]
    source_height: Mapped[int | None]
    focal_x: Mapped[float | None]
    focal_y: Mapped[float | None]
    # A person's own crop per ratio, {"1:1": {"x":..,"y":..,"w":..,"h":..}}; wins over focal and auto.
    crop_overrides: Mapped[dict | None] = mapped_column(sa.JSON)
    # Ratios the next run re-renders (after one crop was edited); None means all three.
    rerender_ratios: Mapped[list | None] = mapped_column(sa.JSON)
    # Generation options sent to Firefly with ai_prompt, and whether the source is a stand-in.
    ai_options: Mapped[dict | None] = mapped_column(sa.JSON)
    placeholder: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Lifecycle: pending -> processing -> completed | failed; see claim() in worker/leases.py.
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    stage: Mapped[str | None] = mapped_column(sa.String(32))
    progress: Mapped[int] = mapped_column(default=0)
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    attempt: Mapped[int] = mapped_column(default=0)  # fencing token: only the current attempt may write
    task_id: Mapped[str | None] = mapped_column(sa.String(64))
    timings: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(Timestamp)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    owner: Mapped[User] = relationship()
    variants: Mapped[list[Variant]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Variant.position")

    @property
    def is_done(self) -> bool:
        return self.status in ("completed", "failed")

    def restart(self) -> None:
        """Back to pending for a new run (retry): the attempt counter starts again."""
        self.status, self.stage, self.progress = "pending", None, 0
        self.error_message, self.attempt, self.task_id = None, 0, None
        self.enqueued_at = self.heartbeat_at = self.started_at = self.finished_at = None

    def crop_override(self, ratio: str) -> dict | None:
        return (self.crop_overrides or {}).get(ratio)


class Variant(db.Model):
    __tablename__ = "variants"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "ratio", name="uq_variants_campaign_ratio"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[str] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    ratio: Mapped[str] = mapped_column(sa.String(8))
    position: Mapped[int]  # order of RATIOS, for stable listing
    width: Mapped[int]
    height: Mapped[int]
    bytes: Mapped[int]
    crop_x: Mapped[int]
    crop_y: Mapped[int]
    crop_w: Mapped[int]
    crop_h: Mapped[int]
    crop_reason: Mapped[str] = mapped_column(sa.String(16))  # auto | focal | manual
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="variants")

    @property
    def slug(self) -> str:
        """The ratio as it appears in URLs and file names: 1:1 -> 1x1."""
        return self.ratio.replace(":", "x")
