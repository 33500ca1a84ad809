"""Receivables and income in one call, as JSON or as a CSV/XLSX export of one section."""
from __future__ import annotations

from datetime import date

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from ispcore.accounts.roles import ManagerPermission, Role

from ..selectors import receivables

SECTIONS = {
    "customers": ["customer", "username", "total", "0-30", "31-60", "61-90", "90+"],
    "staff_cash": ["user", "username", "undeposited", "payments"],
    "resellers": ["node", "name", "kind", "billing_mode", "balance", "owes", "holds", "credit_limit"],
}


class CanSeeReports(permissions.BasePermission):
    """The admin, resellers and sub-resellers (their subtree) and managers allowed to view reports."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.tenant_id):
            return False
        if user.role in (Role.ADMIN, Role.RESELLER, Role.SUB_RESELLER):
            return True
        return user.role == Role.MANAGER and user.has_manager_permission(ManagerPermission.VIEW_REPORTS)


class ReceivablesView(APIView):
    """What customers, staff and resellers owe or hold, with ageing, and income by source."""

    permission_classes = [CanSeeReports]

    @extend_schema(parameters=[
        OpenApiParameter("as_of", str, description="date for ageing, YYYY-MM-DD (default today)"),
        OpenApiParameter("export", str, enum=["csv", "xlsx"], description="download one section"),
        OpenApiParameter("section", str, enum=list(SECTIONS), description="the section to export"),
    ])
    def get(self, request):
        as_of = request.query_params.get("as_of")
        try:
            today = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise ValidationError({"as_of": ["Use YYYY-MM-DD."]}) from None
        data = receivables(request.user, today=today)
        export = request.query_params.get("export")
        if not export:
            return Response(data)
        section = request.query_params.get("section", "customers")
        if export not in ("csv", "xlsx") or section not in SECTIONS:
            raise ValidationError({"export": [f"Use export=csv|xlsx and section={'|'.join(SECTIONS)}."]})
        from ..documents import table_csv, table_xlsx

        headers = SECTIONS[section]
        rows = [[row.get(h) for h in headers] for row in data[section]]
        if export == "csv":
            body, ctype = table_csv(headers, rows), "text/csv; charset=utf-8"
        else:
            body = table_xlsx(f"Receivables: {section}", headers, rows)
            ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        response = HttpResponse(body, content_type=ctype)
        response["Content-Disposition"] = f'attachment; filename="receivables-{section}-{data["as_of"]}.{export}"'
        return response
