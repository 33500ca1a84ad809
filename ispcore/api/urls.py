from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from ispcore.accounts.api.views import NodeViewSet, TenantViewSet, UserViewSet, me
from ispcore.billing.api.reports import ReceivablesView
from ispcore.billing.api.sales import InvoiceViewSet, PackageSaleViewSet, PaymentViewSet
from ispcore.billing.api.views import LedgerEntryViewSet, WalletViewSet
from ispcore.catalog.api.views import PackageViewSet, PriceListEntryViewSet
from ispcore.subscribers.api.views import CustomerViewSet, NasViewSet, ZoneViewSet

router = DefaultRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("nodes", NodeViewSet, basename="node")
router.register("users", UserViewSet, basename="user")
router.register("packages", PackageViewSet, basename="package")
router.register("price-list", PriceListEntryViewSet, basename="pricelistentry")
router.register("zones", ZoneViewSet, basename="zone")
router.register("nas", NasViewSet, basename="nas")
router.register("customers", CustomerViewSet, basename="customer")
router.register("wallets", WalletViewSet, basename="wallet")
router.register("ledger", LedgerEntryViewSet, basename="ledgerentry")
router.register("sales", PackageSaleViewSet, basename="packagesale")
router.register("payments", PaymentViewSet, basename="payment")
router.register("invoices", InvoiceViewSet, basename="invoice")

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("me/", me, name="api-me"),
    path("reports/receivables/", ReceivablesView.as_view(), name="api-receivables"),
    path("ipam/", include("ipam.api.urls")),
    path("cards/", include("ispcore.cards.api.urls")),
    path("", include("mikrotik.api.urls")),
    path("sms/", include("notifications.api.urls")),
    path("", include(router.urls)),
]
