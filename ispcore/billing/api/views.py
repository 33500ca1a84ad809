from ispcore.api.base import VisibleReadOnlyViewSet

from ..models import LedgerEntry, Wallet
from .serializers import LedgerEntrySerializer, WalletSerializer


class WalletViewSet(VisibleReadOnlyViewSet):
    """Balances of nodes, customers and (admins only) the ISP's system accounts. Read-only:
    money moves only through billing services."""

    queryset = Wallet.objects.all()
    serializer_class = WalletSerializer
    filterset_fields = ["node", "customer", "system_code"]


class LedgerEntryViewSet(VisibleReadOnlyViewSet):
    """The ledger, newest first, for the wallets the caller may see."""

    queryset = LedgerEntry.objects.all()
    serializer_class = LedgerEntrySerializer
    filterset_fields = ["wallet", "transaction"]
    select_related = ("transaction",)
