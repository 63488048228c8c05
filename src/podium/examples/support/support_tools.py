"""The support desk's tools: what the billing and technical agents may look up.

The model sees each function's typed signature as the tool's JSON Schema and its docstring's
first line as the description. The data is a small in-memory stand-in for the real systems:
replace the bodies with calls to your billing system and status page.
"""

from __future__ import annotations

from typing import Any

INVOICES: dict[str, dict[str, Any]] = {
    "INV-1042": {
        "customer": "ACME-4471",
        "amount": 249.00,
        "currency": "EUR",
        "status": "paid",
        "issued": "2025-03-01",
        "charges": [
            {"id": "ch_7Hd2", "amount": 249.00, "on": "2025-03-03"},
            {"id": "ch_7Hd9", "amount": 249.00, "on": "2025-03-03"},
        ],
    },
    "INV-1057": {
        "customer": "ACME-4471",
        "amount": 249.00,
        "currency": "EUR",
        "status": "open",
        "issued": "2025-04-01",
        "charges": [],
    },
}

SERVICES = {
    "api": {"status": "operational", "note": "p95 latency 180 ms"},
    "dashboard": {"status": "degraded", "note": "exports are delayed by up to 30 minutes"},
    "webhooks": {"status": "operational", "note": ""},
}


def lookup_invoice(invoice_id: str) -> dict[str, Any]:
    """Look an invoice up by its id (such as INV-1042): amount, status and the charges made."""
    key = invoice_id.strip().upper()
    invoice = INVOICES.get(key)
    if invoice is None:
        # Told to the model as the tool's result, so that it can ask the customer again.
        raise LookupError(f"there is no invoice {invoice_id!r}; invoice ids look like INV-1042")
    charged = sum(charge["amount"] for charge in invoice["charges"])
    return {"invoice_id": key, **invoice, "overcharged": round(charged - invoice["amount"], 2)}


def service_status(service: str) -> dict[str, Any]:
    """The current status of one of ACME's services: api, dashboard or webhooks."""
    status = SERVICES.get(service.strip().lower())
    if status is None:
        raise LookupError(f"unknown service {service!r}; services: {', '.join(SERVICES)}")
    return {"service": service, **status}
