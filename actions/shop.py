"""The demo shop's data, behind the one interface a real shop replaces with its own API.

``DemoShop`` reads ``shop_data.json`` once and keeps every change (a cancellation, a new
address, a refund request, a complaint) in memory: the repository's data file is never written.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

DATA_FILE = Path(__file__).with_name("shop_data.json")

ORDER_STATUSES = ("processing", "shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class Item:
    """One line of an order."""

    name: str
    name_zh: str
    qty: int
    price: float


@dataclass(frozen=True)
class Order:
    """An order as the assistant may show it (no payment details)."""

    id: str
    email: str
    phone: str
    status: str
    items: tuple[Item, ...]
    order_date: date
    shipped_date: date | None
    delivered_date: date | None
    carrier: str | None
    tracking_number: str | None
    eta: str | None
    address: str
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(item.qty * item.price for item in self.items)

    def item_names(self, language: str) -> list[str]:
        return [
            (item.name_zh if language == "zh" else item.name)
            + (f" ×{item.qty}" if item.qty > 1 else "")
            for item in self.items
        ]

    def belongs_to(self, contact: str) -> bool:
        """True when ``contact`` is this order's e-mail address or phone number."""
        text = contact.strip().lower()
        if "@" in text:
            return text == self.email.lower()
        digits = re.sub(r"\D", "", text)
        own = re.sub(r"\D", "", self.phone)
        return len(digits) >= 7 and (digits == own or digits.endswith(own))


@dataclass(frozen=True)
class Refund:
    """A refund of an order."""

    id: str
    order_id: str
    status: str  # requested, processing, completed
    amount: float
    requested: date
    completed: date | None
    reason: str | None = None


