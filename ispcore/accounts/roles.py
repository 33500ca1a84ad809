"""The seven panel roles and the manager permissions, as enums in code."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    SUPER_ADMIN = "super_admin", _("Super admin")
    ADMIN = "admin", _("Admin")
    RESELLER = "reseller", _("Reseller")
    SUB_RESELLER = "sub_reseller", _("Sub-reseller")
    MANAGER = "manager", _("Manager")
    CUSTOMER = "customer", _("Customer")
    CARD_DISTRIBUTOR = "card_distributor", _("Card distributor")


class NodeKind(models.TextChoices):
    ISP = "isp", _("ISP")
    RESELLER = "reseller", _("Reseller")
    SUB_RESELLER = "sub_reseller", _("Sub-reseller")
    CARD_DISTRIBUTOR = "card_distributor", _("Card distributor")


# Which node kind may hang under which: the ISP at the root, resellers under it,
# sub-resellers under resellers; card distributors under any selling node.
ALLOWED_CHILDREN: dict[str, set[str]] = {
    NodeKind.ISP: {NodeKind.RESELLER, NodeKind.CARD_DISTRIBUTOR},
    NodeKind.RESELLER: {NodeKind.SUB_RESELLER, NodeKind.CARD_DISTRIBUTOR},
    NodeKind.SUB_RESELLER: {NodeKind.CARD_DISTRIBUTOR},
    NodeKind.CARD_DISTRIBUTOR: set(),
}

# The role a user of a node has, and the node kinds a user of each role may attach to.
ROLE_NODE_KINDS: dict[str, set[str]] = {
    Role.ADMIN: {NodeKind.ISP},
    Role.RESELLER: {NodeKind.RESELLER},
    Role.SUB_RESELLER: {NodeKind.SUB_RESELLER},
    Role.MANAGER: {NodeKind.ISP, NodeKind.RESELLER, NodeKind.SUB_RESELLER},
    Role.CARD_DISTRIBUTOR: {NodeKind.CARD_DISTRIBUTOR},
    Role.CUSTOMER: set(),
    Role.SUPER_ADMIN: set(),
}

# Roles that see a node's whole subtree.
SUBTREE_ROLES = {Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER, Role.MANAGER}
# Roles that sell (own customers and price lists).
SELLER_ROLES = {Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER}


class ManagerPermission(models.TextChoices):
    VIEW_CUSTOMERS = "view_customers", _("View customers")
    CREATE_CUSTOMERS = "create_customers", _("Create customers")
    EDIT_CUSTOMERS = "edit_customers", _("Edit customers")
    COLLECT_CASH = "collect_cash", _("Collect cash")
    EDIT_PACKAGES = "edit_packages", _("Edit packages")
    MANAGE_NAS = "manage_nas", _("Manage routers (NAS)")
    VIEW_REPORTS = "view_reports", _("View reports")
    VIEW_LEDGER = "view_ledger", _("View balances and ledger")
    SEND_SMS = "send_sms", _("Send SMS")
    SEND_BULK_SMS = "send_bulk_sms", _("Send bulk SMS (campaigns, many numbers)")
    VIEW_SMS = "view_sms", _("View SMS messages and the inbox")
    MANAGE_ZONES = "manage_zones", _("Manage zones")
