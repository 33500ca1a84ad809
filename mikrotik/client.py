"""RouterOS API client: the only code that talks to MikroTik routers.

A thin layer over librouteros that guarantees:

* explicit timeouts: :func:`connect` (TCP connect, TLS handshake and login
  together) finishes or fails within ``timeout`` seconds, and every later
  read or write on the socket is bounded by the same value;
* one error hierarchy, split by what the caller should do next::

      RouterError                  base class, never raised itself
      +-- RouterUnreachable        transient: refused, timed out, reset during login
      +-- RouterConnectionLost     transient: the connection died mid-command
      +-- RouterAuthError          permanent: bad credentials / API access denied
      +-- RouterTLSError           permanent: certificate or TLS setup problem
      +-- RouterCommandError       permanent for that item: the router said !trap

  ``exc.retryable`` tells them apart; :func:`with_retries` retries only the
  transient ones;
* values stay the strings RouterOS sends (``'true'``, ``'10'``, ``'1M/2M'``):
  librouteros' conversion to bool/int is bypassed so the sync layer compares
  desired and actual values as strings;
* unknown input from a router (unexpected reply words, malformed attribute
  words, RouterOS 7.18+ ``!empty``) is logged and skipped, never raised.

A :class:`RouterConnection` is not thread-safe: use one per thread or task.
After a :class:`RouterConnectionLost` it is closed for good; open a new one.
"""

from __future__ import annotations

import binascii
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self, TypeVar

import librouteros
from librouteros.api import Api
from librouteros.exceptions import ConnectionClosed, FatalError, LibRouterosError
from librouteros.login import encode_password
from librouteros.protocol import ApiProtocol, encode_sentence

logger = logging.getLogger(__name__)

T = TypeVar("T")
Value = str | int | bool
Row = dict[str, str]

DEFAULT_PORT = 8728
DEFAULT_TLS_PORT = 8729

_AUTH_HINT = (
    "Check the API user's name, password and group (it needs the 'api', 'read' and "
    "'write' policies) and that '/ip service' api/api-ssl has an 'address' list that "
    "includes this server."
)
_REACH_HINT = (
    "Check that '/ip service' api (8728) or api-ssl (8729) is enabled on that port, "
    "that its 'address' list includes this server (a router that excludes it may accept "
    "the TCP connection and then never answer) and that no firewall rule drops it."
)


# -- errors ----------------------------------------------------------------------


