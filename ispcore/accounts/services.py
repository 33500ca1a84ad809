"""Writes for tenants, the node tree and users. Each function runs one transaction,
takes the acting user explicitly and records an audit event."""
from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ispcore.core import audit

from .models import AccountNode, Tenant, User
from .policy import ASSIGNABLE_ROLES
from .roles import ALLOWED_CHILDREN, ROLE_NODE_KINDS, ManagerPermission, NodeKind, Role


def _full_clean(obj, exclude=None) -> None:
    obj.full_clean(exclude=exclude, validate_unique=True)


@transaction.atomic
def create_tenant(*, actor, name: str, slug: str, timezone: str = "Asia/Dhaka", currency: str = "BDT",
                  vat_percent=0, phone_region: str = "BD", sms_settings: dict | None = None) -> Tenant:
    """Create an ISP with its root node, the root's wallet and the system accounts."""
    from ispcore.billing.services import open_system_wallets, open_wallet

    tenant = Tenant(name=name, slug=slug, timezone=timezone, currency=currency, vat_percent=vat_percent,
                    phone_region=phone_region, sms_settings=sms_settings or {})
    _full_clean(tenant)
    tenant.save()
    root = AccountNode.objects.create(tenant=tenant, kind=NodeKind.ISP, name=name)
    _set_path(root)
    open_wallet(tenant=tenant, node=root)
    open_system_wallets(tenant)
    audit.record("tenant.create", tenant, actor=actor, tenant_id=tenant.id)
    return tenant


@transaction.atomic
def update_tenant(tenant: Tenant, *, actor, **fields) -> Tenant:
    for key, value in fields.items():
        setattr(tenant, key, value)
    _full_clean(tenant)
    tenant.save()
    audit.record("tenant.update", tenant, actor=actor, tenant_id=tenant.id, fields=sorted(fields))
    return tenant


def _set_path(node: AccountNode) -> None:
    parent_path = node.parent.path if node.parent_id else "/"
    node.path = f"{parent_path}{node.id}/"
    node.depth = 0 if not node.parent_id else node.parent.depth + 1
    AccountNode.objects.filter(pk=node.pk).update(path=node.path, depth=node.depth)


@transaction.atomic
def create_node(*, actor, parent: AccountNode, kind: str, name: str, billing_mode: str = "prepaid",
                credit_limit=0, mobile: str = "") -> AccountNode:
    """Add a reseller, sub-reseller or card distributor under `parent`, with its wallet."""
    from ispcore.billing.services import open_wallet

    if kind not in ALLOWED_CHILDREN.get(parent.kind, set()):
        raise ValidationError({"kind": _("A %(kind)s cannot be placed under a %(parent)s.") % {
            "kind": kind, "parent": parent.kind}})
    if not parent.is_active:
        raise ValidationError({"parent": _("The parent account is deactivated.")})
    if billing_mode == AccountNode.BillingMode.PREPAID and credit_limit:
        raise ValidationError({"credit_limit": _("A prepaid account has no credit limit.")})
    node = AccountNode(tenant=parent.tenant, parent=parent, kind=kind, name=name,
                       billing_mode=billing_mode, mobile=mobile)
    _full_clean(node, exclude=["path"])
    node.save()
    _set_path(node)
    open_wallet(tenant=parent.tenant, node=node, credit_limit=credit_limit or 0)
    audit.record("node.create", node, actor=actor, parent=parent.id, kind=kind)
    return node


@transaction.atomic
def update_node(node: AccountNode, *, actor, **fields) -> AccountNode:
    allowed = {"name", "mobile", "is_active"}
    bad = set(fields) - allowed
    if bad:
        raise ValidationError({k: _("This field cannot be changed after creation.") for k in bad})
    if node.parent_id is None and fields.get("is_active") is False:
        raise ValidationError({"is_active": _("The ISP's root account cannot be deactivated.")})
    for key, value in fields.items():
        setattr(node, key, value)
    _full_clean(node, exclude=["path"])
    node.save()
    audit.record("node.update", node, actor=actor, fields=sorted(fields))
    return node


def _check_user_fields(actor, *, tenant: Tenant | None, role: str, node: AccountNode | None, permissions) -> None:
    if actor is not None and role not in ASSIGNABLE_ROLES.get(actor.role, set()):
        raise PermissionDenied(_("You cannot create or change users with the role %(role)s.") % {"role": role})
    if role == Role.CUSTOMER:
        raise ValidationError({"role": _("Customer logins are created from the customer's record.")})
    if role == Role.SUPER_ADMIN:
        if tenant is not None or node is not None:
            raise ValidationError({"tenant": _("A super admin belongs to no tenant.")})
        return
    if node is None:
        raise ValidationError({"node": _("This role needs an account node.")})
    if tenant is not None and node.tenant_id != tenant.id:
        raise ValidationError({"node": _("The node belongs to another tenant.")})
    if node.kind not in ROLE_NODE_KINDS[role]:
        raise ValidationError({"node": _("A %(role)s cannot be attached to a %(kind)s.") % {"role": role, "kind": node.kind}})
    if permissions and role != Role.MANAGER:
        raise ValidationError({"permissions": _("Only managers have granular permissions.")})
    unknown = set(permissions or []) - set(ManagerPermission.values)
    if unknown:
        raise ValidationError({"permissions": _("Unknown permissions: %s") % ", ".join(sorted(unknown))})


@transaction.atomic
def create_user(*, actor, username: str, password: str, role: str, node: AccountNode | None = None,
                email: str = "", first_name: str = "", last_name: str = "", permissions=None,
                mobile: str = "") -> User:
    """Create a panel login with one role attached to a node of the actor's subtree."""
    tenant = node.tenant if node is not None else None
    _check_user_fields(actor, tenant=tenant, role=role, node=node, permissions=permissions)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": _("This username is taken.")})
    user = User(username=username, role=role, tenant=tenant, node=node, email=email, first_name=first_name,
                last_name=last_name, permissions=sorted(set(permissions or [])), mobile=mobile,
                is_staff=role in (Role.SUPER_ADMIN, Role.ADMIN), is_superuser=role == Role.SUPER_ADMIN)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    _full_clean(user, exclude=["password"])
    user.save()
    audit.record("user.create", user, actor=actor, tenant_id=user.tenant_id, role=role)
    return user


@transaction.atomic
def update_user(user: User, *, actor, password: str | None = None, **fields) -> User:
    allowed = {"email", "first_name", "last_name", "permissions", "is_active", "mobile"}
    bad = set(fields) - allowed
    if bad:
        raise ValidationError({k: _("This field cannot be changed here.") for k in bad})
    if actor is not None and user.pk != actor.pk:
        _check_user_fields(actor, tenant=user.tenant, role=user.role, node=user.node,
                           permissions=fields.get("permissions", user.permissions))
    elif "permissions" in fields:
        raise PermissionDenied(_("You cannot change your own permissions."))
    for key, value in fields.items():
        setattr(user, key, value)
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
        user.set_password(password)
    user.save()
    audit.record("user.update", user, actor=actor, tenant_id=user.tenant_id, fields=sorted(fields))
    return user
