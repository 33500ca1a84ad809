"""SMS routes: the :class:`SmsProvider` interface and its implementations, by kind."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import (
    IncomingHandler,
    ProviderConfigError,
    ProviderError,
    ProviderUnavailable,
    ReceiptHandler,
    SmsProvider,
)
from .failover import FailoverRoute, RoutedSubmit
from .http import PROFILES, HttpProvider
from .smpp import SmppProvider

#: kind -> class; a new provider kind registers itself here.
PROVIDER_KINDS: dict[str, type[SmsProvider]] = {SmppProvider.kind: SmppProvider, HttpProvider.kind: HttpProvider}


def build_provider(kind: str, name: str, settings: Mapping[str, Any], *,
                   on_receipt: ReceiptHandler | None = None,
                   on_incoming: IncomingHandler | None = None) -> SmsProvider:
    """The configured provider of ``kind``; ProviderConfigError for an unknown kind or bad settings."""
    try:
        cls = PROVIDER_KINDS[kind]
    except KeyError:
        raise ProviderConfigError(f"unknown SMS provider kind {kind!r} (known: {', '.join(sorted(PROVIDER_KINDS))})") from None
    return cls(name, settings, on_receipt=on_receipt, on_incoming=on_incoming)


__all__ = [
    "PROFILES", "PROVIDER_KINDS", "FailoverRoute", "HttpProvider", "IncomingHandler", "ProviderConfigError", "ProviderError", "ProviderUnavailable",
    "ReceiptHandler", "RoutedSubmit", "SmppProvider", "SmsProvider", "build_provider",
]
