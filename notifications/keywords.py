"""Keyword commands on dedicated lines: which rule an incoming text matches, and what it does.

Matching (:func:`match_rule`): the text is NFC-normalised and split on the tenant's
separators (``SmsProfile.keyword_separators``, plus any whitespace); a ``command`` rule
matches when the FIRST token equals its keyword or one of its aliases, compared with
``casefold`` (so ``bal``, ``Bal`` and ``BAL`` are one command; Bangla aliases compare
as written). A ``contains`` rule (the support-ticket rule) matches when its keyword
appears anywhere in the text. The tenant's own active rules (for this line, or for all
lines) are tried first by priority; the built-in commands below answer when the tenant
defined nothing for that word, so a new dedicated line works out of the box.

Actions (:func:`run_action`) call the owning services: balances and usage are read
with ``templates.customer_contexts`` (wallet and this month's ``radius.DailyUsage``),
STOP/START go through ``services.opt_out``/``opt_in`` (promotional only; transactional
messages still go), RECHARGE through ``ispcore.cards.services.redeem_card`` (its locks,
ledger and wrong-PIN limits), tickets are :class:`~notifications.models.SupportTicket`
rows. Each returns the reply text (or None) and what it did, for the inbox row.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from .models import KeywordRule, SupportTicket
from .templates import customer_contexts, render

A = KeywordRule.Action


@dataclass(frozen=True)
class Builtin:
    action: str
    keyword: str
    aliases: tuple[str, ...]


#: The commands every dedicated line understands unless the tenant redefines the word.
BUILTIN_COMMANDS: tuple[Builtin, ...] = (
    Builtin(A.BALANCE, "BAL", ("BALANCE", "DUE", "ব্যালেন্স", "বকেয়া", "বাকি")),
    Builtin(A.USAGE, "USAGE", ("ব্যবহার",)),
    Builtin(A.STOP, "STOP", ("UNSUBSCRIBE", "বন্ধ")),
    Builtin(A.START, "START", ("SUBSCRIBE", "চালু")),
    Builtin(A.HELP, "HELP", ("সাহায্য",)),
    Builtin(A.RECHARGE, "RECHARGE", ("RC", "রিচার্জ")),
)

#: Default replies (Bangla first, as customers read them); a rule's ``reply_body`` overrides.
DEFAULT_REPLIES: dict[str, str] = {
    A.BALANCE: "প্রিয় {name}, আপনার বকেয়া {due} টাকা, ব্যালেন্স {balance} টাকা। মেয়াদ {expiry} পর্যন্ত। - {isp}",
    A.USAGE: "প্রিয় {name}, এই মাসে আপনার ব্যবহার {usage} GB। - {isp}",
    A.STOP: "আপনি প্রচারমূলক SMS থেকে বাদ পড়েছেন। আবার পেতে START লিখে পাঠান। - {isp}",
    A.START: "আপনি আবার প্রচারমূলক SMS পাবেন। বন্ধ করতে STOP লিখে পাঠান। - {isp}",
    A.HELP: "BAL: বকেয়া ও মেয়াদ, USAGE: এই মাসের ব্যবহার, RECHARGE <PIN>: কার্ড রিচার্জ, STOP/START: প্রচারমূলক SMS। - {isp}",
    A.RECHARGE: "প্রিয় {name}, {amount} টাকা রিচার্জ সফল হয়েছে। ব্যালেন্স {balance} টাকা, মেয়াদ {expiry} পর্যন্ত। - {isp}",
    A.TICKET: "আপনার অভিযোগ গ্রহণ করা হয়েছে, টিকেট নম্বর {ticket}। শীঘ্রই যোগাযোগ করা হবে। - {isp}",
    A.REPLY: "",
}
RECHARGE_FAILED = "রিচার্জ হয়নি: {reason} - {isp}"
RECHARGE_REASONS = {
    "wrong_pin": "পিন সঠিক নয়।", "used": "কার্ডটি আগেই ব্যবহার হয়েছে।", "void": "কার্ডটি বাতিল।",
    "expired": "কার্ডের মেয়াদ শেষ।", "not_sold": "কার্ডটি বিক্রি হয়নি।", "not_here": "এই কার্ড আপনার জন্য নয়।",
    "missing": "RECHARGE এর পরে পিন লিখুন।", "rate_limited": "অনেকবার ভুল পিন; পরে চেষ্টা করুন।",
}
#: Actions that need the sender to be a known customer of the ISP.
NEEDS_CUSTOMER = {A.BALANCE, A.USAGE, A.RECHARGE}


@dataclass
class Match:
    """The rule an incoming text matched (a KeywordRule row, or a built-in when ``rule`` is None)."""

    action: str
    keyword: str
    rule: KeywordRule | None
    args: list[str] = field(default_factory=list)
    reply_body: str = ""


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text or "").strip()


def tokens(text: str, separators: str) -> list[str]:
    """The text split on any of ``separators`` and whitespace, empties dropped."""
    pattern = "[" + re.escape(separators or "") + r"\s]+"
    return [t for t in re.split(pattern, normalise(text)) if t]


def _key(word: str) -> str:
    return normalise(word).casefold()


def match_rule(text: str, *, rules: list[KeywordRule], separators: str) -> Match | None:
    """The first rule ``text`` matches (see the module docstring), or None."""
    words = tokens(text, separators)
    first = _key(words[0]) if words else ""
    folded = _key(text)
    tenant_words: set[str] = set()
    for rule in rules:
        names = [rule.keyword, *[str(a) for a in (rule.aliases or [])]]
        tenant_words.update(_key(n) for n in names)
        if rule.match == KeywordRule.Match.COMMAND and first and first in {_key(n) for n in names}:
            return Match(rule.action, rule.keyword, rule, words[1:], rule.reply_body)
    for rule in rules:
        if rule.match == KeywordRule.Match.CONTAINS and any(
                _key(n) and _key(n) in folded for n in [rule.keyword, *(rule.aliases or [])]):
            return Match(rule.action, rule.keyword, rule, words, rule.reply_body)
    if first and first not in tenant_words:
        for builtin in BUILTIN_COMMANDS:
            if first in {_key(builtin.keyword), *(_key(a) for a in builtin.aliases)}:
                return Match(builtin.action, builtin.keyword, None, words[1:])
    return None


def rules_for(tenant_id: int, line_id: int | None) -> list[KeywordRule]:
    """The tenant's active rules for this line (line-specific and all-lines), by priority."""
    from django.db.models import Q

    return list(KeywordRule.objects.filter(tenant_id=tenant_id, is_active=True)
                .filter(Q(line__isnull=True) | Q(line_id=line_id)).order_by("priority", "id"))