@dataclass(frozen=True)
class Product:
    """A catalogue product."""

    id: str
    name: str
    name_zh: str
    category: str
    price: float

    def title(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name


class ShopError(Exception):
    """A change the shop refuses (an order already shipped cannot be cancelled...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShopService(Protocol):
    """What the assistant's actions need from a shop. Implement it over your own API."""

    return_window_days: int

    def today(self) -> date: ...

    def find_order(self, order_id: str) -> Order | None: ...

    def cancel_order(self, order_id: str) -> Order: ...

    def change_order(self, order_id: str, change: str) -> Order: ...

    def change_address(self, order_id: str, address: str) -> Order: ...

    def refund_eligibility(self, order_id: str) -> str: ...

    def request_refund(self, order_id: str, reason: str) -> Refund: ...

    def refund_status(self, order_id: str) -> Refund | None: ...

    def products(
        self, category: str | None = None, max_price: float | None = None
    ) -> list[Product]: ...

    def record_complaint(self, details: str, order_id: str | None = None) -> str: ...

    def record_payment_issue(self, problem: str, details: str, order_id: str | None) -> str: ...

    def record_parcel_claim(self, order_id: str) -> str: ...

    def record_review(self, rating: float, comment: str | None) -> str: ...

    def subscribe(self, email: str) -> bool: ...


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


class DemoShop:
    """The demo shop over ``shop_data.json``; changes live in memory for this process."""

    def __init__(self, path: Path = DATA_FILE) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self._lock = threading.Lock()
        self._today = date.fromisoformat(data["today"])
        self.return_window_days = int(data.get("return_window_days", 30))
        self._orders = {normalize_order_id(o["id"]): _order(o) for o in data["orders"]}
        self._refunds = {
            normalize_order_id(r["order_id"]): Refund(
                id=r["id"],
                order_id=r["order_id"],
                status=r["status"],
                amount=float(r["amount"]),
                requested=date.fromisoformat(r["requested"]),
                completed=_date(r.get("completed")),
            )
            for r in data.get("refunds", ())
        }
        self._products = [
            Product(p["id"], p["name"], p["name_zh"], p["category"], float(p["price"]))
            for p in data["products"]
        ]
        self._complaints: dict[str, str] = {}
        self._payment_issues: dict[str, tuple[str, str, str | None]] = {}
        self._parcel_claims: dict[str, str] = {}
        self._reviews: dict[str, tuple[float, str | None]] = {}
        self._subscribers: set[str] = set()
        self._counter = itertools.count(1)

    def today(self) -> date:
        return self._today

    # --- orders ----------------------------------------------------------------------------

    def find_order(self, order_id: str) -> Order | None:
        return self._orders.get(normalize_order_id(order_id))

    def _open_refund(self, order: Order, *, status: str, reason: str) -> Refund:
        """Record a new refund of the whole order (the caller holds the lock)."""
        refund = Refund(
            id=f"RF-{60000 + next(self._counter)}",
            order_id=order.id,
            status=status,
            amount=order.total,
            requested=self._today,
            completed=None,
            reason=reason,
        )
        self._refunds[normalize_order_id(order.id)] = refund
        return refund

    def _require(self, order_id: str) -> Order:
        order = self.find_order(order_id)
        if order is None:
            raise ShopError("not_found")
        return order

    def _store(self, order: Order) -> Order:
        self._orders[normalize_order_id(order.id)] = order
        return order

    def cancel_order(self, order_id: str) -> Order:
        with self._lock:
            order = self._require(order_id)
            if order.status != "processing":
                raise ShopError(order.status)
            cancelled = self._store(replace(order, status="cancelled", eta=None))
            self._open_refund(order, status="processing", reason="order cancelled")
            return cancelled

    def change_order(self, order_id: str, change: str) -> Order:
        with self._lock:
            order = self._require(order_id)
            if order.status != "processing":
                raise ShopError(order.status)
            return self._store(replace(order, notes=(*order.notes, change)))

    def change_address(self, order_id: str, address: str) -> Order:
        with self._lock:
            order = self._require(order_id)
            if order.status != "processing":
                raise ShopError(order.status)
            return self._store(replace(order, address=address.strip()))

    # --- refunds ---------------------------------------------------------------------------

    def refund_eligibility(self, order_id: str) -> str:
        """``eligible``, or why not: ``already_refunded``, ``outside_window``, ``not_delivered``,
        ``processing`` (cancel it instead), ``cancelled`` or ``not_found``."""
        order = self.find_order(order_id)
        if order is None:
            return "not_found"
        if normalize_order_id(order.id) in self._refunds:
            return "already_refunded"
        if order.status == "cancelled":
            return "cancelled"
        if order.status == "processing":
            return "processing"
        if order.status == "shipped" or order.delivered_date is None:
            return "not_delivered"
        if (self._today - order.delivered_date).days > self.return_window_days:
            return "outside_window"
        return "eligible"

    def request_refund(self, order_id: str, reason: str) -> Refund:
        with self._lock:
            eligibility = self.refund_eligibility(order_id)
            if eligibility != "eligible":
                raise ShopError(eligibility)
            order = self._require(order_id)
            refund = self._open_refund(order, status="requested", reason=reason)
            return refund

    def refund_status(self, order_id: str) -> Refund | None:
        return self._refunds.get(normalize_order_id(order_id))

    # --- catalogue -------------------------------------------------------------------------

    def products(
        self, category: str | None = None, max_price: float | None = None
    ) -> list[Product]:
        """Products of ``category`` (all when None) within ``max_price``, cheapest first."""
        found = [
            p
            for p in self._products
            if (category is None or p.category == category)
            and (max_price is None or p.price <= max_price)
        ]
        return sorted(found, key=lambda p: (p.price, p.id))

    # --- records ---------------------------------------------------------------------------

    def _reference(self, prefix: str) -> str:
        return f"{prefix}-{70000 + next(self._counter)}"

    def record_complaint(self, details: str, order_id: str | None = None) -> str:
        with self._lock:
            reference = self._reference("CP")
            self._complaints[reference] = details
            return reference

    def record_payment_issue(self, problem: str, details: str, order_id: str | None) -> str:
        with self._lock:
            reference = self._reference("PY")
            self._payment_issues[reference] = (problem, details, order_id)
            return reference

    def record_parcel_claim(self, order_id: str) -> str:
        """Open a lost-parcel claim with the carrier; the reference of the open claim if the
        order already has one."""
        wanted = normalize_order_id(order_id)
        with self._lock:
            for reference, claimed in self._parcel_claims.items():
                if claimed == wanted:
                    return reference
            reference = self._reference("LP")
            self._parcel_claims[reference] = wanted
            return reference

    def record_review(self, rating: float, comment: str | None) -> str:
        with self._lock:
            reference = self._reference("RV")
            self._reviews[reference] = (rating, comment)
            return reference

    def subscribe(self, email: str) -> bool:
        """Subscribe ``email``; False when it already was."""
        with self._lock:
            key = email.strip().lower()
            if key in self._subscribers:
                return False
            self._subscribers.add(key)
            return True


def _order(raw: dict[str, Any]) -> Order:
    return Order(
        id=raw["id"],
        email=raw["email"],
        phone=raw.get("phone") or "",
        status=raw["status"],
        items=tuple(
            Item(i["name"], i.get("name_zh", i["name"]), int(i.get("qty", 1)), float(i["price"]))
            for i in raw["items"]
        ),
        order_date=date.fromisoformat(raw["order_date"]),
        shipped_date=_date(raw.get("shipped_date")),
        delivered_date=_date(raw.get("delivered_date")),
        carrier=raw.get("carrier"),
        tracking_number=raw.get("tracking_number"),
        eta=raw.get("eta"),
        address=raw.get("address") or "",
    )


def normalize_order_id(raw: str) -> str:
    """``kf10001``, ``KF 10001`` and ``KF-10001`` are the same order."""
    text = re.sub(r"[\s_]", "", str(raw).strip().upper())
    if text.startswith("KF") and not text.startswith("KF-"):
        text = "KF-" + text[2:]
    return text


@lru_cache(maxsize=1)
def shop() -> ShopService:
    """The shop the actions talk to."""
    return DemoShop()
