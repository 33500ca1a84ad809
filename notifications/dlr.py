"""Delivery states, shared by every SMS provider (SMPP and HTTP): pure functions, no Django.

States of one part (and, rolled up, of one message)::

    queued -> submitted -> sent -> delivered | undelivered | expired | rejected | unknown
             (written,     (accepted by
              no answer)    the provider/operator)

``delivered``, ``undelivered``, ``expired``, ``rejected`` and ``unknown`` are
final: nothing moves a part out of them (:func:`advance`). ``unknown`` is the
SMPP ``UNKNOWN`` receipt (the SMSC itself does not know), not the
"written, no answer" submit outcome, which leaves the part ``submitted``.

Where a state comes from:

* SMPP receipts: the ``message_state`` TLV (preferred) or the ``stat:`` word
  (:data:`STAT_STATES`); ``ACCEPTD`` and ``ENROUTE`` are intermediate here
  (accepted by / on the way to the operator = ``sent``), ``DELETED`` is
  ``undelivered``;
* HTTP providers: the profile's own status words (``Delivered``, ``Failed``...)
  mapped by :func:`state_from_http`; the HTTP provider turns them into SMPP
  stat words on the :class:`~notifications.smpp.DeliveryReceipt`, so
  :func:`receipt_state` reads receipts from both the same way.

Failures have an error class (:class:`ErrorClass`) that decides retries:
:func:`retry_decision` is a pure ``(error_class, attempt, policy) -> delay | None``.
Provider message ids are normalised by :func:`message_key` (the SMPP rules of
:func:`notifications.smpp.normalise_message_id`, plus ids that arrive as JSON
numbers or with blanks around them).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from notifications.smpp import MESSAGE_STATES, DeliveryReceipt, Outcome, SubmitResult, normalise_message_id

__all__ = [
    "FINAL_STATES", "STAT_STATES", "ClassPolicy", "ErrorClass", "RetryPolicy", "State", "advance",
    "error_class_for_result", "error_class_for_state", "is_final", "message_key", "normalise_message_id",
    "receipt_state", "retry_decision", "rollup", "state_for_result", "state_from_http", "state_from_message_state",
    "state_from_stat", "stat_for_state",
]


class State(StrEnum):
    """Delivery state of one part or one message."""

    QUEUED = "queued"  #: not handed to a provider yet
    SUBMITTED = "submitted"  #: written to a provider, its answer not known (UNKNOWN submit outcome)
    SENT = "sent"  #: accepted by the provider / on its way to the operator
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  #: final: the SMSC reported it does not know


FINAL_STATES: Final = frozenset({State.DELIVERED, State.UNDELIVERED, State.EXPIRED, State.REJECTED, State.UNKNOWN})
#: Progress order of the states that are not final.
_PROGRESS: Final[Mapping[State, int]] = {State.QUEUED: 0, State.SUBMITTED: 1, State.SENT: 2}
#: Which failure names a multi-part message when several parts failed differently (first wins).
_FAILURE_ORDER: Final = (State.REJECTED, State.UNDELIVERED, State.EXPIRED)

#: SMPP 3.4 receipt ``stat:`` words (and the long forms some SMSCs write) -> state.
STAT_STATES: Final[Mapping[str, State]] = {
    "ENROUTE": State.SENT,
    "ACCEPTD": State.SENT,
    "ACCEPTED": State.SENT,
    "DELIVRD": State.DELIVERED,
    "DELIVERED": State.DELIVERED,
    "UNDELIV": State.UNDELIVERED,
    "UNDELIVERABLE": State.UNDELIVERED,
    "DELETED": State.UNDELIVERED,
    "EXPIRED": State.EXPIRED,
    "REJECTD": State.REJECTED,
    "REJECTED": State.REJECTED,
    "UNKNOWN": State.UNKNOWN,
}
_STAT_FOR_STATE: Final[Mapping[State, str]] = {
    State.SENT: "ENROUTE",
    State.DELIVERED: "DELIVRD",
    State.UNDELIVERED: "UNDELIV",
    State.EXPIRED: "EXPIRED",
    State.REJECTED: "REJECTD",
    State.UNKNOWN: "UNKNOWN",
}


def is_final(state: State | str) -> bool:
    """True for delivered / undelivered / expired / rejected / unknown."""
    return State(state) in FINAL_STATES


def state_from_stat(stat: str | None) -> State | None:
    """State of a receipt ``stat:`` word (case-insensitive); None for a missing or unrecognised word."""
    if not stat:
        return None
    return STAT_STATES.get(stat.strip().upper())


def state_from_message_state(value: int | None) -> State | None:
    """State of an SMPP ``message_state`` TLV value (1-8); None for anything else."""
    if value is None:
        return None
    return state_from_stat(MESSAGE_STATES.get(value))


def stat_for_state(state: State | str) -> str | None:
    """The SMPP stat word for a reported state (None for queued / submitted, which no receipt reports)."""
    return _STAT_FOR_STATE.get(State(state))


def receipt_state(receipt: DeliveryReceipt) -> State:
    """State reported by a receipt from any provider: the message_state TLV wins over ``stat:``.

    A receipt without a readable state is ``unknown``: it is final, so such a
    part is not left waiting for a receipt that will never say more.
    """
    return (state_from_message_state(receipt.message_state) or state_from_stat(receipt.stat)
            or State.UNKNOWN)


def state_from_http(status: Any, states: Mapping[str, str | State]) -> State:
    """State of an HTTP provider's DLR status, by the profile's ``states`` map.

    Lookup is case- and blank-insensitive; numbers are looked up as strings.
    A status the map does not know falls back to the SMPP stat words
    (``DELIVRD``...), then to ``unknown``.
    """
    key = str(status).strip().lower() if status is not None else ""
    for word, state in states.items():
        if str(word).strip().lower() == key:
            return State(state)
    return state_from_stat(key) or State.UNKNOWN


def state_for_result(result: SubmitResult) -> State:
    """Part state right after its submit: sent (accepted), submitted (unknown), rejected, or queued (retry)."""
    if result.outcome is Outcome.ACCEPTED:
        return State.SENT
    if result.outcome is Outcome.UNKNOWN:
        return State.SUBMITTED
    if result.outcome is Outcome.PERMANENT:
        return State.REJECTED
    return State.QUEUED


def advance(current: State | str, reported: State | str) -> State | None:
    """The part's new state when ``reported`` arrives, or None when it changes nothing.

    A final state is never left (a second receipt, or a late ``ENROUTE`` after
    ``DELIVRD``, is ignored) and a state never moves backwards; so receipts can
    be applied in any order and more than once.
    """
    current, reported = State(current), State(reported)
    if current in FINAL_STATES or reported == current:
        return None
    if reported in FINAL_STATES:
        return reported
    return reported if _PROGRESS[reported] > _PROGRESS[current] else None


def rollup(part_states: Iterable[State | str]) -> State:
    """One message's state from its parts' states.

    * any part rejected / undelivered / expired: the message is that (in this
      order of precedence when parts failed differently), even while other
      parts are still on their way: it can no longer be delivered whole;
    * every part delivered: delivered;
    * some part not final: the least advanced of the parts not final
      (queued < submitted < sent);
    * otherwise (all final, some unknown, the rest delivered): unknown.

    Raises ValueError for a message without parts.
    """
    states = [State(s) for s in part_states]
    if not states:
        raise ValueError("a message has at least one part")
    present = set(states)
    for failure in _FAILURE_ORDER:
        if failure in present:
            return failure
    if present == {State.DELIVERED}:
        return State.DELIVERED
    pending = [s for s in states if s not in FINAL_STATES]
    if pending:
        return min(pending, key=_PROGRESS.__getitem__)
    return State.UNKNOWN


# -- error classes and retries ------------------------------------------------------------


class ErrorClass(StrEnum):
    """Whether a failed attempt may succeed if repeated."""

    TEMPORARY = "temporary"  #: throttled, queue full, not written, expired (handset off)
    PERMANENT = "permanent"  #: bad number, blocked, rejected content: repeating sends the same failure


def error_class_for_result(result: SubmitResult) -> ErrorClass | None:
    """Error class of a submit result; None when there is nothing to retry.

    ACCEPTED is not an error; UNKNOWN is deliberately None too: the part may
    be live at the provider, so a blind retry could send it twice (wait for a
    receipt, or retry only where the provider deduplicates a client reference).
    """
    if result.outcome is Outcome.TEMPORARY:
        return ErrorClass.TEMPORARY
    if result.outcome is Outcome.PERMANENT:
        return ErrorClass.PERMANENT
    return None


def error_class_for_state(state: State | str, err: str | None = None, *,
                          temporary_errors: Iterable[str] = ()) -> ErrorClass | None:
    """Error class of a final receipt state; None for delivered, unknown or a state that is not final.

    ``expired`` is temporary (the handset was off for the validity period);
    ``undelivered`` / ``rejected`` are permanent unless the receipt's ``err``
    code is one of the provider's ``temporary_errors`` (compared without
    leading zeros, so ``"008"`` matches ``"8"``).
    """
    state = State(state)
    if state is State.EXPIRED:
        return ErrorClass.TEMPORARY
    if state in (State.UNDELIVERED, State.REJECTED):
        if err is not None and _strip_code(err) in {_strip_code(code) for code in temporary_errors}:
            return ErrorClass.TEMPORARY
        return ErrorClass.PERMANENT
    return None


def _strip_code(code: str) -> str:
    code = str(code).strip()
    return code.lstrip("0") or ("0" if code else "")


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    """Retries for one error class: up to ``attempts`` tries in all, ``initial * factor**n`` apart, capped."""

    attempts: int = 1  #: total tries including the first; 1 = never retry
    initial: float = 30.0  #: seconds before the second try
    factor: float = 2.0
    maximum: float = 3600.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1 (1 = no retry)")
        if self.initial < 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("need initial >= 0, factor >= 1 and maximum >= initial")


def _default_classes() -> dict[ErrorClass, ClassPolicy]:
    return {ErrorClass.TEMPORARY: ClassPolicy(attempts=4, initial=60.0, factor=3.0, maximum=3600.0),
            ErrorClass.PERMANENT: ClassPolicy(attempts=1)}


@dataclass(frozen=True)
class RetryPolicy:
    """Per error class retry settings; a class not listed is never retried."""

    classes: Mapping[ErrorClass, ClassPolicy] = field(default_factory=_default_classes)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Mapping[str, Any]]) -> RetryPolicy:
        """From e.g. ``{"temporary": {"attempts": 3, "initial": 30}, "permanent": {"attempts": 1}}``.

        Raises ValueError naming the bad class or key.
        """
        classes: dict[ErrorClass, ClassPolicy] = {}
        for name, values in settings.items():
            try:
                error_class = ErrorClass(name)
            except ValueError:
                raise ValueError(f"unknown error class {name!r}; expected one of "
                                 f"{[c.value for c in ErrorClass]}") from None
            unknown = sorted(set(values) - {"attempts", "initial", "factor", "maximum"})
            if unknown:
                raise ValueError(f"unknown retry setting(s) for {name}: {', '.join(unknown)}")
            try:
                classes[error_class] = ClassPolicy(**values)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"retry settings for {name}: {exc}") from exc
        return cls(classes)


def retry_decision(error_class: ErrorClass | str | None, attempt: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before the next try, or None to give up.

    ``attempt`` is the number of tries made so far (1 after the first failed
    one). No error class (accepted, unknown outcome) means no retry.
    """
    if attempt < 1:
        raise ValueError("attempt counts the tries made so far and starts at 1")
    if error_class is None:
        return None
    rule = policy.classes.get(ErrorClass(error_class))
    if rule is None or attempt >= rule.attempts:
        return None
    return min(rule.maximum, rule.initial * rule.factor ** (attempt - 1))


# -- message ids -----------------------------------------------------------------------------


def message_key(raw: Any, rule: str = "as_is") -> str | None:
    """A provider message id normalised with ``rule`` (see :func:`normalise_message_id`), or None.

    Extends the SMPP normalisation for HTTP providers: the id may arrive as a
    JSON number (``12`` and ``"12"`` give the same key; a float or bool is not
    an id) or with blanks around it. None for a missing / empty id or one the
    rule cannot convert; an unknown rule still raises ValueError.
    """
    if raw is None or isinstance(raw, bool | float):
        return None
    value = str(raw).strip() if isinstance(raw, int | str) else None
    if not value:
        return None
    normalise_message_id("0", rule)  # an unknown rule is a configuration error, not a bad id
    try:
        return normalise_message_id(value, rule)
    except ValueError:
        return None

