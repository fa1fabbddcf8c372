"""The campaign lists, the gallery and the status counts, as each user may see them.

Shared by the JSON API and the HTML pages; a page is counted only when it has to be.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import contains_eager

from .auth import Account
from .models import RATIOS, STATUSES, Campaign, Variant, db
from .schemas import Invalid


@dataclass
class Page:
    items: list[Campaign]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def list_for(user: Account, page: int = 1, per_page: int | None = None,
             status: str | None = None, query: str | None = None) -> Page:
    """Campaigns this user may see, newest first."""
    if status and status not in STATUSES:
        raise Invalid({"status": f"Must be one of: {', '.join(STATUSES)}."})
    config = current_app.config
    per_page = min(max(1, per_page or config["PAGE_SIZE"]), config["MAX_PAGE_SIZE"])
    page = max(1, page)
    select = db.select(Campaign)
    if not user.is_admin:
        select = select.filter_by(owner_id=user.id)
    if status:
        select = select.filter_by(status=status)
    if query:
        like = f"%{query.replace('%', '').replace('_', '')}%"
        select = select.where(Campaign.name.ilike(like) | Campaign.description.ilike(like))
    return _page(select, select.order_by(Campaign.created_at.desc(), Campaign.id.desc()), page, per_page)


def _page(select: sa.Select, ordered: sa.Select, page: int, per_page: int) -> Page:
    """One page of `ordered` and the total of `select`: counted only when the page is full (or past
    the end); a page with room left is the last one, so its rows give the total."""
    offset = (page - 1) * per_page
    rows = list(db.session.execute(ordered.limit(per_page).offset(offset)).scalars().all())
    last = len(rows) < per_page and (bool(rows) or page == 1)
    return Page(rows, page, per_page, offset + len(rows) if last else _count(select))


def _count(select: sa.Select) -> int:
    # maintain_column_froms: with no WHERE (an admin's unfiltered list) the FROM would otherwise
    # go with the columns, and "SELECT count(*)" without a table is 1.
    return db.session.execute(select.with_only_columns(db.func.count(), maintain_column_froms=True)).scalar_one()


def variants_for(user: Account, page: int = 1, per_page: int | None = None, ratio: str | None = None,
                 campaign_id: str | None = None) -> Page:
    """Rendered variants of the completed campaigns this user may see, newest first (the gallery)."""
    if ratio and ratio not in RATIOS:
        raise Invalid({"ratio": f"Must be one of: {', '.join(RATIOS)}."})
    config = current_app.config
    per_page = min(max(1, per_page or config["PAGE_SIZE"]), config["MAX_PAGE_SIZE"])
    select = db.select(Variant).join(Campaign).where(Campaign.status == "completed")
    if not user.is_admin:
        select = select.where(Campaign.owner_id == user.id)
    if ratio:
        select = select.where(Variant.ratio == ratio)
    if campaign_id:
        select = select.where(Campaign.id == campaign_id)
    ordered = (select.options(contains_eager(Variant.campaign))
               .order_by(Campaign.finished_at.desc(), Campaign.id, Variant.position))
    return _page(select, ordered, max(1, page), per_page)


def counts_for(user: Account) -> dict[str, int]:
    select = db.select(Campaign.status, db.func.count()).group_by(Campaign.status)
    if not user.is_admin:
        select = select.filter_by(owner_id=user.id)
    found = dict(db.session.execute(select).all())
    return {status: found.get(status, 0) for status in STATUSES}
