"""A MikroTik RouterOS API simulator for tests.

It speaks the real RouterOS API wire protocol (length-prefixed words, sentences
ended by an empty word, ``!re``/``!done``/``!trap``/``!fatal`` replies,
``.tag``), so librouteros and our ``mikrotik.client`` run against it unmodified.
It keeps an in-memory configuration tree (menu path -> list of item dicts, all
values strings, as RouterOS prints them) and offers hooks for tests: seed and
read the tree, inject ``!trap`` replies, drop a connection mid-sync, make the
login hang, make a menu hang, count commands per menu.

Usage::

    with RouterOSSimulator(username="api", password="secret") as router:
        api = librouteros.connect("127.0.0.1", "api", "secret", port=router.port)

It is a test double, not a RouterOS: attribute names are not validated, only
the behaviour a sync layer depends on is modelled (ids, name uniqueness,
boolean normalisation to ``true``/``false``, settings menus, kicking sessions).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import secrets
import select
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Self

logger = logging.getLogger(__name__)

# -- wire encoding -------------------------------------------------------------

MAX_WORD_SIZE = 64 * 1024 * 1024  # refuse absurd lengths instead of buffering gigabytes
ENCODING = "utf-8"
# surrogateescape round-trips any byte sequence (e.g. cp1252 comments) unchanged.
ERRORS = "surrogateescape"


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid RouterOS API word."""


def encode_length(length: int) -> bytes:
    """Encode a word length in the RouterOS API variable-length format (1 to 5 bytes)."""
    if length < 0:
        raise ValueError(f"negative length {length}")
    if length < 0x80:
        return length.to_bytes(1, "big")
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    if length <= 0xFFFFFFFF:
        return b"\xf0" + length.to_bytes(4, "big")
    raise ValueError(f"length {length} does not fit the RouterOS API encoding")


def length_size(first_byte: int) -> int:
    """How many bytes the length prefix starting with ``first_byte`` occupies."""
    if first_byte < 0x80:
        return 1
    if first_byte < 0xC0:
        return 2
    if first_byte < 0xE0:
        return 3
    if first_byte < 0xF0:
        return 4
    if first_byte == 0xF0:
        return 5
    # 0xF8..0xFF are reserved control bytes; 0xF1..0xF7 are undefined.
    raise ProtocolViolation(f"reserved control byte 0x{first_byte:02X}")


def decode_length(prefix: bytes) -> int:
    """Decode a complete length prefix (as delimited by :func:`length_size`)."""
    size = length_size(prefix[0])
    if len(prefix) != size:
        raise ProtocolViolation(f"length prefix needs {size} bytes, got {len(prefix)}")
    if size == 5:
        return int.from_bytes(prefix[1:], "big")
    mask = {1: 0x7F, 2: 0x3FFF, 3: 0x1FFFFF, 4: 0x0FFFFFFF}[size]
    return int.from_bytes(prefix, "big") & mask


def encode_word(word: str | bytes) -> bytes:
    raw = word if isinstance(word, bytes) else word.encode(ENCODING, ERRORS)
    return encode_length(len(raw)) + raw


def encode_sentence(words: Iterable[str | bytes]) -> bytes:
    return b"".join(encode_word(word) for word in words) + b"\x00"


class _PeerClosed(Exception):
    pass