class RouterError(Exception):
    """Base of every error this module raises; ``retryable`` says if trying again may help."""

    retryable: bool = False

    def __init__(self, message: str, *, host: str = "", port: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.port = port


class RouterUnreachable(RouterError):
    """Could not connect or log in in time (refused, timed out, reset). Transient."""

    retryable = True


class RouterConnectionLost(RouterError):
    """The connection broke during a command; whether it was applied is unknown. Transient."""

    retryable = True


class RouterAuthError(RouterError):
    """The router refused the login. Permanent until an operator fixes the credentials or access."""


class RouterTLSError(RouterError):
    """The api-ssl handshake failed (untrusted certificate, no common cipher). Permanent."""


class RouterCommandError(RouterError):
    """The router answered one command with ``!trap``. Permanent for that item.

    The connection stays usable. ``menu`` is the menu path (``/ppp/secret``),
    ``command`` the full command word, ``category`` RouterOS' trap category if sent.
    """

    def __init__(
        self,
        message: str,
        *,
        menu: str,
        command: str,
        category: str | None = None,
        host: str = "",
        port: int = 0,
    ) -> None:
        super().__init__(message, host=host, port=port)
        self.menu = menu
        self.command = command
        self.category = category

    def __str__(self) -> str:
        return f"{self.command} on {self.host}:{self.port}: {self.message}"


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a router error that a later attempt may not hit."""
    return isinstance(exc, RouterError) and exc.retryable


# -- wire helpers ----------------------------------------------------------------


@dataclass
class _Reply:
    rows: list[Row] = field(default_factory=list)
    done: Row = field(default_factory=dict)
    traps: list[Row] = field(default_factory=list)


def _parse_words(words: Sequence[str], where: str) -> Row:
    """Turn ``=key=value`` words into a dict of strings; log and skip anything else."""
    attrs: Row = {}
    for word in words:
        if word.startswith("="):
            key, sep, value = word[1:].partition("=")
            if key and sep:
                attrs[key] = value
                continue
        elif word.startswith(".tag="):
            continue
        logger.warning("RouterOS %s: ignoring unexpected word %r", where, word[:200])
    return attrs


def _read_reply(protocol: ApiProtocol, where: str) -> _Reply:
    """Read sentences until ``!done``. Transport errors propagate to the caller."""
    reply = _Reply()
    while True:
        try:
            reply_word, words = protocol.readSentence()
        except IndexError:
            # librouteros indexes sentence[0]; an empty sentence is noise, not a reply.
            logger.warning("RouterOS %s: ignoring an empty sentence", where)
            continue
        attrs = _parse_words(words, where)
        if reply_word == "!re":
            reply.rows.append(attrs)
        elif reply_word == "!trap":
            reply.traps.append(attrs)
        elif reply_word == "!done":
            reply.done = attrs
            return reply
        elif reply_word != "!empty":  # RouterOS 7.18+ says !empty for a print with no rows
            logger.warning("RouterOS %s: ignoring unexpected reply %r %r", where, reply_word, attrs)


def _trap_message(traps: Sequence[Row]) -> str:
    return "; ".join(trap.get("message", "(no message)") for trap in traps)


def _api_value(value: Value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"RouterOS values must be str, int or bool, not {type(value).__name__}")


def _menu(menu: str) -> str:
    """Normalise '/ppp/profile', 'ppp/profile/' or '/ppp profile' to '/ppp/profile'."""
    parts = [part for part in menu.replace(" ", "/").split("/") if part]
    if not parts or any("=" in part or "?" in part for part in parts):
        raise ValueError(f"not a RouterOS menu path: {menu!r}")
    return "/" + "/".join(parts)


def _login(api: Api, username: str, password: str, *, host: str, port: int) -> None:
    """Log in with the 6.43+ plain method; fall back to challenge/response for older routers.

    The sentence is the one librouteros.login.plain sends, but written straight
    to the transport: librouteros' debug log would otherwise print the password.
    """
    protocol = api.protocol
    protocol.transport.write(
        encode_sentence("/login", f"=name={username}", f"=password={password}", encoding=protocol.encoding)
    )
    reply = _read_reply(protocol, f"{host}:{port} /login")
    if not reply.traps and "ret" in reply.done:
        # RouterOS before 6.43 ignores the password and answers with a challenge.
        logger.warning("Router %s:%s runs RouterOS older than 6.43; using the legacy login", host, port)
        try:
            response = encode_password(reply.done["ret"], password)
        except (UnicodeError, binascii.Error, ValueError) as exc:
            raise RouterAuthError(
                f"Legacy (pre-6.43) login to {host}:{port} failed: {exc}. Upgrade RouterOS. {_AUTH_HINT}",
                host=host,
                port=port,
            ) from exc
        protocol.transport.write(
            encode_sentence("/login", f"=name={username}", f"=response={response}", encoding=protocol.encoding)
        )
        reply = _read_reply(protocol, f"{host}:{port} /login")
    if reply.traps:
        raise RouterAuthError(
            f"Router {host}:{port} refused the API login for user {username!r}: "
            f"{_trap_message(reply.traps)}. {_AUTH_HINT}",
            host=host,
            port=port,
        )


def _tls_wrapper(
    host: str, verify_tls: bool, context: ssl.SSLContext | None, deadline: float
) -> Callable[[socket.socket], socket.socket]:
    if context is None:
        if verify_tls:
            context = ssl.create_default_context()
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            # A router without a certificate on api-ssl offers only anonymous DH
            # ciphers; nothing is authenticated in this mode anyway.
            context.set_ciphers("DEFAULT:ADH:@SECLEVEL=0")

    def wrap(sock: socket.socket) -> socket.socket:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return context.wrap_socket(sock, server_hostname=host)

    return wrap


# -- connection --------------------------------------------------------------------


def connect(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    use_ssl: bool = False,
    verify_tls: bool = True,
    timeout: float = 10,
    ssl_context: ssl.SSLContext | None = None,
    encoding: str = "utf-8",
) -> RouterConnection:
    """Open an API session and log in.

    Guarantees: returns a logged-in connection or raises within ``timeout``
    seconds (connect, TLS handshake and login share that budget): a
    :class:`RouterUnreachable` for anything that may pass (refused, timeout,
    connection reset), :class:`RouterAuthError` for refused credentials,
    :class:`RouterTLSError` for certificate/TLS failures. ``ssl_context``
    replaces the context built from ``verify_tls`` (e.g. to pin a CA file).
    """
    deadline = time.monotonic() + timeout
    where = f"{host}:{port}"

    def login(api: Api, user: str, secret: str) -> None:
        api.protocol.transport.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        _login(api, user, secret, host=host, port=port)

    wrapper = _tls_wrapper(host, verify_tls, ssl_context, deadline) if use_ssl else None
    try:
        api = librouteros.connect(
            host,
            username,
            password,
            port=port,
            timeout=timeout,
            ssl_wrapper=wrapper,
            login_method=login,
            encoding=encoding,
        )
    except RouterError:
        raise
    except TimeoutError as exc:
        raise RouterUnreachable(
            f"Router {where} did not answer within {timeout:g}s (connect or login). {_REACH_HINT}",
            host=host,
            port=port,
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise RouterTLSError(
            f"Router {where} api-ssl certificate rejected: {exc.verify_message}. "
            "Install a certificate the server trusts, or set verify_tls=False for this router.",
            host=host,
            port=port,
        ) from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise RouterUnreachable(
            f"Router {where} closed the connection during the TLS handshake. {_REACH_HINT}", host=host, port=port
        ) from exc
    except ssl.SSLError as exc:
        raise RouterTLSError(f"TLS with router {where} failed: {exc}", host=host, port=port) from exc
    except ConnectionRefusedError as exc:
        raise RouterUnreachable(f"Router {where} refused the connection. {_REACH_HINT}", host=host, port=port) from exc
    except (OSError, ConnectionClosed, FatalError) as exc:
        raise RouterUnreachable(
            f"Router {where} closed or reset the connection before the login finished ({exc}). {_REACH_HINT}",
            host=host,
            port=port,
        ) from exc
    except LibRouterosError as exc:
        raise RouterUnreachable(
            f"Router {where} did not speak the RouterOS API ({exc!r}). Check the port.", host=host, port=port
        ) from exc
    api.protocol.transport.sock.settimeout(timeout)
    logger.debug("Logged in to router %s as %s", where, username)
    return RouterConnection(api, host=host, port=port, timeout=timeout)


class RouterConnection:
    """A logged-in RouterOS API session; see :func:`connect`.

    Every operation either returns what the router answered or raises a
    :class:`RouterError`. A ``!trap`` raises :class:`RouterCommandError` and
    leaves the connection usable; a transport failure raises
    :class:`RouterConnectionLost` and closes it. Attribute names are passed
    as keyword arguments; names with dashes go through a dict:
    ``conn.add("/queue/simple", name="c1", **{"max-limit": "5M/5M"})``.
    """

    def __init__(self, api: Api, *, host: str, port: int, timeout: float) -> None:
        self._api = api
        self.host = host
        self.port = port
        self.timeout = timeout
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the socket (idempotent, never raises)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._api.close()
        except OSError as exc:
            logger.debug("closing router %s:%s: %s", self.host, self.port, exc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RouterConnection {self.host}:{self.port} {state}>"

    # -- low level -----------------------------------------------------------

    def call(
        self, command: str, /, attrs: Mapping[str, Value] | None = None, queries: Sequence[str] = ()
    ) -> tuple[list[Row], Row]:
        """Run any API command; returns the ``!re`` rows and the ``!done`` attributes.

        ``attrs`` become ``=key=value`` words, ``queries`` are sent as given
        (``'?=name=x'``, ``'?-comment'``, ``'?#|'``).
        """
        command = _menu(command)
        menu = command.rsplit("/", 1)[0] or "/"
        words = [f"={key}={_api_value(value)}" for key, value in (attrs or {}).items()]
        words.extend(queries)
        if self._closed:
            raise RouterConnectionLost(
                f"Connection to router {self.host}:{self.port} is closed; open a new one.",
                host=self.host,
                port=self.port,
            )
        where = f"{self.host}:{self.port} {command}"
        protocol = self._api.protocol
        try:
            sentence = encode_sentence(command, *words, encoding=protocol.encoding)
        except UnicodeError as exc:
            raise RouterCommandError(
                f"a value cannot be encoded as {protocol.encoding}: {exc}",
                menu=menu,
                command=command,
                host=self.host,
                port=self.port,
            ) from exc
        try:
            protocol.transport.write(sentence)
            reply = _read_reply(protocol, where)
        except (OSError, LibRouterosError) as exc:
            self.close()
            kind = "timed out" if isinstance(exc, TimeoutError) else "was lost"
            raise RouterConnectionLost(
                f"Connection to router {self.host}:{self.port} {kind} during {command} ({exc!r}); "
                "the command may or may not have been applied.",
                host=self.host,
                port=self.port,
            ) from exc
        if reply.traps:
            category = reply.traps[0].get("category")
            raise RouterCommandError(
                _trap_message(reply.traps),
                menu=menu,
                command=command,
                category=category,
                host=self.host,
                port=self.port,
            )
        return reply.rows, reply.done

    # -- list menus ------------------------------------------------------------

    def print(self, menu: str, /, *, proplist: Sequence[str] | None = None, **query: Value) -> list[Row]:
        """Items of ``menu`` whose attributes equal every ``query`` value (all items if none).

        Returns one dict per item, values as the router printed them; with
        ``proplist`` only those attributes (and only if the item has them).
        """
        attrs: dict[str, Value] = {".proplist": ",".join(proplist)} if proplist else {}
        queries = [f"?={key}={_api_value(value)}" for key, value in query.items()]
        rows, _ = self.call(f"{_menu(menu)}/print", attrs, queries)
        return rows

    def add(self, menu: str, /, **attrs: Value) -> str:
        """Create an item; returns its id (``'*1A'``).

        Not idempotent: after a :class:`RouterConnectionLost` the item may exist,
        so re-read before adding again. If the router does not return an id
        (some old versions), it is looked up by ``name``; '' if that fails too.
        """
        menu = _menu(menu)
        _, done = self.call(f"{menu}/add", attrs)
        if done.get("ret"):
            return done["ret"]
        if "name" in attrs:
            found = self.print(menu, proplist=[".id"], name=attrs["name"])
            if found and found[0].get(".id"):
                return found[0][".id"]
        logger.warning("Router %s:%s returned no id for %s/add", self.host, self.port, menu)
        return ""

    def set(self, menu: str, item_id: str, /, **attrs: Value) -> None:
        """Change attributes of one item (``item_id`` is a ``.id`` such as ``'*1'``). Idempotent.

        Nothing is sent when ``attrs`` is empty.
        """
        if not attrs:
            return
        self.call(f"{_menu(menu)}/set", {".id": item_id, **attrs})

    def remove(self, menu: str, item_id: str | Sequence[str], /) -> None:
        """Remove one item or several (a list of ids). On /ppp/active or /ip/hotspot/active this kicks.

        Raises :class:`RouterCommandError` ('no such item') if an id is gone.
        """
        ids = item_id if isinstance(item_id, str) else ",".join(item_id)
        self.call(f"{_menu(menu)}/remove", {".id": ids})

    # -- settings menus ----------------------------------------------------------

    def settings_get(self, menu: str, /) -> Row:
        """The single item of a settings menu (``/radius/incoming``, ``/system/identity``)."""
        rows = self.print(menu)
        if len(rows) != 1:
            logger.warning("Router %s:%s: %s printed %d items, expected 1", self.host, self.port, menu, len(rows))
        return rows[0] if rows else {}

    def settings_set(self, menu: str, /, **attrs: Value) -> None:
        """Change a settings menu (no ``.id``). Idempotent; nothing is sent when ``attrs`` is empty."""
        if attrs:
            self.call(f"{_menu(menu)}/set", attrs)

    def identity(self) -> str:
        """The router's ``/system/identity`` name."""
        return self.settings_get("/system/identity").get("name", "")

    def resource(self) -> Row:
        """``/system/resource``: version, uptime, cpu-load, free-memory, board-name... as strings."""
        return self.settings_get("/system/resource")


# -- retries -------------------------------------------------------------------------


def with_retries(
    fn: Callable[[], T],
    attempts: int = 3,
    backoff: float | Callable[[int], float] = 0.5,
    *,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying only transient router errors.

    ``fn`` should open its own connection, since a lost one cannot be reused:
    ``with_retries(lambda: sync(connect(...)))``. Between attempts it sleeps
    ``backoff * 2 ** (n - 1)`` seconds (capped at ``max_delay``), or
    ``backoff(n)`` if ``backoff`` is callable, ``n`` being the failed attempt's
    number. Permanent errors and the last transient error propagate unchanged.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 1
    while True:
        try:
            return fn()
        except RouterError as exc:
            if not exc.retryable or attempt >= attempts:
                raise
            delay = backoff(attempt) if callable(backoff) else min(backoff * 2 ** (attempt - 1), max_delay)
            logger.warning(
                "Router %s:%s attempt %d/%d failed (%s); retrying in %.2fs",
                exc.host,
                exc.port,
                attempt,
                attempts,
                exc.message,
                delay,
            )
            sleep(delay)
            attempt += 1
