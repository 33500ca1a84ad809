"""An ordered list of SMS providers with failover: the first is the default.

:meth:`FailoverRoute.submit` hands the message to the first provider that
takes it. It moves to the next provider only when one raises
:class:`~notifications.providers.base.ProviderUnavailable` (connection
failure, bind down, HTTP 5xx / auth failure, provider-level error: nothing of
the message was taken). A per-message rejection (a PERMANENT result), a
throttled part (TEMPORARY) or an UNKNOWN outcome is returned as is: the
message was (or may have been) seen by that provider, and sending it through
another could deliver it twice. Bad input (an invalid number or text) raises
ValueError from the first provider and is not retried elsewhere either.

Providers that report themselves down (``available`` False: an SMPP bind that
is not up, an HTTP provider that failed in the last ``recheck_after`` seconds)
are tried after the ones that are up, so a dead default costs one failed
attempt, not one per message. The one-click switch is :meth:`set_default`
(or :meth:`reorder`); it is safe while other threads submit. Throughput and
window limits are each provider's own (``max_rate`` / ``burst`` / ``window``
in its settings).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from notifications.smpp import SubmitResult

from .base import ProviderError, ProviderUnavailable, SmsProvider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutedSubmit:
    """Which provider took the message, its per-part futures, and the providers that could not."""

    provider: str
    futures: list[Future[SubmitResult]]
    skipped: tuple[tuple[str, str], ...] = ()  #: (provider name, why) tried first and unavailable


class FailoverRoute:
    """Providers in order of preference (names unique); see the module docstring."""

    def __init__(self, providers: Sequence[SmsProvider], *, name: str = "default") -> None:
        if not providers:
            raise ValueError("a route needs at least one provider")
        names = [p.name for p in providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique in a route: {', '.join(duplicates)}")
        self.name = name
        self._order: tuple[SmsProvider, ...] = tuple(providers)
        self._lock = threading.Lock()
        self._started = False

    @property
    def providers(self) -> tuple[SmsProvider, ...]:
        return self._order

    @property
    def default(self) -> SmsProvider:
        return self._order[0]

    def provider(self, name: str) -> SmsProvider:
        for provider in self._order:
            if provider.name == name:
                return provider
        raise KeyError(f"no provider {name!r} in route {self.name!r}")

    def set_default(self, name: str) -> None:
        """Make ``name`` the first choice; the others keep their order."""
        with self._lock:
            chosen = self.provider(name)
            self._order = (chosen, *(p for p in self._order if p is not chosen))

    def reorder(self, names: Sequence[str]) -> None:
        """The whole order at once; ``names`` must name every provider exactly once."""
        with self._lock:
            if sorted(names) != sorted(p.name for p in self._order):
                raise ValueError(f"reorder needs each of {sorted(p.name for p in self._order)} once, got {list(names)}")
            self._order = tuple(self.provider(n) for n in names)

    def start(self) -> None:
        """Start every provider (SMPP binds); one that fails to start is logged and tried last.

        The first :meth:`submit` calls it, so an SMPP default is bound (and
        preferred) before a provider that needs no bind is chosen over it.
        """
        with self._lock:
            if self._started:
                return
            self._started = True
        for provider in self._order:
            try:
                provider.start()
            except Exception as exc:  # a dead provider must not stop the route
                logger.warning("SMS provider %s did not start: %s", provider.name, exc)

    def stop(self) -> None:
        for provider in self._order:
            provider.stop()

    def submit(self, dest: str, source: str, text: str, *, ref: Any, concat_ref: int | None = None,
               timeout: float | None = 30.0) -> RoutedSubmit:
        """Submit through the first provider that takes the message.

        Raises ProviderUnavailable (naming every provider's reason) when none
        does; ValueError for a bad number or text, from the first provider tried.
        """
        if not self._started:
            self.start()
        order = self._order
        candidates = [p for p in order if p.available] + [p for p in order if not p.available]
        skipped: list[tuple[str, str]] = []
        for provider in candidates:
            try:
                futures = provider.submit(dest, source, text, ref=ref, concat_ref=concat_ref, timeout=timeout)
            except ProviderUnavailable as exc:
                logger.warning("route %s: %s unavailable for %r, trying the next: %s", self.name, provider.name,
                               ref, exc)
                skipped.append((provider.name, str(exc)))
                continue
            return RoutedSubmit(provider.name, futures, tuple(skipped))
        raise ProviderUnavailable(f"route {self.name}: no provider took the message: "
                                  + "; ".join(f"{n}: {why}" for n, why in skipped))

    def balances(self) -> dict[str, Decimal | None | str]:
        """Each provider's remaining credit (None: no balance call; a string: why it could not be read)."""
        result: dict[str, Decimal | None | str] = {}
        for provider in self._order:
            try:
                result[provider.name] = provider.balance()
            except ProviderError as exc:
                result[provider.name] = f"unavailable: {exc}"
        return result
