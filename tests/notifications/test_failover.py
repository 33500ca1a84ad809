"""FailoverRoute over real peers: the SMSC simulator (SMPP) and the bulk-SMS HTTP API simulator."""
from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from notifications.providers import FailoverRoute, ProviderUnavailable, build_provider
from notifications.smpp import Outcome
from tests.peers.sms_http import HttpSmsSimulator
from tests.peers.smsc import SMSCSimulator

NUMBER = "8801711000001"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smpp(name: str, port: int, **extra):
    return build_provider("smpp", name, {
        "host": "127.0.0.1", "port": port, "system_id": "ispsms", "password": "secret",
        "reconnect_initial": 0.05, "reconnect_max": 0.2, "bind_wait": 0.5, "connect_timeout": 0.5, **extra})


def http(name: str, base_url: str, **extra):
    return build_provider("http", name, {"profile": "bd_bulk", "base_url": base_url,
                                         "credentials": {"api_token": "test-token"}, "recheck_after": 30, **extra})


@pytest.fixture
def smsc():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


@pytest.fixture
def api():
    with HttpSmsSimulator("test-token") as simulator:
        yield simulator


def outcomes(routed):
    return [f.result(timeout=5).outcome for f in routed.futures]


def test_dead_smpp_default_fails_over_to_http(api):
    route = FailoverRoute([smpp("smsc", closed_port()), http("bulk", api.base_url)])
    try:
        routed = route.submit(NUMBER, "DhakaFiber", "Payment received", ref="m1")
        assert routed.provider == "bulk" and outcomes(routed) == [Outcome.ACCEPTED]
        assert api.texts(NUMBER) == ["Payment received"]
        # The bind is known down, so the next message goes straight to the HTTP provider.
        again = route.submit(NUMBER, "DhakaFiber", "second", ref="m2")
        assert again.provider == "bulk" and again.skipped == ()
    finally:
        route.stop()


def test_dead_http_default_fails_over_to_smpp(smsc):
    route = FailoverRoute([http("bulk", f"http://127.0.0.1:{closed_port()}"), smpp("smsc", smsc.port)])
    route.start()
    try:
        routed = route.submit(NUMBER, "DhakaFiber", "Payment received", ref="m1")
        assert routed.provider == "smsc" and outcomes(routed) == [Outcome.ACCEPTED]
        assert [name for name, _ in routed.skipped] == ["bulk"] and "cannot reach" in routed.skipped[0][1]
        assert smsc.texts(NUMBER) == ["Payment received"]
        again = route.submit(NUMBER, "DhakaFiber", "second", ref="m2")
        assert again.provider == "smsc" and again.skipped == ()  # the down HTTP provider is tried last now
    finally:
        route.stop()


def test_provider_level_error_fails_over(api, smsc):
    api.configure(action="provider_error")  # 4025 insufficient balance at the HTTP provider
    route = FailoverRoute([http("bulk", api.base_url), smpp("smsc", smsc.port)])
    try:
        routed = route.submit(NUMBER, "ISP", "hello", ref=1)
        assert routed.provider == "smsc" and "4025" in routed.skipped[0][1]
        assert outcomes(routed) == [Outcome.ACCEPTED]
        assert api.messages == [] and smsc.texts(NUMBER) == ["hello"]
    finally:
        route.stop()


def test_http_rejection_does_not_fail_over(api, smsc):
    api.configure(NUMBER, action="reject", reject_message="Number is in DND list")
    route = FailoverRoute([http("bulk", api.base_url), smpp("smsc", smsc.port)])
    try:
        routed = route.submit(NUMBER, "ISP", "promo", ref=1)
        assert routed.provider == "bulk" and outcomes(routed) == [Outcome.PERMANENT]
        assert smsc.submits == []
    finally:
        route.stop()


def test_smpp_rejection_does_not_fail_over(api, smsc):
    smsc.configure(NUMBER, action="reject")
    route = FailoverRoute([smpp("smsc", smsc.port), http("bulk", api.base_url)])
    route.start()
    try:
        routed = route.submit(NUMBER, "ISP", "promo", ref=1)
        assert routed.provider == "smsc" and outcomes(routed) == [Outcome.PERMANENT]
        assert api.requests == []
    finally:
        route.stop()


def test_unknown_outcome_does_not_fail_over(api, smsc):
    route = FailoverRoute([http("bulk", api.base_url, timeout=0.2, dedup=False), smpp("smsc", smsc.port)])
    api.delay_next(1, 0.5)
    try:
        routed = route.submit(NUMBER, "ISP", "slow", ref=1)
        assert routed.provider == "bulk" and outcomes(routed) == [Outcome.UNKNOWN]
        assert smsc.submits == []
    finally:
        route.stop()


def test_bad_input_is_not_retried_elsewhere(api, smsc):
    route = FailoverRoute([http("bulk", api.base_url), smpp("smsc", smsc.port)])
    try:
        with pytest.raises(ValueError, match="destination"):
            route.submit("not-a-number", "ISP", "hello", ref=1)
        assert api.requests == [] and smsc.submits == []
    finally:
        route.stop()


def test_healthy_smpp_default_is_preferred_without_an_explicit_start(api, smsc):
    route = FailoverRoute([smpp("smsc", smsc.port), http("bulk", api.base_url)])
    try:
        routed = route.submit(NUMBER, "ISP", "one", ref=1)  # binds first: an unbound default is not "down"
        assert routed.provider == "smsc" and routed.skipped == () and outcomes(routed) == [Outcome.ACCEPTED]
        assert api.requests == []
    finally:
        route.stop()


def test_one_click_switch_and_reorder(api, smsc):
    route = FailoverRoute([http("bulk", api.base_url), smpp("smsc", smsc.port)])
    try:
        assert route.submit(NUMBER, "ISP", "one", ref=1).provider == "bulk"
        route.set_default("smsc")
        assert [p.name for p in route.providers] == ["smsc", "bulk"]
        second = route.submit(NUMBER, "ISP", "two", ref=2)
        assert second.provider == "smsc" and outcomes(second) == [Outcome.ACCEPTED]
        route.reorder(["bulk", "smsc"])
        assert route.default.name == "bulk"
        with pytest.raises(ValueError, match="reorder needs each of"):
            route.reorder(["bulk"])
        with pytest.raises(KeyError):
            route.set_default("nope")
        assert api.texts(NUMBER) == ["one"] and smsc.texts(NUMBER) == ["two"]
    finally:
        route.stop()


def test_all_down_names_every_reason():
    route = FailoverRoute([http("a", f"http://127.0.0.1:{closed_port()}"), smpp("b", closed_port())])
    try:
        with pytest.raises(ProviderUnavailable, match=r"route default: no provider took the message: a: .*; b: "):
            route.submit(NUMBER, "ISP", "hello", ref=1)
    finally:
        route.stop()


def test_balances_per_provider(api, smsc):
    route = FailoverRoute([http("bulk", api.base_url), smpp("smsc", smsc.port),
                           http("dead", f"http://127.0.0.1:{closed_port()}")])
    balances = route.balances()
    assert balances["bulk"] == Decimal("1000.00") and balances["smsc"] is None
    assert balances["dead"].startswith("unavailable: dead: balance call failed")


def test_route_needs_unique_named_providers(api):
    with pytest.raises(ValueError, match="at least one"):
        FailoverRoute([])
    with pytest.raises(ValueError, match="unique in a route: x"):
        FailoverRoute([http("x", api.base_url), http("x", api.base_url)])
