"""mikrotik.client against the RouterOS simulator: operations, error classes, timeouts, retries."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mikrotik.client import (
    RouterAuthError,
    RouterCommandError,
    RouterConnection,
    RouterConnectionLost,
    RouterError,
    RouterTLSError,
    RouterUnreachable,
    _parse_words,
    connect,
    is_transient,
    with_retries,
)
from tests.peers.routeros import RouterOSSimulator

USER, PASSWORD = "billing", "pa55"


@pytest.fixture
def router() -> Iterator[RouterOSSimulator]:
    with RouterOSSimulator(username=USER, password=PASSWORD, identity="core-router") as sim:
        yield sim


def open_conn(router: RouterOSSimulator, **kwargs: object) -> RouterConnection:
    return connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def conn(router: RouterOSSimulator) -> Iterator[RouterConnection]:
    with open_conn(router) as connection:
        yield connection


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- connecting --------------------------------------------------------------------------


def test_identity_and_resource_are_strings(conn: RouterConnection) -> None:
    assert conn.identity() == "core-router"
    resource = conn.resource()
    assert resource["version"].startswith("7.")
    assert resource["cpu-load"] == "3"
    assert all(isinstance(value, str) for value in resource.values())
    assert {"uptime", "free-memory", "board-name"} <= resource.keys()


def test_bad_credentials_raise_a_permanent_auth_error_with_operator_hint(router: RouterOSSimulator) -> None:
    with pytest.raises(RouterAuthError) as info:
        connect("127.0.0.1", router.port, USER, "wrong", timeout=2)
    error = info.value
    assert "invalid user name or password (6)" in str(error)
    assert "/ip service" in str(error)
    assert "address" in str(error)
    assert not error.retryable
    assert not is_transient(error)


def test_connection_refused_is_transient() -> None:
    with pytest.raises(RouterUnreachable, match="refused") as info:
        connect("127.0.0.1", free_port(), USER, PASSWORD, timeout=2)
    assert info.value.retryable


def test_login_hang_times_out_as_unreachable_within_the_timeout(router: RouterOSSimulator) -> None:
    router.login_hangs = True
    started = time.monotonic()
    with pytest.raises(RouterUnreachable, match=r"did not answer within 0.4s") as info:
        connect("127.0.0.1", router.port, USER, PASSWORD, timeout=0.4)
    elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 0.4 + 0.3
    assert "address' list" in str(info.value)


def test_legacy_router_falls_back_to_challenge_login(caplog: pytest.LogCaptureFixture) -> None:
    with RouterOSSimulator(username=USER, password=PASSWORD, legacy_login=True) as router:
        with caplog.at_level(logging.WARNING, logger="mikrotik.client"), open_conn(router) as connection:
            assert connection.identity() == "MikroTik"
        assert "older than 6.43" in caplog.text
        with pytest.raises(RouterAuthError, match="cannot log in"):
            connect("127.0.0.1", router.port, USER, "wrong", timeout=2)


def test_password_is_not_written_to_debug_logs(router: RouterOSSimulator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        open_conn(router).close()
    assert PASSWORD not in caplog.text


# -- operations -------------------------------------------------------------------------------


def test_add_print_set_remove_keep_string_values(router: RouterOSSimulator, conn: RouterConnection) -> None:
    pid = conn.add("/ppp/profile", name="10M", **{"rate-limit": "10M/10M", "only-one": "yes"})
    sid = conn.add("ppp/secret", name="alice", password="x", profile="10M", disabled=False)
    assert (pid, sid) == ("*1", "*1")
    (alice,) = conn.print("/ppp/secret", name="alice")
    assert alice["disabled"] == "false"  # RouterOS prints booleans as true/false
    assert alice["limit-bytes-in"] == "0"  # numbers stay strings
    conn.set("/ppp/secret", sid, disabled=True, comment="unpaid")
    assert conn.print("/ppp/secret", proplist=["name", "disabled", "comment"]) == [
        {"name": "alice", "disabled": "true", "comment": "unpaid"}
    ]
    conn.set("/ppp/secret", sid)  # nothing to change: nothing sent
    conn.remove("/ppp/secret", sid)
    assert conn.print("/ppp/secret") == []
    assert conn.print("/ppp/profile", default="no") == [router.item("/ppp/profile", "10M")]


def test_print_queries_and_remove_several(router: RouterOSSimulator, conn: RouterConnection) -> None:
    ids = [conn.add("/ip/firewall/address-list", list=lst, address=f"10.0.0.{n}") for n, lst in enumerate("aab")]
    assert [row["address"] for row in conn.print("/ip/firewall/address-list", list="a")] == ["10.0.0.0", "10.0.0.1"]
    assert conn.print("/ip/firewall/address-list", list="a", address="10.0.0.1", proplist=[".id"]) == [
        {".id": ids[1]}
    ]
    conn.remove("/ip/firewall/address-list", ids[:2])
    assert [row["list"] for row in router.items("/ip/firewall/address-list")] == ["b"]
    rows, done = conn.call("/ip/firewall/address-list/print", {"count-only": ""}, ["?-comment"])
    assert (rows, done) == ([], {"ret": "1"})


def test_settings_menus(router: RouterOSSimulator, conn: RouterConnection) -> None:
    assert conn.settings_get("/radius/incoming") == {"accept": "false", "port": "3799", "vrf": "main"}
    conn.settings_set("/radius/incoming", accept=True, port=3799)
    assert router.settings("/radius/incoming")["accept"] == "true"
    conn.settings_set("/system/identity", name="edge-2")
    assert conn.identity() == "edge-2"


def test_kicking_an_active_ppp_session(router: RouterOSSimulator, conn: RouterConnection) -> None:
    router.seed("/ppp/active", {"name": "alice", "address": "100.64.0.2"}, {"name": "bob"})
    (session,) = conn.print("/ppp/active", name="alice")
    conn.remove("/ppp/active", session[".id"])
    assert [row["name"] for row in conn.print("/ppp/active")] == ["bob"]
    with pytest.raises(RouterCommandError, match="no such item"):
        conn.remove("/ppp/active", session[".id"])  # already gone


def test_duplicate_name_is_a_command_error_and_connection_stays_usable(conn: RouterConnection) -> None:
    conn.add("/queue/simple", name="c1", target="100.64.0.2/32")
    with pytest.raises(RouterCommandError) as info:
        conn.add("/queue/simple", name="c1", target="100.64.0.3/32")
    error = info.value
    assert error.menu == "/queue/simple"
    assert error.command == "/queue/simple/add"
    assert error.message == "failure: already have such name"
    assert not error.retryable
    assert not conn.closed
    assert len(conn.print("/queue/simple")) == 1


def test_injected_trap_affects_only_the_targeted_item(router: RouterOSSimulator, conn: RouterConnection) -> None:
    router.inject_trap("/ip/hotspot/user", name="bob", message="failure: profile does not exist")
    failed = []
    for name in ("alice", "bob", "carol"):
        try:
            conn.add("/ip/hotspot/user", name=name, profile="1h")
        except RouterCommandError as exc:
            failed.append((name, exc.message))
    assert failed == [("bob", "failure: profile does not exist")]
    assert [u["name"] for u in conn.print("/ip/hotspot/user")] == ["alice", "carol"]


def test_unencodable_value_is_a_command_error(router: RouterOSSimulator) -> None:
    with connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2, encoding="ascii") as conn:
        with pytest.raises(RouterCommandError, match="cannot be encoded"):
            conn.add("/ppp/secret", name="রহিম")
        assert conn.add("/ppp/secret", name="rahim") == "*1"


def test_utf8_values_round_trip(conn: RouterConnection) -> None:
    conn.add("/ppp/secret", name="rahim", comment="রহিম উদ্দিন")
    assert conn.print("/ppp/secret", proplist=["comment"]) == [{"comment": "রহিম উদ্দিন"}]


def test_bad_menu_and_value_types_are_rejected(conn: RouterConnection) -> None:
    with pytest.raises(ValueError, match="menu path"):
        conn.print("/")
    with pytest.raises(TypeError):
        conn.add("/ppp/secret", name=None)  # type: ignore[arg-type]
    with pytest.raises(RouterCommandError, match="no such command prefix"):
        conn.print("/interface/bogus")


# -- connection loss, timeouts, retries -------------------------------------------------------


def test_dropped_connection_raises_connection_lost(router: RouterOSSimulator, conn: RouterConnection) -> None:
    router.drop_connection_after(1)
    conn.add("/ip/pool", name="a", ranges="10.0.0.2-10.0.0.254")
    with pytest.raises(RouterConnectionLost, match="may or may not have been applied") as info:
        conn.add("/ip/pool", name="b")
    assert info.value.retryable
    assert conn.closed
    with pytest.raises(RouterConnectionLost, match="closed"):
        conn.print("/ip/pool")


def test_fatal_mid_command_raises_connection_lost(router: RouterOSSimulator, conn: RouterConnection) -> None:
    router.drop_connection_after(0, fatal=True)
    with pytest.raises(RouterConnectionLost, match="dropped by test"):
        conn.print("/ip/pool")


def test_command_timeout_raises_connection_lost(router: RouterOSSimulator) -> None:
    router.hang_menus.add("/ppp/active")
    conn = connect("127.0.0.1", router.port, USER, PASSWORD, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(RouterConnectionLost, match="timed out"):
        conn.print("/ppp/active")
    assert time.monotonic() - started < 1


def test_with_retries_recovers_from_a_dropped_connection(router: RouterOSSimulator) -> None:
    router.seed("/ppp/profile", {"name": "10M"}, {"name": "20M"})
    router.drop_connection_after(1)
    attempts = []
    sleeps: list[float] = []

    def sync() -> list[str]:
        attempts.append(1)
        with open_conn(router) as conn:
            names = [row["name"] for row in conn.print("/ppp/profile")]
            conn.print("/ip/pool")  # the first attempt's connection drops here
            return names

    assert with_retries(sync, attempts=3, backoff=0.25, sleep=sleeps.append) == [
        "default",
        "default-encryption",
        "10M",
        "20M",
    ]
    assert len(attempts) == 2
    assert sleeps == [0.25]


def test_with_retries_gives_up_after_the_last_attempt(router: RouterOSSimulator) -> None:
    router.login_hangs = True
    sleeps: list[float] = []
    calls = []

    def sync() -> None:
        calls.append(1)
        connect("127.0.0.1", router.port, USER, PASSWORD, timeout=0.1)

    with pytest.raises(RouterUnreachable):
        with_retries(sync, attempts=3, backoff=1.0, sleep=sleeps.append)
    assert len(calls) == 3
    assert sleeps == [1.0, 2.0]  # exponential


def test_with_retries_does_not_retry_permanent_errors(router: RouterOSSimulator) -> None:
    calls = []

    def bad_login() -> None:
        calls.append(1)
        connect("127.0.0.1", router.port, USER, "wrong", timeout=2)

    def trap() -> None:
        calls.append(1)
        with open_conn(router) as conn:
            conn.remove("/ip/pool", "*99")

    for fn in (bad_login, trap):
        calls.clear()
        with pytest.raises(RouterError) as info:
            with_retries(fn, attempts=5, sleep=lambda _: None)
        assert not info.value.retryable
        assert len(calls) == 1


def test_with_retries_accepts_a_backoff_function() -> None:
    sleeps: list[float] = []
    results = iter([RouterConnectionLost("x"), RouterUnreachable("y"), "ok"])

    def flaky() -> str:
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return result

    assert with_retries(flaky, attempts=3, backoff=lambda n: n / 10, sleep=sleeps.append) == "ok"
    assert sleeps == [0.1, 0.2]
    with pytest.raises(ValueError, match="attempts"):
        with_retries(flaky, attempts=0)


# -- unknown input ------------------------------------------------------------------------------


def test_unknown_words_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mikrotik.client"):
        attrs = _parse_words(["=name=a", "=x==y", ".tag=3", "garbage", "=novalue", "==empty-key"], "test")
    assert attrs == {"name": "a", "x": "=y"}
    assert caplog.text.count("ignoring unexpected word") == 3


def test_empty_reply_of_routeros_7_18_is_understood() -> None:
    with RouterOSSimulator(username=USER, password=PASSWORD, empty_reply=True) as router, open_conn(router) as conn:
        assert conn.print("/ip/pool") == []
        conn.add("/ip/pool", name="a")
        assert [row["name"] for row in conn.print("/ip/pool")] == ["a"]


# -- api-ssl ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def test_api_ssl_without_verification(server_tls: ssl.SSLContext) -> None:
    with (
        RouterOSSimulator(username=USER, password=PASSWORD, ssl_context=server_tls) as router,
        open_conn(router, use_ssl=True, verify_tls=False) as conn,
    ):
        assert conn.identity() == "MikroTik"


def test_api_ssl_untrusted_certificate_is_a_permanent_tls_error(server_tls: ssl.SSLContext) -> None:
    with RouterOSSimulator(username=USER, password=PASSWORD, ssl_context=server_tls) as router:
        with pytest.raises(RouterTLSError, match="certificate") as info:
            open_conn(router, use_ssl=True, verify_tls=True)
        assert not info.value.retryable
