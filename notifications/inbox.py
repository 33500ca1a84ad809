"""Incoming SMS: stored for the inbox as they arrive (keyword handling builds on these rows)."""
from __future__ import annotations

import logging

from django.db import connection

from .models import InboundMessage, SenderId

log = logging.getLogger(__name__)


def store_incoming(provider: str, message) -> InboundMessage:
    """Persist one mobile-originated message (``notifications.smpp.IncomingMessage``).

    The line is found by the destination address (a dedicated number); with none, the
    row is kept without a tenant so nothing is lost. Committed before the provider
    acknowledges it (an exception makes the SMSC redeliver)."""
    try:
        dest = (message.destination_addr or "").lstrip("+")
        line = (SenderId.objects.filter(value__in=[dest, "+" + dest], line_type=SenderId.LineType.DEDICATED)
                .select_related("tenant").first())
        return InboundMessage.objects.create(
            tenant=line.tenant if line else None, line=line, provider=provider,
            from_number=(message.source_addr or "")[:21], to_number=(message.destination_addr or "")[:21],
            text=message.text, parts=message.part_count, complete=message.complete, received_at=message.received_at,
        )
    except Exception:
        connection.close()  # a broken connection must not poison the I/O thread's next call
        raise
