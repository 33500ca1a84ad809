"""Snapshot invalidation: the one place we accept Django signals.

The receivers only schedule :func:`radius.snapshot.publish_invalidation` on
commit (so RADIUS workers never reload data that may still roll back); they
change nothing. A customer change reloads that customer only, a package or
price change re-derives the limits of that package's customers, a NAS change
reloads the tenant's NAS list."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .snapshot import publish_invalidation


def _schedule(tenant_id: int | None, customer_ids: list[int] | None = None, **detail) -> None:
    if tenant_id is None:
        return
    transaction.on_commit(lambda: publish_invalidation(tenant_id, customer_ids, **detail))


def _customer_changed(sender, instance, **kwargs) -> None:
    _schedule(instance.tenant_id, [instance.pk])


def _package_changed(sender, instance, **kwargs) -> None:
    _schedule(instance.tenant_id, packages=[instance.pk])


def _nas_changed(sender, instance, **kwargs) -> None:
    _schedule(instance.tenant_id, nas=True)


def _price_changed(sender, instance, **kwargs) -> None:
    node = getattr(instance, "node", None)
    _schedule(getattr(node, "tenant_id", None), packages=[instance.package_id])


def connect() -> None:
    from ispcore.catalog.models import Package, PriceListEntry
    from ispcore.subscribers.models import Customer, Nas

    for signal in (post_save, post_delete):
        signal.connect(_customer_changed, sender=Customer, dispatch_uid=f"radius-customer-{signal is post_save}")
        signal.connect(_package_changed, sender=Package, dispatch_uid=f"radius-package-{signal is post_save}")
        signal.connect(_nas_changed, sender=Nas, dispatch_uid=f"radius-nas-{signal is post_save}")
        signal.connect(_price_changed, sender=PriceListEntry, dispatch_uid=f"radius-price-{signal is post_save}")
