"""The RouterOS API simulator speaks the real wire protocol: raw bytes and unmodified librouteros."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import librouteros
import pytest
from librouteros.exceptions import ConnectionClosed, FatalError, TrapError
from librouteros.login import plain
from librouteros.protocol import encode_length as lib_encode_length
from librouteros.query import And, Key, Or

from tests.peers.routeros import (
    ProtocolViolation,
    RouterOSSimulator,
    decode_length,
    encode_length,
    encode_sentence,
    format_uptime,
    length_size,
)

USER, PASSWORD = "api", "s3cret"


@pytest.fixture
def router() -> Iterator[RouterOSSimulator]:
    with RouterOSSimulator(username=USER, password=PASSWORD) as sim:
        yield sim


@pytest.fixture
def api(router: RouterOSSimulator) -> Iterator[librouteros.Api]:
    connection = librouteros.connect("127.0.0.1", USER, PASSWORD, port=router.port, timeout=5, login_method=plain)
    yield connection
    connection.close()


class RawClient:
    """A minimal byte-level client, independent of both the simulator and librouteros."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, *words: str | bytes) -> None:
        self.sock.sendall(encode_sentence(words))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def read_word_raw(self) -> tuple[bytes, bytes]:
        """Return (length prefix bytes, word bytes)."""
        first = self._read(1)
        size = length_size(first[0])
        prefix = first + (self._read(size - 1) if size > 1 else b"")
        return prefix, self._read(decode_length(prefix))

    def read_sentence(self) -> list[str]:
        words = []
        while True:
            _, word = self.read_word_raw()
            if not word:
                return words
            words.append(word.decode())

    def read_until_done(self) -> list[list[str]]:
        sentences = []
        while True:
            sentence = self.read_sentence()
            sentences.append(sentence)
            if sentence[0] in ("!done", "!fatal"):
                return sentences

    def login(self) -> None:
        self.send("/login", f"=name={USER}", f"=password={PASSWORD}")
        assert self.read_until_done() == [["!done"]]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(router: RouterOSSimulator) -> Iterator[RawClient]:
    client = RawClient(router.port)
    yield client
    client.close()


# -- word length encoding ---------------------------------------------------------

