"""API for selling packages, taking payments and reading invoices."""
from __future__ import annotations

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.decorators import action

from ispcore.api.base import ServiceSerializer, VisibleModelViewSet, VisibleReadOnlyViewSet

from .. import sales
from ..models import Invoice, InvoiceLine, PackageSale, Payment


class PackageSaleSerializer(ServiceSerializer):
    idempotency_key = serializers.CharField(max_length=150)

    class Meta:
        model = PackageSale
        fields = ["id", "customer", "package", "payer", "price", "node", "previous_expiry", "new_expiry",
                  "idempotency_key", "created_at"]
        read_only_fields = ["price", "node", "previous_expiry", "new_expiry", "created_at"]
        validators = []

    def service_create(self, data, *, actor):
        return sales.purchase_package(data["customer"], data["package"], actor=actor,
                                      payer=data.get("payer", PackageSale.Payer.CUSTOMER),
                                      idempotency_key=f"api:{actor.pk}:{data['idempotency_key']}")


class PaymentSerializer(ServiceSerializer):
    idempotency_key = serializers.CharField(max_length=150, write_only=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)

    class Meta:
        model = Payment
        fields = ["id", "customer", "amount", "method", "receipt_number", "reference", "collected_by",
                  "deposited_at", "received_at", "idempotency_key"]
        read_only_fields = ["receipt_number", "collected_by", "deposited_at", "received_at"]
        validators = []

    def service_create(self, data, *, actor):
        return sales.record_payment(data["customer"], data["amount"], method=data["method"], actor=actor,
                                    reference=data.get("reference", ""),
                                    idempotency_key=f"api:{actor.pk}:{data['idempotency_key']}")


class InvoiceLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = ["description", "quantity", "unit_price", "amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)
    outstanding = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = Invoice
        fields = ["id", "number", "customer", "period", "issued_at", "due_date", "subtotal", "discount", "vat_percent",
                  "vat", "total", "previous_due", "paid", "outstanding", "status", "lines"]
        read_only_fields = fields


class PackageSaleViewSet(VisibleModelViewSet):
    """Sell a package to a customer (POST, idempotent by key) and list past sales."""

    queryset = PackageSale.objects.all()
    serializer_class = PackageSaleSerializer
    filterset_fields = ["customer", "package", "payer", "node"]
    http_method_names = ["get", "post", "head", "options"]


class PaymentViewSet(VisibleModelViewSet):
    """Record a payment (POST, idempotent by key); it settles the oldest open invoices first."""

    queryset = Payment.objects.all()
    serializer_class = PaymentSerializer
    filterset_fields = ["customer", "method", "collected_by"]
    http_method_names = ["get", "post", "head", "options"]

    @action(detail=True, methods=["get"])
    def receipt(self, request, pk=None):
        """The payment's receipt as PDF."""
        from ..documents import receipt_pdf

        payment = self.get_object()
        return _download(receipt_pdf(payment), "application/pdf", f"receipt-{payment.receipt_number}.pdf")


class InvoiceViewSet(VisibleReadOnlyViewSet):
    """Monthly invoices, newest first."""

    queryset = Invoice.objects.all()
    serializer_class = InvoiceSerializer
    filterset_fields = ["customer", "status", "period"]

    def get_queryset(self):
        return super().get_queryset().prefetch_related("lines")

    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        """The invoice as PDF (English and Bangla)."""
        from ..documents import invoice_pdf

        invoice = self.get_object()
        return _download(invoice_pdf(invoice), "application/pdf", f"{invoice.number}.pdf")

    @action(detail=False, methods=["get"])
    def xlsx(self, request):
        """The filtered invoice list as an Excel workbook."""
        from ..documents import invoices_xlsx

        qs = self.filter_queryset(self.get_queryset()).select_related("customer")
        return _download(invoices_xlsx(qs), XLSX, "invoices.xlsx")


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
