"""The demo shop's data, behind the one interface a real shop replaces with its own API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

DATA_FILE = Path(__file__).with_name("shop_data.json")


@dataclass(frozen=True)
class Order:
    """An order as the assistant may show it (no payment details)."""

    id: str
    email: str
    status: str
    items: tuple[str, ...]
    carrier: str | None
    tracking_number: str | None
    eta: str | None


class ShopService(Protocol):
    """What the assistant's actions need from a shop. Implement it over your own API."""

    def find_order(self, order_id: str) -> Order | None: ...


class DemoShop:
    """The demo shop: orders from ``shop_data.json`` shipped with the repository."""

    def __init__(self, path: Path = DATA_FILE) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self._orders = {
            o["id"].upper(): Order(
                id=o["id"],
                email=o["email"],
                status=o["status"],
                items=tuple(o["items"]),
                carrier=o.get("carrier"),
                tracking_number=o.get("tracking_number"),
                eta=o.get("eta"),
            )
            for o in data["orders"]
        }

    def find_order(self, order_id: str) -> Order | None:
        return self._orders.get(normalize_order_id(order_id))


def normalize_order_id(raw: str) -> str:
    """``kf10001`` and ``KF-10001`` are the same order."""
    text = raw.strip().upper().replace(" ", "")
    if text.startswith("KF") and not text.startswith("KF-"):
        text = "KF-" + text[2:]
    return text


@lru_cache(maxsize=1)
def shop() -> ShopService:
    """The shop the actions talk to."""
    return DemoShop()