BOUNDARIES = [
    (0, b"\x00"),
    (0x7F, b"\x7f"),
    (0x80, b"\x80\x80"),
    (200, b"\x80\xc8"),
    (0x3FFF, b"\xbf\xff"),
    (0x4000, b"\xc0\x40\x00"),
    (20000, b"\xc0\x4e\x20"),
    (0x1FFFFF, b"\xdf\xff\xff"),
    (0x200000, b"\xe0\x20\x00\x00"),
    (0xFFFFFFF, b"\xef\xff\xff\xff"),
    (0x10000000, b"\xf0\x10\x00\x00\x00"),
    (0xFFFFFFFF, b"\xf0\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("length", "encoded"), BOUNDARIES)
def test_length_encoding_all_five_classes(length: int, encoded: bytes) -> None:
    assert encode_length(length) == encoded
    assert length_size(encoded[0]) == len(encoded)
    assert decode_length(encoded) == length
    if length < 0x10000000:  # librouteros implements the four shorter classes
        assert lib_encode_length(length) == encoded


def test_length_encoding_rejects_reserved_control_bytes() -> None:
    with pytest.raises(ProtocolViolation):
        length_size(0xF8)
    with pytest.raises(ValueError, match="does not fit"):
        encode_length(0x100000000)


@pytest.mark.parametrize(("size", "prefix_len"), [(100, 1), (200, 2), (20000, 3), (2_200_000, 4)])
def test_words_of_each_length_class_round_trip_over_the_wire(raw: RawClient, size: int, prefix_len: int) -> None:
    raw.login()
    comment = "x" * (size - len("=comment="))
    raw.send("/ppp/secret/add", "=name=big", f"=comment={comment}")
    assert raw.read_until_done() == [["!done", "=ret=*1"]]
    raw.send("/ppp/secret/print", "=.proplist=comment")
    prefix, word = raw.read_word_raw()
    assert word == b"!re"
    prefix, word = raw.read_word_raw()
    assert len(word) == size
    assert len(prefix) == prefix_len
    assert prefix == encode_length(size)
    assert raw.read_word_raw() == (b"\x00", b"")  # end of sentence
    assert raw.read_until_done() == [["!done"]]


def test_five_byte_length_prefix_is_accepted_on_the_wire(raw: RawClient) -> None:
    raw.login()
    word = b"=name=five"
    # A 0xF0-prefixed (5-byte) length for a short word: the decoder must honour the class.
    command = b"/ppp/secret/add"
    raw.send_raw(encode_length(len(command)) + command + b"\xf0" + len(word).to_bytes(4, "big") + word + b"\x00")
    assert raw.read_until_done() == [["!done", "=ret=*1"]]


def test_reserved_control_byte_closes_the_connection(router: RouterOSSimulator, raw: RawClient) -> None:
    raw.login()
    raw.send_raw(b"\xf8")
    with pytest.raises(ConnectionError):
        raw.read_sentence()


# -- login, tags, fatal ----------------------------------------------------------------


def test_raw_login_ok_and_bad(router: RouterOSSimulator, raw: RawClient) -> None:
    raw.send("/system/identity/print")
    assert raw.read_until_done() == [["!trap", "=message=not logged in"], ["!done"]]
    raw.send("/login", f"=name={USER}", "=password=wrong")
    assert raw.read_until_done() == [["!trap", "=message=invalid user name or password (6)"], ["!done"]]
    raw.login()
    raw.send("/system/identity/print")
    assert raw.read_until_done() == [["!re", "=name=MikroTik"], ["!done"]]
    assert router.logins == 1


def test_tag_is_echoed_on_every_reply(router: RouterOSSimulator, raw: RawClient) -> None:
    raw.login()
    router.seed("/ip/pool", {"name": "a", "ranges": "10.0.0.2-10.0.0.9"}, {"name": "b"})
    raw.send("/ip/pool/print", ".tag=7", "=.proplist=name")
    assert raw.read_until_done() == [["!re", ".tag=7", "=name=a"], ["!re", ".tag=7", "=name=b"], ["!done", ".tag=7"]]
    raw.send("/ip/pool/remove", "=.id=*99", ".tag=abc")
    assert raw.read_until_done() == [["!trap", ".tag=abc", "=message=no such item"], ["!done", ".tag=abc"]]


def test_quit_answers_fatal_and_closes(raw: RawClient) -> None:
    raw.login()
    raw.send("/quit")
    assert raw.read_until_done() == [["!fatal", "session terminated on request"]]
    with pytest.raises(ConnectionError):
        raw.read_sentence()


def test_librouteros_bad_login_raises_trap(router: RouterOSSimulator) -> None:
    with pytest.raises(TrapError, match=r"invalid user name or password \(6\)"):
        librouteros.connect("127.0.0.1", USER, "nope", port=router.port, timeout=5, login_method=plain)


def test_legacy_login_accepts_librouteros_token_method() -> None:
    with RouterOSSimulator(username=USER, password=PASSWORD, legacy_login=True) as router:
        api = librouteros.connect("127.0.0.1", USER, PASSWORD, port=router.port, login_method=librouteros.token)
        assert tuple(api("/system/identity/print")) == ({"name": "MikroTik"},)
        api.close()
        with pytest.raises(TrapError, match="cannot log in"):
            librouteros.connect("127.0.0.1", USER, "bad", port=router.port, login_method=librouteros.token)


def test_login_hang_makes_librouteros_time_out(router: RouterOSSimulator) -> None:
    router.login_hangs = True
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        librouteros.connect("127.0.0.1", USER, PASSWORD, port=router.port, timeout=0.3, login_method=plain)
    assert time.monotonic() - started < 2


# -- librouteros against the configuration tree -------------------------------------------


def test_librouteros_add_print_set_remove(router: RouterOSSimulator, api: librouteros.Api) -> None:
    secrets = api.path("ppp", "secret")
    first = secrets.add(name="alice", password="pw1", profile="10M")
    second = secrets.add(name="bob", password="pw2", disabled=True)
    assert (first, second) == ("*1", "*2")
    rows = {row["name"]: row for row in secrets}
    assert rows["alice"]["profile"] == "10M"
    assert rows["alice"]["service"] == "any"  # defaults are printed like RouterOS does
    assert rows["bob"]["disabled"] is True  # stored as 'true', librouteros casts it
    assert router.item("/ppp/secret", "bob")["disabled"] == "true"

    secrets.update(**{".id": first, "profile": "20M", "comment": "upgraded"})
    assert router.item("/ppp/secret", "alice")["profile"] == "20M"
    secrets.remove(first)
    assert [row["name"] for row in secrets] == ["bob"]
    assert secrets.add(name="carol") == "*3"  # ids are never reused


def test_ids_are_hex_and_addressable_case_insensitively(router: RouterOSSimulator, api: librouteros.Api) -> None:
    pools = api.path("ip", "pool")
    ids = [pools.add(name=f"p{n}", ranges=f"10.{n}.0.1-10.{n}.0.9") for n in range(11)]
    assert ids[9:] == ["*A", "*B"]
    pools.update(**{".id": "*a", "comment": "tenth"})
    assert router.item("/ip/pool", "p9")["comment"] == "tenth"
    pools.remove("*A", "*b")
    assert len(router.items("/ip/pool")) == 9


def test_queries_and_proplist(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.seed(
        "/ppp/secret",
        {"name": "a", "profile": "10M", "comment": "vip"},
        {"name": "b", "profile": "10M", "disabled": "yes"},
        {"name": "c", "profile": "20M"},
        {"name": "d", "profile": "30M", "limit-bytes-in": "500"},
    )
    secrets = api.path("ppp", "secret")
    name, profile, disabled = Key("name"), Key("profile"), Key("disabled")
    limit = Key("limit-bytes-in")

    def names(query: object) -> list[str]:
        return [row["name"] for row in query]  # type: ignore[attr-defined]

    assert list(secrets.select(name).where(profile == "10M")) == [{"name": "a"}, {"name": "b"}]
    assert names(secrets.select(name).where(profile != "10M")) == ["c", "d"]
    assert names(secrets.select(name).where(profile.In("20M", "30M"))) == ["c", "d"]
    assert names(secrets.select(name).where(And(profile == "10M", disabled == "no"))) == ["a"]
    assert names(secrets.select(name).where(Or(name == "a", name == "c", name == "d"))) == ["a", "c", "d"]
    assert names(secrets.select(name).where(limit > 100)) == ["d"]
    assert names(secrets.select(name).where(limit < 100)) == ["a", "b", "c"]
    # The forms librouteros has no helper for: ?name=value, ?-name, ?name and stack indexes.
    assert names(api.rawCmd("/ppp/secret/print", "?profile=20M")) == ["c"]
    assert names(api.rawCmd("/ppp/secret/print", "?-comment")) == ["b", "c", "d"]
    assert names(api.rawCmd("/ppp/secret/print", "?comment")) == ["a"]
    assert names(api.rawCmd("/ppp/secret/print", "?name=a", "?name=b", "?#|!")) == ["c", "d"]
    assert names(api.rawCmd("/ppp/secret/print", "?name=a", "?name=zzz", "?#1")) == ["a"]
    assert tuple(api("/ppp/secret/print", **{"count-only": ""})) == ({"ret": 4},)


def test_duplicate_name_is_a_trap_and_the_connection_survives(api: librouteros.Api) -> None:
    profiles = api.path("ppp", "profile")
    profiles.add(name="10M")
    with pytest.raises(TrapError, match="failure: already have such name"):
        profiles.add(name="10M")
    pid = profiles.add(name="20M")
    with pytest.raises(TrapError, match="already have such name"):
        profiles.update(**{".id": pid, "name": "10M"})
    lists = api.path("ip", "firewall", "address-list")
    lists.add(list="expired", address="10.0.0.5")
    lists.add(list="blocked", address="10.0.0.5")  # same address, other list: fine
    with pytest.raises(TrapError, match="already have such entry"):
        lists.add(list="expired", address="10.0.0.5")
    assert len(list(profiles)) == 4  # two built-in + 10M + 20M


def test_errors_for_missing_items_unknown_commands_and_builtins(api: librouteros.Api) -> None:
    with pytest.raises(TrapError, match="no such item"):
        api.path("queue", "simple").remove("*7")
    with pytest.raises(TrapError, match="no such command prefix"):
        tuple(api("/no/such/menu/print"))
    with pytest.raises(TrapError, match="no such command"):
        tuple(api("/ppp/active/add", name="x"))
    with pytest.raises(TrapError, match="no such command"):
        tuple(api("/system/resource/set", **{"cpu-load": "1"}))
    with pytest.raises(TrapError, match="can not remove default"):
        api.path("ppp", "profile").remove("*0")
    with pytest.raises(TrapError, match="input does not match any value of disabled"):
        api.path("ppp", "secret").add(name="x", disabled="maybe")


def test_settings_menus(router: RouterOSSimulator, api: librouteros.Api) -> None:
    incoming = api.path("radius", "incoming")
    assert list(incoming) == [{"accept": False, "port": 3799, "vrf": "main"}]
    incoming.update(accept=True, port=1700)
    assert router.settings("/radius/incoming") == {"accept": "true", "port": "1700", "vrf": "main"}
    api.path("system", "identity").update(name="core-1")
    assert tuple(api("/system/identity/get", **{"value-name": "name"})) == ({"ret": "core-1"},)
    router.seed("/system/resource", {"cpu-load": "97"})
    (resource,) = tuple(api.path("system", "resource"))
    assert resource["cpu-load"] == 97
    assert {"version", "uptime", "free-memory", "board-name"} <= resource.keys()
    assert format_uptime(694861) == "1w1d1h1m1s"
    assert format_uptime(0) == "0s"


def test_kicking_an_active_session(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.seed(
        "/ppp/active",
        {"name": "alice", "address": "100.64.0.2", "caller-id": "AA:BB:CC:00:00:01"},
        {"name": "bob", "address": "100.64.0.3"},
    )
    (hotspot_id,) = router.seed("/ip/hotspot/active", {"user": "guest", "address": "10.5.50.9"})
    active = api.path("ppp", "active")
    (alice,) = [row for row in active if row["name"] == "alice"]
    tuple(api("/ppp/active/remove", **{".id": alice[".id"]}))
    assert [row["name"] for row in router.items("/ppp/active")] == ["bob"]
    api.path("ip", "hotspot", "active").remove(hotspot_id)
    assert router.items("/ip/hotspot/active") == []


# -- test hooks ---------------------------------------------------------------------------


def test_injected_trap_hits_only_the_targeted_item(router: RouterOSSimulator, api: librouteros.Api) -> None:
    users = api.path("ip", "hotspot", "user")
    router.inject_trap("/ip/hotspot/user", name="bad", count=2, message="failure: bad profile")
    assert users.add(name="good1") == "*1"
    with pytest.raises(TrapError, match="bad profile"):
        users.add(name="bad")
    assert users.add(name="good2") == "*2"
    with pytest.raises(TrapError, match="bad profile"):
        users.add(name="bad")
    assert users.add(name="bad") == "*3"  # the injection is used up
    router.inject_trap("/ip/hotspot/user", name="good1")
    with pytest.raises(TrapError, match="injected"):
        users.update(**{".id": "*1", "comment": "x"})  # aimed at good1 through its id
    users.update(**{".id": "*2", "comment": "x"})
    assert [u["name"] for u in router.items("/ip/hotspot/user")] == ["good1", "good2", "bad"]


def test_injected_trap_for_a_whole_menu_and_verb(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.inject_trap("/queue/simple", verb="print", category=4)
    api.path("queue", "simple").add(name="q1", target="10.0.0.1/32")
    with pytest.raises(TrapError) as info:
        list(api.path("queue", "simple"))
    assert info.value.category == 4
    assert len(list(api.path("queue", "simple"))) == 1


def test_drop_connection_after_n_commands(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.drop_connection_after(2)
    pools = api.path("ip", "pool")
    pools.add(name="a")
    pools.add(name="b")
    with pytest.raises(ConnectionClosed):
        pools.add(name="c")
    assert [p["name"] for p in router.items("/ip/pool")] == ["a", "b"]
    again = librouteros.connect("127.0.0.1", USER, PASSWORD, port=router.port, login_method=plain)
    assert again.path("ip", "pool").add(name="c") == "*3"  # the hook fired once
    again.close()


def test_drop_can_apply_the_command_or_send_fatal(router: RouterOSSimulator) -> None:
    router.drop_connection_after(0, apply=True, fatal=True)
    api = librouteros.connect("127.0.0.1", USER, PASSWORD, port=router.port, login_method=plain)
    with pytest.raises(FatalError, match="dropped by test"):
        api.path("ip", "pool").add(name="lost-reply")
    assert router.item("/ip/pool", "lost-reply") is not None


def test_hanging_menu_times_out(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.hang_menus.add("/ppp/active")
    api.protocol.transport.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        list(api.path("ppp", "active"))


def test_command_counts_and_log(router: RouterOSSimulator, api: librouteros.Api) -> None:
    router.reset_counts()
    api.path("ppp", "profile").add(name="x")
    list(api.path("ppp", "profile"))
    list(api.path("ip", "pool"))
    assert router.command_counts == {"/ppp/profile": 2, "/ip/pool": 1}
    assert router.commands[0].verb == "add"
    assert router.commands[0].attrs == {"name": "x"}
    assert router.connections_accepted == 1


def test_seed_reset_and_factory_items(router: RouterOSSimulator) -> None:
    assert [p["name"] for p in router.items("/ppp/profile")] == ["default", "default-encryption"]
    ids = router.seed("/ppp/profile", {"name": "a"}, {".id": "*10", "name": "b"})
    assert ids == ["*1", "*10"]
    router.reset()
    assert len(router.items("ppp/profile")) == 2
    with pytest.raises(KeyError):
        router.items("/interface")
    with RouterOSSimulator(factory_items=False) as bare:
        assert bare.items("/ppp/profile") == []


def test_empty_reply_like_routeros_7_18() -> None:
    with RouterOSSimulator(empty_reply=True) as router:
        client = RawClient(router.port)
        client.send("/login", "=name=admin", "=password=")
        assert client.read_until_done() == [["!done"]]
        client.send("/ip/pool/print")
        assert client.read_until_done() == [["!empty"], ["!done"]]
        client.close()