class _WordReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _read_exact(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(min(count - len(data), 1 << 20))
            if not chunk:
                raise _PeerClosed
            data += chunk
        return bytes(data)

    def read_word(self) -> str:
        first = self._read_exact(1)
        size = length_size(first[0])
        prefix = first + self._read_exact(size - 1) if size > 1 else first
        length = decode_length(prefix)
        if length > MAX_WORD_SIZE:
            raise ProtocolViolation(f"word of {length} bytes exceeds the simulator limit")
        return self._read_exact(length).decode(ENCODING, ERRORS)

    def read_sentence(self) -> list[str]:
        words: list[str] = []
        while (word := self.read_word()) != "":
            words.append(word)
        return words


# -- menus ---------------------------------------------------------------------

LIST_VERBS = frozenset({"print", "get", "add", "set", "unset", "remove", "enable", "disable"})
ACTIVE_VERBS = frozenset({"print", "get", "remove"})  # sessions: read and kick only
SETTINGS_VERBS = frozenset({"print", "get", "set"})
READ_ONLY_VERBS = frozenset({"print", "get"})
DUPLICATE_NAME = "failure: already have such name"


@dataclass(frozen=True)
class MenuSpec:
    """How one RouterOS menu behaves in the simulator."""

    verbs: frozenset[str] = LIST_VERBS
    settings: bool = False  # a single-item menu: no .id, print returns one item
    unique: tuple[str, ...] = ()  # fields whose combined values must be unique
    duplicate_message: str = DUPLICATE_NAME
    defaults: Mapping[str, str] = field(default_factory=dict)
    booleans: frozenset[str] = frozenset({"disabled"})


MENUS: dict[str, MenuSpec] = {
    "/ppp/profile": MenuSpec(
        unique=("name",),
        defaults={
            "local-address": "",
            "remote-address": "",
            "rate-limit": "",
            "only-one": "default",
            "change-tcp-mss": "default",
            "use-compression": "default",
            "use-encryption": "default",
            "use-mpls": "default",
            "use-upnp": "default",
            "address-list": "",
            "on-up": "",
            "on-down": "",
            "default": "false",
        },
        booleans=frozenset({"default"}),
    ),
    "/ppp/secret": MenuSpec(
        unique=("name",),
        defaults={
            "service": "any",
            "caller-id": "",
            "password": "",
            "profile": "default",
            "routes": "",
            "limit-bytes-in": "0",
            "limit-bytes-out": "0",
            "disabled": "false",
        },
    ),
    "/ppp/active": MenuSpec(
        verbs=ACTIVE_VERBS,
        defaults={
            "name": "",
            "service": "pppoe",
            "caller-id": "",
            "encoding": "",
            "address": "",
            "uptime": "0s",
            "session-id": "",
            "limit-bytes-in": "0",
            "limit-bytes-out": "0",
            "radius": "false",
        },
        booleans=frozenset({"radius"}),
    ),
    "/ip/hotspot/user/profile": MenuSpec(
        unique=("name",),
        defaults={
            "shared-users": "1",
            "idle-timeout": "none",
            "keepalive-timeout": "2m",
            "status-autorefresh": "1m",
            "add-mac-cookie": "true",
            "mac-cookie-timeout": "3d",
            "transparent-proxy": "false",
            "default": "false",
        },
        booleans=frozenset({"default", "add-mac-cookie", "transparent-proxy"}),
    ),
    "/ip/hotspot/user": MenuSpec(
        unique=("name",),
        defaults={
            "server": "all",
            "profile": "default",
            "uptime": "0s",
            "bytes-in": "0",
            "bytes-out": "0",
            "packets-in": "0",
            "packets-out": "0",
            "dynamic": "false",
            "disabled": "false",
        },
        booleans=frozenset({"disabled", "dynamic"}),
    ),
    "/ip/hotspot/active": MenuSpec(
        verbs=ACTIVE_VERBS,
        defaults={
            "server": "hotspot1",
            "user": "",
            "domain": "",
            "address": "",
            "mac-address": "",
            "login-by": "http-chap",
            "uptime": "0s",
            "idle-time": "0s",
            "bytes-in": "0",
            "bytes-out": "0",
            "radius": "false",
        },
        booleans=frozenset({"radius"}),
    ),
    "/ip/pool": MenuSpec(unique=("name",), defaults={"ranges": "", "next-pool": "none"}, booleans=frozenset()),
    "/ipv6/pool": MenuSpec(
        unique=("name",),
        defaults={"prefix": "", "prefix-length": "64", "expires-after": "never", "dynamic": "false"},
        booleans=frozenset({"dynamic"}),
    ),
    "/radius": MenuSpec(
        defaults={
            "service": "",
            "called-id": "",
            "domain": "",
            "address": "",
            "secret": "",
            "authentication-port": "1812",
            "accounting-port": "1813",
            "timeout": "300ms",
            "accounting-backup": "false",
            "realm": "",
            "src-address": "0.0.0.0",
            "disabled": "false",
        },
        booleans=frozenset({"disabled", "accounting-backup"}),
    ),
    "/radius/incoming": MenuSpec(
        verbs=SETTINGS_VERBS,
        settings=True,
        defaults={"accept": "false", "port": "3799", "vrf": "main"},
        booleans=frozenset({"accept"}),
    ),
    "/ip/firewall/address-list": MenuSpec(
        unique=("address", "list"),
        duplicate_message="failure: already have such entry",
        defaults={"list": "", "address": "", "dynamic": "false", "disabled": "false"},
        booleans=frozenset({"disabled", "dynamic"}),
    ),
    "/queue/simple": MenuSpec(
        unique=("name",),
        defaults={
            "target": "",
            "parent": "none",
            "packet-marks": "",
            "priority": "8/8",
            "queue": "default-small/default-small",
            "limit-at": "0/0",
            "max-limit": "0/0",
            "burst-limit": "0/0",
            "burst-threshold": "0/0",
            "burst-time": "0s/0s",
            "dynamic": "false",
            "disabled": "false",
        },
        booleans=frozenset({"disabled", "dynamic"}),
    ),
    "/system/identity": MenuSpec(verbs=SETTINGS_VERBS, settings=True, defaults={"name": "MikroTik"}),
    "/system/resource": MenuSpec(verbs=READ_ONLY_VERBS, settings=True, booleans=frozenset()),
}

# Built-in items a fresh RouterOS has; they carry default=true and cannot be removed.
FACTORY_ITEMS: dict[str, list[dict[str, str]]] = {
    "/ppp/profile": [
        {".id": "*0", "name": "default", "default": "true"},
        {".id": "*FFFFFFFE", "name": "default-encryption", "use-encryption": "yes", "default": "true"},
    ],
    "/ip/hotspot/user/profile": [{".id": "*0", "name": "default", "default": "true"}],
}

TRUE_WORDS = frozenset({"yes", "true"})
FALSE_WORDS = frozenset({"no", "false"})


def format_uptime(seconds: float) -> str:
    """Format a duration the way RouterOS prints uptime, e.g. ``1w2d3h4m5s``."""
    remaining = int(seconds)
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        value, remaining = divmod(remaining, size)
        if value:
            parts.append(f"{value}{unit}")
    if remaining or not parts:
        parts.append(f"{remaining}s")
    return "".join(parts)


def _id_number(item_id: str) -> int | None:
    if not item_id.startswith("*"):
        return None
    try:
        return int(item_id[1:], 16)
    except ValueError:
        return None


# -- command handling ------------------------------------------------------------


class Trap(Exception):
    """A ``!trap`` reply to send for the current command."""

    def __init__(self, message: str, category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


class Command(NamedTuple):
    """One command the simulator received (for assertions in tests)."""

    menu: str
    verb: str
    attrs: dict[str, str]
    queries: tuple[str, ...]


@dataclass
class _Injection:
    menu: str
    name: str | None
    verb: str | None
    remaining: int
    message: str
    category: int | None


@dataclass
class _Drop:
    remaining: int
    apply: bool
    fatal: bool


@dataclass
class _Session:
    logged_in: bool = False
    user: str = ""
    challenge: bytes | None = None


_REPLY = "reply"
_DROP = "drop"  # close without answering
_CLOSE = "close"  # answer, then close
_HANG = "hang"  # never answer


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: RouterOSSimulator


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.simulator._serve(self.request)


class RouterOSSimulator:
    """An in-process RouterOS API server for tests.

    Start it with :meth:`start` (or use it as a context manager); it binds
    ``host`` on an ephemeral port exposed as :attr:`port`. One thread serves
    each connection; the tree and the hooks are guarded by one lock, so tests
    may seed and inspect it while clients are connected.

    Test hooks:

    * :meth:`seed`, :meth:`items`, :meth:`item`, :meth:`settings`, :meth:`reset`
      to write and read the configuration tree directly;
    * :meth:`inject_trap` to answer the next N commands on a menu (or on one
      named item of it) with ``!trap``;
    * :meth:`drop_connection_after` to close the connection after N more
      commands, optionally applying the command or sending ``!fatal`` first;
    * :attr:`login_hangs` to never answer ``/login``; :attr:`hang_menus` to
      never answer commands on the listed menus; :attr:`slow_menus` (menu ->
      seconds) to answer commands on a menu only after that delay;
    * :attr:`command_counts` (per menu), :attr:`commands` (full log),
      :attr:`connections_accepted`, :attr:`logins`, :meth:`reset_counts`.
    """

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "",
        host: str = "127.0.0.1",
        identity: str = "MikroTik",
        version: str = "7.16.2 (stable)",
        board_name: str = "CHR",
        factory_items: bool = True,
        legacy_login: bool = False,
        empty_reply: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Configure the simulated router.

        ``legacy_login`` behaves like RouterOS before 6.43 (challenge/response
        login only); ``empty_reply`` sends ``!empty`` for a print that matches
        nothing, as RouterOS 7.18+ does; ``ssl_context`` (a server context)
        makes it an api-ssl service.
        """
        self.users = {username: password}
        self.host = host
        self.port = 0
        self.legacy_login = legacy_login
        self.empty_reply = empty_reply
        self.ssl_context = ssl_context
        self.login_hangs = False
        self.hang_menus: set[str] = set()
        self.slow_menus: dict[str, float] = {}
        self.command_counts: Counter[str] = Counter()
        self.commands: list[Command] = []
        self.connections_accepted = 0
        self.logins = 0
        self._version = version
        self._board_name = board_name
        self._identity = identity
        self._factory_items = factory_items
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started_at = time.monotonic()
        self._tree: dict[str, list[dict[str, str]]] = {}
        self._next_id: dict[str, int] = {}
        self._seeded_ids: dict[str, int] = {}  # per menu, the highest id an item brought with it
        self._injections: list[_Injection] = []
        self._drop: _Drop | None = None
        self.reset()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        server = _Server((self.host, 0), _Handler)
        server.simulator = self
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="routeros-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every client connection."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- tree hooks ----------------------------------------------------------

    def reset(self) -> None:
        """Return to a factory configuration (built-in profiles only) and clear hooks."""
        with self._lock:
            self._tree = {menu: [] for menu in MENUS}
            self._next_id = dict.fromkeys(MENUS, 1)
            self._seeded_ids = {}
            self._injections = []
            self._drop = None
            for menu, spec in MENUS.items():
                if spec.settings:
                    self._tree[menu] = [dict(spec.defaults)]
            self._tree["/system/identity"][0]["name"] = self._identity
            self._tree["/system/resource"] = [
                {
                    "uptime": "0s",
                    "version": self._version,
                    "build-time": "2024-10-30 09:57:03",
                    "factory-software": "7.1",
                    "free-memory": "912261120",
                    "total-memory": "1073741824",
                    "cpu": "QEMU",
                    "cpu-count": "1",
                    "cpu-frequency": "2400",
                    "cpu-load": "3",
                    "free-hdd-space": "86769664",
                    "total-hdd-space": "134217728",
                    "architecture-name": "x86_64",
                    "board-name": self._board_name,
                    "platform": "MikroTik",
                }
            ]
            if self._factory_items:
                for menu, items in FACTORY_ITEMS.items():
                    for item in items:
                        self._tree[menu].append(self._with_defaults(menu, item))
                        self._seeded_ids[menu] = max(self._seeded_ids.get(menu, -1), _id_number(item[".id"]) or 0)

    def seed(self, menu: str, *items: Mapping[str, str]) -> list[str]:
        """Put items into a menu directly (no uniqueness check); returns their ids.

        Items may carry their own ``.id``; others get the next free one. On a
        settings menu the attributes are merged into its single item (read-only
        menus such as /system/resource included) and no ids are returned.
        """
        menu = self._menu_path(menu)
        spec = MENUS[menu]
        with self._lock:
            if spec.settings:
                for item in items:
                    self._tree[menu][0].update(self._normalise(spec, dict(item)))
                return []
            ids = []
            for item in items:
                new = self._with_defaults(menu, item)
                if ".id" not in new:
                    new = {".id": self._allocate_id(menu), **new}
                else:
                    number = _id_number(new[".id"]) or 0
                    self._seeded_ids[menu] = max(self._seeded_ids.get(menu, -1), number)
                self._tree[menu].append(new)
                ids.append(new[".id"])
            return ids

    def items(self, menu: str) -> list[dict[str, str]]:
        """A copy of every item in the menu, in order."""
        menu = self._menu_path(menu)
        with self._lock:
            return copy.deepcopy(self._tree[menu])

    def item(self, menu: str, name: str, *, key: str = "name") -> dict[str, str] | None:
        """A copy of the first item whose ``key`` equals ``name``, or None."""
        for item in self.items(menu):
            if item.get(key) == name:
                return item
        return None

    def settings(self, menu: str) -> dict[str, str]:
        """A copy of a settings menu's single item (with a live uptime on /system/resource)."""
        menu = self._menu_path(menu)
        with self._lock:
            return dict(self._settings_item(menu))

    # -- fault hooks ---------------------------------------------------------

    def inject_trap(
        self,
        menu: str,
        *,
        count: int = 1,
        name: str | None = None,
        verb: str | None = None,
        message: str = "failure: injected by test",
        category: int | None = None,
    ) -> None:
        """Answer the next ``count`` matching commands on ``menu`` with ``!trap``.

        With ``name``, only commands aimed at that item match: an ``add`` or
        ``set`` carrying ``=name=<name>``, or a ``set``/``remove``/... whose
        ``.id`` resolves to the item with that name. With ``verb``, only that
        command (``add``, ``set``, ``print``...). The command is not applied.
        """
        with self._lock:
            self._injections.append(
                _Injection(self._menu_path(menu), name, verb, count, message, category)
            )

    def drop_connection_after(self, commands: int, *, apply: bool = False, fatal: bool = False) -> None:
        """Answer ``commands`` more commands, then close the connection on the next one.

        Counts commands after login on any connection; fires once. The dropped
        command is not answered; with ``apply`` it is still carried out (the
        reply is what gets lost), with ``fatal`` a ``!fatal`` is sent first.
        """
        with self._lock:
            self._drop = _Drop(commands, apply, fatal)

    def reset_counts(self) -> None:
        with self._lock:
            self.command_counts.clear()
            self.commands.clear()

    # -- internals: tree -----------------------------------------------------

    @staticmethod
    def _menu_path(menu: str) -> str:
        path = "/" + "/".join(part for part in menu.replace(" ", "/").split("/") if part)
        if path not in MENUS:
            raise KeyError(f"the simulator has no menu {path!r}")
        return path

    def _allocate_id(self, menu: str) -> str:
        number = self._next_id[menu]
        # Ids are handed out in increasing order; only items seeded with their own id can be
        # in the way, so the menu is scanned only when one of those is at or above `number`.
        used = ({_id_number(item.get(".id", "")) for item in self._tree[menu]}
                if self._seeded_ids.get(menu, -1) >= number else set())
        while number in used:
            number += 1
        self._next_id[menu] = number + 1
        return f"*{number:X}"

    def _normalise(self, spec: MenuSpec, attrs: dict[str, str]) -> dict[str, str]:
        for key in spec.booleans & attrs.keys():
            value = attrs[key].lower()
            if value in TRUE_WORDS:
                attrs[key] = "true"
            elif value in FALSE_WORDS:
                attrs[key] = "false"
            else:
                raise Trap(f"input does not match any value of {key}", 1)
        return attrs

    def _with_defaults(self, menu: str, item: Mapping[str, str]) -> dict[str, str]:
        spec = MENUS[menu]
        given = self._normalise(spec, {str(k): str(v) for k, v in item.items()})
        # RouterOS prints .id and name first, then the menu's properties.
        result = {key: given.pop(key) for key in (".id", "name") if key in given}
        for key, value in spec.defaults.items():
            result.setdefault(key, given.pop(key, value))
        result.update(given)
        return result

    def _settings_item(self, menu: str) -> dict[str, str]:
        item = self._tree[menu][0]
        if menu == "/system/resource":
            item["uptime"] = format_uptime(time.monotonic() - self._started_at)
        return item

    def _resolve(self, menu: str, ids: str) -> list[dict[str, str]]:
        """Items addressed by a ``.id`` value: ``*1``, ``*a,*B`` or item names."""
        found = []
        for part in (p.strip() for p in ids.split(",")):
            number = _id_number(part)
            for item in self._tree[menu]:
                if (number is not None and _id_number(item.get(".id", "")) == number) or (
                    number is None and part and item.get("name") == part
                ):
                    found.append(item)
                    break
            else:
                raise Trap("no such item")
        return found

    def _check_unique(self, menu: str, candidate: Mapping[str, str], ignore: object = None) -> None:
        spec = MENUS[menu]
        if not spec.unique or not all(candidate.get(key) for key in spec.unique):
            return
        first, *rest = spec.unique
        value = candidate.get(first)
        for item in self._tree[menu]:
            if item.get(first) == value and item is not ignore and all(item.get(k) == candidate.get(k) for k in rest):
                raise Trap(spec.duplicate_message, 4)

    # -- internals: protocol -------------------------------------------------

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections_accepted += 1
        if self.ssl_context is not None:
            try:
                sock.settimeout(5)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except (ssl.SSLError, OSError) as exc:
                logger.info("TLS handshake failed: %s", exc)
                self._close(sock)
                return
        with self._lock:
            self._sockets.add(sock)
        reader = _WordReader(sock)
        session = _Session()
        try:
            while not self._stopping.is_set():
                words = reader.read_sentence()
                if not words:
                    continue  # RouterOS ignores empty sentences
                action, replies = self._handle(session, words)
                if action == _HANG:
                    self._hang(sock)
                    return
                if replies:
                    sock.sendall(b"".join(encode_sentence(reply) for reply in replies))
                if action in (_DROP, _CLOSE):
                    return
        except (_PeerClosed, ProtocolViolation, OSError) as exc:
            logger.debug("connection ended: %r", exc)
        finally:
            with self._lock:
                self._sockets.discard(sock)
            self._close(sock)

    def _hang(self, sock: socket.socket) -> None:
        """Stay silent until the client gives up or the simulator stops."""
        while not self._stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if not sock.recv(65536):
                        return
                except OSError:
                    return

    def _handle(self, session: _Session, words: list[str]) -> tuple[str, list[list[str]]]:
        command = words[0]
        attrs: dict[str, str] = {}
        queries: list[str] = []
        tag: str | None = None
        for word in words[1:]:
            if word.startswith("="):
                key, _, value = word[1:].partition("=")
                attrs[key] = value
            elif word.startswith("?"):
                queries.append(word[1:])
            elif word.startswith(".tag="):
                tag = word[5:]
            else:
                logger.debug("ignoring word %r", word)

        action, replies = self._dispatch(session, command, attrs, queries)
        if tag is not None:
            replies = [[reply[0], f".tag={tag}", *reply[1:]] for reply in replies]
        return action, replies

    def _dispatch(
        self, session: _Session, command: str, attrs: dict[str, str], queries: list[str]
    ) -> tuple[str, list[list[str]]]:
        if command == "/quit":
            return _CLOSE, [["!fatal", "session terminated on request"]]
        if command == "/login":
            if self.login_hangs:
                return _HANG, []
            return _REPLY, self._login(session, attrs)
        if not session.logged_in:
            return _REPLY, _trap_reply(Trap("not logged in"))
        if command == "/cancel":
            return _REPLY, [["!done"]]

        path = command.rstrip("/")
        menu, _, verb = path.rpartition("/")
        with self._lock:
            self.command_counts[menu] += 1
            self.commands.append(Command(menu, verb, dict(attrs), tuple(queries)))
            drop = self._drop
            if drop is not None:
                if drop.remaining > 0:
                    drop.remaining -= 1
                    drop = None
                else:
                    self._drop = None
        if drop is not None:
            if drop.apply:
                self._execute(menu, verb, attrs, queries)
            return _DROP, [["!fatal", "connection dropped by test"]] if drop.fatal else []
        if menu in self.hang_menus:
            return _HANG, []
        delay = self.slow_menus.get(menu)
        if delay:
            self._stopping.wait(delay)  # outside the lock: other connections go on meanwhile
        return _REPLY, self._execute(menu, verb, attrs, queries)

    def _login(self, session: _Session, attrs: dict[str, str]) -> list[list[str]]:
        name = attrs.get("name")
        if self.legacy_login:
            # RouterOS < 6.43: anything but a challenge response gets a new challenge.
            if name is None or "response" not in attrs:
                session.challenge = secrets.token_bytes(16)
                return [["!done", f"=ret={session.challenge.hex()}"]]
            password = self.users.get(name)
            challenge, session.challenge = session.challenge, None
            if password is not None and challenge is not None:
                digest = hashlib.md5(b"\x00" + password.encode() + challenge, usedforsecurity=False)
                if attrs["response"] == "00" + digest.hexdigest():
                    return self._logged_in(session, name)
            return _trap_reply(Trap("cannot log in"))
        if name is not None and self.users.get(name) == attrs.get("password") and "password" in attrs:
            return self._logged_in(session, name)
        return _trap_reply(Trap("invalid user name or password (6)"))

    def _logged_in(self, session: _Session, name: str) -> list[list[str]]:
        session.logged_in = True
        session.user = name
        with self._lock:
            self.logins += 1
        return [["!done"]]

    def _execute(self, menu: str, verb: str, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        spec = MENUS.get(menu)
        if spec is None:
            return _trap_reply(Trap("no such command prefix"))
        if verb not in spec.verbs:
            return _trap_reply(Trap("no such command"))
        with self._lock:
            try:
                self._check_injection(menu, verb, attrs)
                handler = getattr(self, f"_do_{verb}")
                return handler(menu, spec, attrs, queries)
            except Trap as trap:
                return _trap_reply(trap)

    def _check_injection(self, menu: str, verb: str, attrs: dict[str, str]) -> None:
        for injection in self._injections:
            if injection.menu != menu or (injection.verb is not None and injection.verb != verb):
                continue
            if injection.name is not None:
                names = {attrs.get("name")}
                target = attrs.get(".id") or attrs.get("numbers")
                if target:
                    with contextlib.suppress(Trap):
                        names.update(item.get("name") for item in self._resolve(menu, target))
                if injection.name not in names:
                    continue
            injection.remaining -= 1
            if injection.remaining <= 0:
                self._injections.remove(injection)
            raise Trap(injection.message, injection.category)

    def _items_for(self, menu: str, spec: MenuSpec) -> list[dict[str, str]]:
        return [self._settings_item(menu)] if spec.settings else self._tree[menu]

    def _do_print(
        self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]
    ) -> list[list[str]]:
        matched = [item for item in self._items_for(menu, spec) if _matches(queries, item, spec)]
        if "count-only" in attrs:
            return [["!done", f"=ret={len(matched)}"]]
        proplist = [p for p in attrs[".proplist"].split(",") if p] if ".proplist" in attrs else None
        replies = []
        for item in matched:
            keys = item.keys() if proplist is None else [k for k in proplist if k in item]
            replies.append(["!re", *(f"={key}={item[key]}" for key in keys)])
        if not matched and self.empty_reply:
            replies.append(["!empty"])
        return [*replies, ["!done"]]

    def _do_get(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        if spec.settings:
            item = self._settings_item(menu)
        else:
            item = self._resolve(menu, attrs.get(".id") or attrs.get("number") or "")[0]
        prop = attrs.get("value-name", "")
        if prop not in item:
            raise Trap("no such property", 1)
        return [["!done", f"=ret={item[prop]}"]]

    def _do_add(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        given = {k: v for k, v in attrs.items() if not k.startswith(".")}
        new = self._with_defaults(menu, given)
        self._check_unique(menu, new)
        new = {".id": self._allocate_id(menu), **new}
        self._tree[menu].append(new)
        return [["!done", f"=ret={new['.id']}"]]

    def _do_set(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        changes = self._normalise(spec, {k: v for k, v in attrs.items() if not k.startswith(".") and k != "numbers"})
        if spec.settings:
            self._tree[menu][0].update(changes)
            return [["!done"]]
        targets = self._resolve(menu, attrs.get(".id") or attrs.get("numbers") or "")
        for item in targets:
            self._check_unique(menu, {**item, **changes}, ignore=item)
        for item in targets:
            item.update(changes)
        return [["!done"]]

    def _do_unset(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        targets = self._resolve(menu, attrs.get(".id") or attrs.get("numbers") or "")
        prop = attrs.get("value-name", "")
        for item in targets:
            if prop in spec.defaults:
                item[prop] = spec.defaults[prop]
            else:
                item.pop(prop, None)
        return [["!done"]]

    def _do_remove(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        targets = self._resolve(menu, attrs.get(".id") or attrs.get("numbers") or "")
        if any(item.get("default") == "true" for item in targets):
            raise Trap("failure: can not remove default item", 4)
        self._tree[menu] = [item for item in self._tree[menu] if all(item is not t for t in targets)]
        return [["!done"]]

    def _do_enable(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        for item in self._resolve(menu, attrs.get(".id") or attrs.get("numbers") or ""):
            item["disabled"] = "false"
        return [["!done"]]

    def _do_disable(self, menu: str, spec: MenuSpec, attrs: dict[str, str], queries: list[str]) -> list[list[str]]:
        for item in self._resolve(menu, attrs.get(".id") or attrs.get("numbers") or ""):
            item["disabled"] = "true"
        return [["!done"]]


def _trap_reply(trap: Trap) -> list[list[str]]:
    words = ["!trap"]
    if trap.category is not None:
        words.append(f"=category={trap.category}")
    words.append(f"=message={trap.message}")
    # RouterOS always ends a trapped command with !done; librouteros waits for it.
    return [words, ["!done"]]


# -- queries ---------------------------------------------------------------------


def _compare(left: str, right: str) -> int:
    try:
        a: Any = int(left)
        b: Any = int(right)
    except ValueError:
        a, b = left, right
    return (a > b) - (a < b)


def _equals(spec: MenuSpec, item: Mapping[str, str], name: str, value: str) -> bool:
    if name not in item:
        return False
    actual = item[name]
    if name == ".id":
        return _id_number(actual) == _id_number(value)
    if name in spec.booleans:
        lowered = value.lower()
        value = "true" if lowered in TRUE_WORDS else "false" if lowered in FALSE_WORDS else value
    return actual == value


def _apply_operations(ops: str, stack: list[bool]) -> None:
    """Evaluate a ``?#`` word: ``|`` or, ``&`` and, ``!`` not, ``.`` dup, digits = stack index."""
    i = 0
    try:
        while i < len(ops):
            char = ops[i]
            if char.isdigit():
                end = i
                while end < len(ops) and ops[end].isdigit():
                    end += 1
                value = stack[-1 - int(ops[i:end])]
                if end == len(ops):
                    stack[:] = [value]  # an index ending the word replaces the stack
                else:
                    stack.append(value)
                i = end
                continue
            if char in "|&":
                right, left = stack.pop(), stack.pop()
                stack.append((left or right) if char == "|" else (left and right))
            elif char == "!":
                stack.append(not stack.pop())
            elif char == ".":
                stack.append(stack[-1])
            else:
                raise Trap(f"unknown query operation {char!r}")
            i += 1
    except IndexError:
        raise Trap("invalid query: stack underflow") from None


def _matches(queries: list[str], item: Mapping[str, str], spec: MenuSpec) -> bool:
    """RouterOS query semantics: each word pushes a result; the item matches if all are true."""
    stack: list[bool] = []
    for query in queries:
        if query.startswith("#"):
            _apply_operations(query[1:], stack)
        elif query.startswith("-"):
            stack.append(query[1:] not in item)
        elif query[:1] in ("<", ">"):
            name, _, value = query[1:].partition("=")
            if name not in item:
                stack.append(False)
            else:
                order = _compare(item[name], value)
                stack.append(order < 0 if query[0] == "<" else order > 0)
        else:
            body = query.removeprefix("=")
            if "=" in body:
                name, _, value = body.partition("=")
                stack.append(_equals(spec, item, name, value))
            else:
                stack.append(body in item)
    return all(stack)
