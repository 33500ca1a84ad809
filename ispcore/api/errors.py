"""One error body for every API failure:

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"mobile": ["..."]}}}

Django ValidationError and PermissionDenied raised by services become 400 and 403
with the same shape, so a client parses one format."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler


def _fields_from_django(exc: DjangoValidationError) -> dict:
    if hasattr(exc, "error_dict"):
        return {("non_field_errors" if k == "__all__" else k): v for k, v in exc.message_dict.items()}
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_fields_from_django(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    from ispcore.billing.services import LedgerError

    if isinstance(exc, LedgerError):
        return Response(
            {"error": {"status": 409, "code": "ledger", "message": str(exc), "fields": {}}},
            status=status.HTTP_409_CONFLICT,
        )
    response = drf_handler(exc, context)
    if response is None:
        return None
    data = response.data
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(data, dict):
            fields = data
        else:
            fields = {"non_field_errors": data}
        message = "; ".join(
            f"{name}: {' '.join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))}"
            for name, msgs in fields.items()
        )
        code = "invalid"
    else:
        message = str(data.get("detail", data)) if isinstance(data, dict) else str(data)
        code = getattr(getattr(exc, "detail", None), "code", None) or getattr(exc, "default_code", "error")
    response.data = {"error": {"status": response.status_code, "code": code, "message": message, "fields": fields}}
    return response
