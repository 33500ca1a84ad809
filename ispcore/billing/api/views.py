from rest_framework.decorators import action

from ispcore.api.base import VisibleReadOnlyViewSet

from ..models import LedgerEntry, Wallet
from .serializers import LedgerEntrySerializer, WalletSerializer


class WalletViewSet(VisibleReadOnlyViewSet):
    """Balances of nodes, customers and (admins only) the ISP's system accounts. Read-only:
    money moves only through billing services."""

    queryset = Wallet.objects.all()
    serializer_class = WalletSerializer
    filterset_fields = ["node", "customer", "system_code"]

    @action(detail=True, methods=["get"])
    def statement(self, request, pk=None):
        """The wallet's ledger statement as an Excel workbook."""
        from ..documents import ledger_statement_xlsx
        from .sales import XLSX, _download

        wallet = self.get_object()
        entries = LedgerEntry.objects.filter(wallet=wallet).select_related("transaction")
        return _download(ledger_statement_xlsx(wallet, entries), XLSX, f"statement-{wallet.pk}.xlsx")


class LedgerEntryViewSet(VisibleReadOnlyViewSet):
    """The ledger, newest first, for the wallets the caller may see."""

    queryset = LedgerEntry.objects.all()
    serializer_class = LedgerEntrySerializer
    filterset_fields = ["wallet", "transaction"]
    select_related = ("transaction",)
