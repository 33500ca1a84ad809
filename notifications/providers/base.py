"""The one interface every SMS route implements (SMPP bind, HTTP API).

The campaign and transactional senders only ever talk to :class:`SmsProvider`;
which concrete provider is behind a route is configuration. The result and
event types are the SMPP layer's (:mod:`notifications.smpp`), so a receipt is a
:class:`~notifications.smpp.DeliveryReceipt` whichever way it arrived.

Failure model (what decides failover):

* :class:`ProviderUnavailable` is raised by :meth:`SmsProvider.submit` when the
  provider could not take the message at all: connection refused, bind down,
  HTTP 5xx, authentication or provider-level error. Nothing of that message was
  accepted, so the caller may try the next provider.
* A per-message rejection (invalid number, blocked content, ...) is not an
  exception: it is a :class:`~notifications.smpp.SubmitResult` with outcome
  ``PERMANENT``; the caller must *not* fail over on it (that would send twice
  where the first provider did accept part of it, and the rejection is about
  the message, not the route).
* ``UNKNOWN`` (written, no answer) is neither: the message may be live.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, ClassVar

from notifications.smpp import DeliveryReceipt, IncomingMessage, SubmitResult

ReceiptHandler = Callable[[str, DeliveryReceipt], None]  #: (provider name, receipt)
IncomingHandler = Callable[[str, IncomingMessage], None]  #: (provider name, message)


class ProviderError(Exception):
    """Base of the provider errors."""


class ProviderUnavailable(ProviderError):
    """The provider took nothing of this message: the caller may fail over."""


class ProviderConfigError(ProviderError):
    """The provider's settings are incomplete or invalid (raised on construction)."""


class SmsProvider(ABC):
    """One configured route to an SMSC or SMS gateway.

    ``name`` identifies the route in logs, message rows and receipts.
    ``settings`` is the provider-kind specific configuration (host, port,
    credentials, URL, ...), validated by the constructor.
    ``on_receipt`` / ``on_incoming`` are called (possibly from an I/O thread)
    with every delivery receipt and mobile-originated message the provider
    pushes or that :meth:`handle_callback` parsed; they must be quick.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        on_receipt: ReceiptHandler | None = None,
        on_incoming: IncomingHandler | None = None,
    ) -> None:
        self.name = name
        self.settings = dict(settings)
        self.on_receipt = on_receipt
        self.on_incoming = on_incoming

    def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections / binds. Idempotent."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Close connections, waiting briefly for outstanding responses. Idempotent."""

    @property
    def available(self) -> bool:
        """False when the provider is known to be down (e.g. bind lost): failover skips it."""
        return True

    @abstractmethod
    def submit(
        self,
        dest: str,
        source: str,
        text: str,
        *,
        ref: Any,
        concat_ref: int | None = None,
        timeout: float | None = 30.0,
    ) -> list[Future[SubmitResult]]:
        """Send one message (our own segmentation: one submit per part).

        ``dest`` is E.164 digits without ``+``; ``source`` a sender id;
        ``ref`` the caller's reference, echoed in every result. Returns one
        future per part; each resolves to a SubmitResult, never to an
        exception. Raises :class:`ProviderUnavailable` before anything is sent
        when the provider cannot take the message at all.
        """

    def balance(self) -> Decimal | None:
        """The credit left at the provider, where it offers a balance call."""
        return None

    def handle_callback(self, data: Mapping[str, Any]) -> list[DeliveryReceipt | IncomingMessage]:
        """Parse a webhook request (delivery report or incoming SMS) pushed by an HTTP provider.

        Calls ``on_receipt`` / ``on_incoming`` for each event and returns them.
        Providers that push over their own connection (SMPP) return ``[]``.
        """
        return []