@dataclass
class Outcome:
    reply: str | None
    data: dict


def _context(tenant, customer, needed: set[str] | None = None) -> dict:
    ctx = {"isp": tenant.name}
    if customer is not None:
        ctx.update(customer_contexts([customer.pk], tenant=tenant, needed=needed).get(customer.pk, {}))
    return ctx


def run_action(match: Match, *, tenant, inbound, customer) -> Outcome:
    """Do what the rule says for this incoming message; returns the reply and a record.

    Runs inside the caller's transaction (the inbox row is updated in the same one)."""
    from . import services

    body = match.reply_body or DEFAULT_REPLIES.get(match.action, "")
    action = match.action
    if action == A.STOP:
        services.opt_out(tenant, inbound.from_number, note=f"SMS {inbound.pk}")
        return Outcome(render(body, _context(tenant, customer, set())), {"opted_out": True})
    if action == A.START:
        was = services.opt_in(tenant, inbound.from_number)
        return Outcome(render(body, _context(tenant, customer, set())), {"opted_in": was})
    if action in (A.HELP, A.REPLY):
        return Outcome(render(body, _context(tenant, customer, set())) if body else None, {})
    if action == A.BALANCE:
        return Outcome(render(body, _context(tenant, customer, {"balance", "due"})), {})
    if action == A.USAGE:
        return Outcome(render(body, _context(tenant, customer, {"usage"})), {})
    if action == A.RECHARGE:
        return _recharge(match, body, tenant=tenant, inbound=inbound, customer=customer)
    if action == A.TICKET:
        ticket = SupportTicket.objects.create(
            tenant=tenant, customer=customer, number=inbound.from_number, inbound=inbound,
            subject=f"SMS from {inbound.from_number}: {normalise(inbound.text)[:100]}", body=inbound.text)
        from ispcore.core import audit

        audit.record("sms.ticket.open", ticket, customer=getattr(customer, "pk", None), number=inbound.from_number)
        ctx = _context(tenant, customer, set())
        ctx["ticket"] = str(ticket.pk)
        return Outcome(render(body, ctx), {"ticket": ticket.pk})
    raise ValueError(f"unknown keyword action {action!r}")


def _recharge(match: Match, body: str, *, tenant, inbound, customer) -> Outcome:
    from django.db import transaction

    from ispcore.cards.services import CardRateLimited, CardRefused, redeem_card

    pin = "".join(match.args)
    failed = {"isp": tenant.name}
    if not pin:
        return Outcome(render(RECHARGE_FAILED, {**failed, "reason": RECHARGE_REASONS["missing"]}),
                       {"recharge": "missing"})
    try:
        with transaction.atomic():
            redemption = redeem_card(customer=customer, pin=pin, actor=None, source=f"sms:{inbound.from_number}")
    except CardRefused as exc:
        reason = exc.reason
        return Outcome(render(RECHARGE_FAILED, {**failed, "reason": RECHARGE_REASONS.get(reason, reason)}),
                       {"recharge": reason})
    except CardRateLimited:
        return Outcome(render(RECHARGE_FAILED, {**failed, "reason": RECHARGE_REASONS["rate_limited"]}),
                       {"recharge": "rate_limited"})
    except ValidationError as exc:
        return Outcome(render(RECHARGE_FAILED, {**failed, "reason": "; ".join(exc.messages)}), {"recharge": "refused"})
    ctx = _context(tenant, customer, {"balance", "due"})
    ctx["amount"] = f"{redemption.amount:.2f}".rstrip("0").rstrip(".")
    return Outcome(render(body, ctx), {"recharge": "ok", "card": redemption.card.serial,
                                       "amount": str(redemption.amount)})
