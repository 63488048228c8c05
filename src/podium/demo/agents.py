"""The demo's agents: plain async functions standing in for the services of an order desk.

Each sleeps a fixed 0.2-0.6 s to simulate a call over the network, so the demo takes a few
seconds and the same seconds every time. Nothing here is random: the payment gateway fails
its first attempt by looking at `ctx.attempt`, so the retry shows up in every run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.agents import StepContext

# What the warehouses hold; an order for more than this goes to backorder.
STOCK = {"WIDGET-1": 100, "GADGET-7": 20, "GIZMO-3": 5}

Line = dict[str, Any]


async def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    """Check the order is complete and price it."""
    await asyncio.sleep(0.3)
    total = sum(line["qty"] * line["price"] for line in order["lines"])
    return {"order_id": order["id"], "lines": len(order["lines"]), "total": round(total, 2)}


async def check_stock(lines: list[Line]) -> dict[str, Any]:
    """Say whether every line can be served from stock, and which cannot."""
    await asyncio.sleep(0.4)
    short = [line["sku"] for line in lines if STOCK.get(line["sku"], 0) < line["qty"]]
    return {"in_stock": not short, "short": short}


async def charge_payment(customer: str, amount: float, ctx: StepContext) -> dict[str, Any]:
    """Charge the customer; the simulated gateway times out on the first attempt."""
    await asyncio.sleep(0.4)
    if ctx.attempt == 1:
        raise ConnectionError("payment gateway timed out (simulated: the retry succeeds)")
    # The idempotency key is what a real gateway would be given so that a retry after a
    # crash cannot charge twice.
    return {"customer": customer, "amount": amount, "charge_id": f"ch_{ctx.idempotency_key}"}


async def _reserve(warehouse: str, sku: str, qty: int) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    return {"sku": sku, "qty": qty, "warehouse": warehouse}


async def reserve_east(sku: str, qty: int) -> dict[str, Any]:
    """Reserve one order line at the east warehouse."""
    return await _reserve("east", sku, qty)


async def reserve_west(sku: str, qty: int) -> dict[str, Any]:
    """Reserve one order line at the west warehouse."""
    return await _reserve("west", sku, qty)


async def backorder(order_id: str, short: list[str]) -> dict[str, Any]:
    """Put the order on hold until the short items arrive."""
    await asyncio.sleep(0.3)
    return {"order_id": order_id, "waiting_for": short}


async def create_invoice(order_id: str, customer: str, charge: dict[str, Any]) -> dict[str, Any]:
    """Issue the invoice for the amount charged."""
    await asyncio.sleep(0.3)
    return {"number": f"INV-{order_id}", "customer": customer, "amount": charge["amount"]}


async def ship(order_id: str, reservations: list[dict[str, Any]]) -> dict[str, Any]:
    """Hand the reserved lines to the carrier, one parcel per warehouse."""
    await asyncio.sleep(0.6)
    warehouses = sorted({r["warehouse"] for r in reservations})
    return {"tracking": f"TRK-{order_id}", "parcels": len(warehouses), "from": warehouses}


async def notify(contact: str, order_id: str, shipment: dict[str, Any] | None) -> dict[str, Any]:
    """Tell one contact how the order stands."""
    await asyncio.sleep(0.2)
    if shipment is None:
        message = f"{order_id} is on backorder"
    else:
        message = f"{order_id} shipped, tracking {shipment['tracking']}"
    return {"to": contact, "message": message}
