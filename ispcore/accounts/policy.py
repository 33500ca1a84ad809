"""Who may write what. Visibility (visibility.py) decides which rows a user can reach at
all; this table decides which of those rows each role may create, change or delete.
Services re-check the finer rules (which node kind under which parent, which role a
user may hand out) inside their transaction."""
from __future__ import annotations

from .roles import ManagerPermission as P
from .roles import Role

SELLERS = {Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER}

# model label -> action -> roles allowed; a (role, permission) pair means a manager holding it.
WRITE_POLICY: dict[str, dict[str, set]] = {
    "accounts.tenant": {"create": set(), "change": set(), "delete": set()},
    "accounts.accountnode": {"create": SELLERS, "change": SELLERS, "delete": set()},
    "accounts.user": {"create": SELLERS, "change": SELLERS, "delete": {Role.ADMIN}},
    "catalog.package": {
        "create": {Role.ADMIN, (Role.MANAGER, P.EDIT_PACKAGES)},
        "change": {Role.ADMIN, (Role.MANAGER, P.EDIT_PACKAGES)},
        "delete": {Role.ADMIN},
    },
    "catalog.pricelistentry": {"create": SELLERS, "change": SELLERS, "delete": SELLERS},
    "subscribers.zone": {
        "create": {Role.ADMIN, (Role.MANAGER, P.MANAGE_ZONES)},
        "change": {Role.ADMIN, (Role.MANAGER, P.MANAGE_ZONES)},
        "delete": {Role.ADMIN},
    },
    "subscribers.nas": {
        "create": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "change": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "delete": {Role.ADMIN},
    },
    "subscribers.customer": {
        "create": SELLERS | {(Role.MANAGER, P.CREATE_CUSTOMERS)},
        "change": SELLERS | {(Role.MANAGER, P.EDIT_CUSTOMERS)},
        "delete": set(),
    },
    # IPAM: the admin and managers with "manage_nas"; assignments are created (assigned) and
    # deleted (released), never edited.
    "ipam.prefix": {
        "create": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "change": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "delete": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
    },
    "ipam.reservation": {
        "create": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "change": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "delete": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
    },
    "ipam.assignment": {
        "create": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
        "change": set(),
        "delete": {Role.ADMIN, (Role.MANAGER, P.MANAGE_NAS)},
    },
    # Recharge cards: the selling roles generate, issue, sell, void and download batches and
    # void cards (services re-check the issuer's subtree); nothing is ever deleted.
    "cards.cardbatch": {"create": SELLERS, "change": SELLERS, "delete": set()},
    "cards.rechargecard": {"create": set(), "change": SELLERS, "delete": set()},
}

# Roles a user of each role may hand out to new users.
ASSIGNABLE_ROLES: dict[str, set[str]] = {
    Role.SUPER_ADMIN: set(Role.values) - {Role.CUSTOMER},
    Role.ADMIN: {Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER, Role.MANAGER, Role.CARD_DISTRIBUTOR},
    Role.RESELLER: {Role.SUB_RESELLER, Role.MANAGER, Role.CARD_DISTRIBUTOR},
    Role.SUB_RESELLER: {Role.MANAGER, Role.CARD_DISTRIBUTOR},
}


def can_write(user, label: str, action: str) -> bool:
    """May `user` perform `action` ('create', 'change', 'delete') on model `label` at all?"""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.role == Role.SUPER_ADMIN:
        return True
    allowed = WRITE_POLICY.get(label, {}).get(action, set())
    if user.role in allowed:
        return True
    return any(isinstance(a, tuple) and a[0] == user.role and user.has_manager_permission(a[1]) for a in allowed)

# Money: sales and payments are created through billing services, never edited or deleted.
WRITE_POLICY.update({
    "billing.packagesale": {
        "create": SELLERS | {Role.CUSTOMER, (Role.MANAGER, P.COLLECT_CASH)}, "change": set(), "delete": set(),
    },
    "billing.payment": {"create": SELLERS | {(Role.MANAGER, P.COLLECT_CASH)}, "change": set(), "delete": set()},
    "billing.invoice": {"create": set(), "change": set(), "delete": set()},
})

# SMS: messages are sent (created) through the SMS services only, never edited; the send
# endpoints check single vs bulk themselves (notifications.api.permissions). Templates are
# written by the admin and managers allowed to send bulk SMS.
SMS_SINGLE = {Role.ADMIN, (Role.MANAGER, P.SEND_SMS), (Role.MANAGER, P.SEND_BULK_SMS)}
SMS_BULK = {Role.ADMIN, (Role.MANAGER, P.SEND_BULK_SMS)}
WRITE_POLICY.update({
    "notifications.message": {"create": SMS_SINGLE, "change": set(), "delete": set()},
    "notifications.campaign": {"create": SMS_BULK, "change": SMS_BULK, "delete": set()},
    "notifications.smstemplate": {"create": SMS_BULK, "change": SMS_BULK, "delete": SMS_BULK},
    "notifications.inboundmessage": {"create": set(), "change": set(), "delete": set()},
})
