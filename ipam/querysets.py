"""Query sets of IPAM models: visibility (the accounts rule) plus network containment."""
from __future__ import annotations

from ispcore.accounts.visibility import VisibleQuerySet


class NetworkQuerySet(VisibleQuerySet):
    """`visible_to(user)` and containment filters on the `network` column."""

    def within(self, net) -> NetworkQuerySet:
        """Rows whose network lies inside `net` (or equals it): `?within=10.0.0.0/16`."""
        return self.filter(network__net_within=net)

    def containing(self, net) -> NetworkQuerySet:
        """Rows whose network contains `net` (or equals it)."""
        return self.filter(network__net_contains=net)

    def overlapping(self, net) -> NetworkQuerySet:
        return self.filter(network__net_overlaps=net)
