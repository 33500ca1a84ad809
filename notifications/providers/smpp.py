"""SMPP 3.4 route: :class:`SmsProvider` over one :class:`~notifications.smpp.SMPPClient` bind."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from notifications.smpp import BindError, DeliveryReceipt, IncomingMessage, SMPPClient, SMPPConfig, SubmitResult

from .base import ProviderConfigError, ProviderUnavailable, SmsProvider

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SMPPConfig)}


def smpp_config(name: str, settings: Mapping[str, Any]) -> SMPPConfig:
    """Validate provider settings into an SMPPConfig (clear error naming the bad key)."""
    unknown = sorted(set(settings) - _CONFIG_FIELDS - {"bind_wait"})
    if unknown:
        raise ProviderConfigError(f"unknown SMPP setting(s): {', '.join(unknown)}")
    missing = [key for key in ("host", "port", "system_id", "password") if not settings.get(key) and settings.get(key) != 0]
    if missing:
        raise ProviderConfigError(f"missing SMPP setting(s): {', '.join(missing)}")
    values = {key: value for key, value in settings.items() if key in _CONFIG_FIELDS}
    values.setdefault("name", name)
    if "temporary_statuses" in values:
        values["temporary_statuses"] = frozenset(values["temporary_statuses"])
    try:
        return SMPPConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ProviderConfigError(f"invalid SMPP settings: {exc}") from exc


class SmppProvider(SmsProvider):
    """A transceiver bind; receipts and incoming messages arrive on it (deliver_sm).

    ``bind_wait`` (seconds, default 5) is how long :meth:`submit` waits for a
    bind that is down before it gives up with :class:`ProviderUnavailable`.
    """

    kind = "smpp"

    def __init__(self, name: str, settings: Mapping[str, Any], **handlers: Any) -> None:
        super().__init__(name, settings, **handlers)
        self.config = smpp_config(name, settings)
        self.bind_wait = float(settings.get("bind_wait", 5.0))
        self.client = SMPPClient(self.config, on_receipt=self._receipt, on_incoming=self._incoming)
        self._started = False

    def _receipt(self, receipt: DeliveryReceipt) -> Future[Any] | None:
        # a returned Future defers the deliver_sm_resp until it resolves (see SMPPClient)
        if self.on_receipt:
            return self.on_receipt(self.name, receipt)
        return None

    def _incoming(self, message: IncomingMessage) -> None:
        if self.on_incoming:
            self.on_incoming(self.name, message)

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.client.start(wait=self.bind_wait)

    def stop(self) -> None:
        if self._started:
            self.client.stop()

    @property
    def available(self) -> bool:
        return self.client.bound

    def submit(self, dest: str, source: str, text: str, *, ref: Any, concat_ref: int | None = None,
               timeout: float | None = 30.0) -> list[Future[SubmitResult]]:
        try:
            self.start()
        except BindError as exc:
            raise ProviderUnavailable(f"{self.name}: the SMSC refused the bind: {exc}") from exc
        if not self.client.wait_bound(self.bind_wait):
            error = self.client.last_bind_error
            raise ProviderUnavailable(f"{self.name}: SMPP bind to {self.config.host}:{self.config.port} is down"
                                      + (f" ({error})" if error else ""))
        return self.client.submit(dest, source, text, ref=ref, concat_ref=concat_ref, timeout=timeout)
