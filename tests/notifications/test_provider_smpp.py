"""The SmsProvider interface over a real SMPP bind to the local SMSC simulator."""
from __future__ import annotations

import socket
import threading

import pytest

from notifications.providers import (
    ProviderConfigError,
    ProviderUnavailable,
    SmppProvider,
    build_provider,
)
from notifications.smpp import Outcome
from tests.peers.smsc import SMSCSimulator


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


def settings_for(port: int, **extra):
    return {"host": "127.0.0.1", "port": port, "system_id": "ispsms", "password": "secret",
            "reconnect_initial": 0.05, "reconnect_max": 0.2, "bind_wait": 2.0, **extra}


def test_submit_delivers_and_receipt_reaches_the_handler(sim):
    sim.configure(dlr="late")
    receipts = []
    done = threading.Event()

    def on_receipt(name, receipt):
        receipts.append((name, receipt))
        done.set()

    provider = build_provider("smpp", "primary", settings_for(sim.port), on_receipt=on_receipt)
    try:
        futures = provider.submit("8801711000001", "DhakaFiber", "Bill paid: 500 BDT", ref="m1")
        results = [f.result(timeout=5) for f in futures]
        assert [r.outcome for r in results] == [Outcome.ACCEPTED]
        assert results[0].ref == "m1" and results[0].message_key
        assert sim.texts("8801711000001") == ["Bill paid: 500 BDT"]
        assert done.wait(5)
        name, receipt = receipts[0]
        assert name == "primary" and receipt.message_key == results[0].message_key
        assert provider.available
    finally:
        provider.stop()


def test_closed_port_raises_unavailable_before_sending():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = build_provider("smpp", "dead", settings_for(port, bind_wait=0.3))
    try:
        with pytest.raises(ProviderUnavailable, match="dead: SMPP bind to 127.0.0.1"):
            provider.submit("8801711000001", "DhakaFiber", "hello", ref=1)
        assert not provider.available
    finally:
        provider.stop()


def test_refused_bind_is_unavailable(sim):
    provider = build_provider("smpp", "badpw", settings_for(sim.port, password="wrong"))
    with pytest.raises(ProviderUnavailable, match="refused the bind"):
        provider.submit("8801711000001", "DhakaFiber", "hello", ref=1)


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("fax", {}, "unknown SMS provider kind 'fax'"),
        ("smpp", {"host": "127.0.0.1", "port": 2775, "system_id": "x"}, "missing SMPP setting\\(s\\): password"),
        ("smpp", {"host": "h", "port": 1, "system_id": "x", "password": "p", "colour": "red"}, "unknown SMPP setting"),
        ("smpp", {"host": "h", "port": 1, "system_id": "x", "password": "p", "window": 0}, "window must be >= 1"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(kind, config, message):
    with pytest.raises(ProviderConfigError, match=message):
        build_provider(kind, "p", config)


def test_smpp_provider_kind():
    assert SmppProvider.kind == "smpp"
