"""`CidrField`: an IPv4 or IPv6 network held as a `netaddr.IPNetwork`.

On PostgreSQL the column is `cidr`, so the database itself rejects host bits and
compares, sorts and indexes networks (GiST `inet_ops` exclusion constraints in
migration 0002). Elsewhere (the SQLite first run) it degrades to text in the
canonical form netaddr prints; the containment lookups below then run through
small Python functions registered on each SQLite connection (see `apps.py`).

A single address is the network of one address: `10.0.0.5` is `10.0.0.5/32`,
`2001:db8::1` is `2001:db8::1/128`.

Lookups (both vendors):

* `network__net_within=X`    network <<= X   (inside X or equal)
* `network__net_inside=X`    network <<  X   (strictly inside X)
* `network__net_contains=X`  network >>= X   (contains X or equal)
* `network__net_overlaps=X`  network &&  X   (one contains the other)
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Lookup
from django.utils.translation import gettext_lazy as _
from netaddr import AddrFormatError, IPAddress, IPNetwork


def to_network(value, *, strict: bool = True) -> IPNetwork:
    """Parse `value` (str, IPNetwork, IPAddress) into a canonical IPNetwork.

    With `strict`, host bits set below the mask ('10.0.0.5/24') are an error rather
    than silently dropped, because an operator who typed that meant something else."""
    if isinstance(value, IPNetwork):
        net = value
    elif isinstance(value, IPAddress):
        net = IPNetwork(value)
    else:
        text = str(value).strip()
        if not text:
            raise ValidationError(_("Enter a network such as 10.0.0.0/24 or 2001:db8::/48."), code="invalid")
        try:
            net = IPNetwork(text)
        except (AddrFormatError, ValueError, TypeError):
            raise ValidationError(
                _("'%(value)s' is not an IPv4 or IPv6 network or address."), code="invalid", params={"value": text}
            ) from None
    if strict and net.ip != net.network:
        raise ValidationError(
            _("'%(value)s' has host bits set; the network is %(cidr)s."),
            code="host_bits", params={"value": str(net), "cidr": str(net.cidr)},
        )
    return net.cidr


class CidrField(models.Field):
    """An IPv4/IPv6 network (PostgreSQL `cidr`, text elsewhere) as `netaddr.IPNetwork`."""

    description = _("IPv4 or IPv6 network")
    empty_strings_allowed = False

    def db_type(self, connection) -> str:
        # 43 = the longest IPv6 text form (39) plus "/128".
        return "cidr" if connection.vendor == "postgresql" else "varchar(43)"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return IPNetwork(str(value))

    def to_python(self, value):
        if value is None or value == "":
            return None
        return to_network(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return None
        if hasattr(value, "resolve_expression"):
            return value
        return str(to_network(value))

    def value_to_string(self, obj) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    def formfield(self, **kwargs):
        from django import forms

        return super().formfield(**{"form_class": forms.CharField, "max_length": 43, **kwargs})


class _NetLookup(Lookup):
    pg_operator = ""
    sqlite_function = ""

    def get_db_prep_lookup(self, value, connection):
        if hasattr(value, "resolve_expression"):
            return super().get_db_prep_lookup(value, connection)
        # A lookup value may be an address or a network with host bits (`within=10.0.0.5/24`
        # means the /24); normalise leniently rather than rejecting a filter.
        return ("%s", [str(to_network(value, strict=False))])

    def get_prep_lookup(self):
        return self.rhs

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        params = (*lhs_params, *rhs_params)
        if connection.vendor == "postgresql":
            return f"{lhs} {self.pg_operator} ({rhs})::inet", params
        return f"{self.sqlite_function}({lhs}, {rhs}) = 1", params


@CidrField.register_lookup
class NetWithin(_NetLookup):
    lookup_name = "net_within"
    pg_operator = "<<="
    sqlite_function = "ipam_net_within"


@CidrField.register_lookup
class NetInside(_NetLookup):
    lookup_name = "net_inside"
    pg_operator = "<<"
    sqlite_function = "ipam_net_inside"


@CidrField.register_lookup
class NetContains(_NetLookup):
    lookup_name = "net_contains"
    pg_operator = ">>="
    sqlite_function = "ipam_net_contains"


@CidrField.register_lookup
class NetOverlaps(_NetLookup):
    lookup_name = "net_overlaps"
    pg_operator = "&&"
    sqlite_function = "ipam_net_overlaps"


# -- the same operators for SQLite, registered per connection in apps.py ------------

def _pair(a, b) -> tuple[IPNetwork, IPNetwork] | None:
    if a is None or b is None:
        return None
    try:
        x, y = IPNetwork(str(a)), IPNetwork(str(b))
    except (AddrFormatError, ValueError):
        return None
    if x.version != y.version:
        return None
    return x, y


def _within(a, b) -> int:
    p = _pair(a, b)
    return int(p is not None and p[1].first <= p[0].first and p[0].last <= p[1].last)


def _inside(a, b) -> int:
    p = _pair(a, b)
    return int(p is not None and p[0].prefixlen > p[1].prefixlen and p[1].first <= p[0].first and p[0].last <= p[1].last)


def _contains(a, b) -> int:
    return _within(b, a)


def _overlaps(a, b) -> int:
    p = _pair(a, b)
    return int(p is not None and p[0].first <= p[1].last and p[1].first <= p[0].last)


SQLITE_FUNCTIONS = {
    "ipam_net_within": _within,
    "ipam_net_inside": _inside,
    "ipam_net_contains": _contains,
    "ipam_net_overlaps": _overlaps,
}


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """`connection_created` receiver: teach SQLite the network operators."""
    if connection.vendor != "sqlite":
        return
    for name, func in SQLITE_FUNCTIONS.items():
        connection.connection.create_function(name, 2, func, deterministic=True)
