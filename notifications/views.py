"""The SMS panel pages (staff): compose with a live counter, campaigns with live progress,
the inbox, sent messages. Server-rendered Django templates, English and Bangla (gettext).

No business rule lives here: sending goes through ``services.queue_message`` (one number)
or ``campaigns.create_campaign`` + ``start_campaign`` (several), the lists through
``visible_to(user)``, and the counter asks ``/api/v1/sms/preview/``, which answers with
``notifications.encoding.segment`` itself, so the page can never count differently."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _

from . import campaigns, services
from .api.views import may_send, reads_sms
from .models import Campaign, InboundMessage, Message, SenderId

LOGIN_URL = reverse_lazy("sms:login")


class LoginView(auth_views.LoginView):
    template_name = "notifications/sms/login.html"
    redirect_authenticated_user = True


def _staff(view):
    """Login required; then only users who may read or send SMS (403 otherwise)."""

    @login_required(login_url=LOGIN_URL)
    def wrapped(request, *args, **kwargs):
        if not (reads_sms(request.user) or may_send(request.user, False)):
            raise PermissionDenied(_("You may not use the SMS panel."))
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _tenant(request):
    tenant = request.user.tenant
    if tenant is None:
        raise PermissionDenied(_("The SMS panel works inside one ISP; use the API with a tenant id."))
    return tenant


def _numbers(raw: str) -> list[str]:
    import re

    return [n for n in re.split(r"[\s,;]+", raw or "") if n]


@_staff
def compose(request):
    """Compose and send: one number is a single message, several are a campaign."""
    tenant = _tenant(request)
    lines = SenderId.objects.visible_to(request.user).filter(tenant=tenant, is_active=True)
    form = {"numbers": "", "text": "", "sender": "", "promotional": False, "name": ""}
    errors: list[str] = []
    sent = None
    if request.method == "POST":
        form = {"numbers": request.POST.get("numbers", ""), "text": request.POST.get("text", ""),
                "sender": request.POST.get("sender", ""), "promotional": request.POST.get("promotional") == "on",
                "name": request.POST.get("name", "").strip()}
        numbers = _numbers(form["numbers"])
        bulk = len(numbers) > 1
        if not numbers:
            errors.append(_("Enter at least one number."))
        elif not may_send(request.user, bulk):
            errors.append(_("You may not send bulk SMS.") if bulk else _("You may not send SMS."))
        else:
            try:
                with transaction.atomic():
                    if bulk:
                        campaign = campaigns.create_campaign(
                            tenant=tenant, actor=request.user, name=form["name"] or _("Quick send"),
                            audience={"kind": "numbers", "numbers": numbers}, body=form["text"],
                            sender=form["sender"] or None, promotional=form["promotional"])
                        campaigns.start_campaign(campaign, actor=request.user)
                        return redirect("sms:campaigns")
                    sent = services.queue_message(tenant=tenant, to=numbers[0], text=form["text"],
                                                  kind=Message.Kind.SINGLE, actor=request.user,
                                                  sender=form["sender"] or None, promotional=form["promotional"])
                    form = {**form, "numbers": "", "text": ""}
            except ValidationError as exc:
                errors.extend(exc.messages)
    return render(request, "notifications/sms/compose.html", {
        "form": form, "lines": lines, "errors": errors, "sent": sent, "may_bulk": may_send(request.user, True),
        "active": "compose"}, status=400 if errors else 200)


@_staff
def campaign_list(request):
    """Campaigns the user may see; running ones update their progress live."""
    rows = Campaign.objects.visible_to(request.user).order_by("-id")
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "notifications/sms/campaigns.html", {"page": page, "active": "campaigns"})


@_staff
def inbox(request):
    """Incoming messages on the dedicated lines, newest first."""
    rows = InboundMessage.objects.visible_to(request.user).select_related("line", "reply", "customer") \
        .order_by("-received_at", "-id")
    status = request.GET.get("status")
    if status in InboundMessage.Status.values:
        rows = rows.filter(status=status)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "notifications/sms/inbox.html", {"page": page, "status": status,
                                                            "statuses": InboundMessage.Status.choices,
                                                            "active": "inbox"})


@_staff
def message_list(request):
    """Sent messages the user may see, with their delivery state."""
    rows = Message.objects.visible_to(request.user).order_by("-id")
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "notifications/sms/messages.html", {"page": page, "active": "messages"})
