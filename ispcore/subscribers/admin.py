from django import forms
from django.contrib import admin

from ispcore.accounts.admin_base import ScopedAdmin

from .models import Customer, Nas, Zone


class SecretsForm(forms.ModelForm):
    """Secrets are never shown back; an empty field keeps the stored value."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            if name in self.fields:
                self.fields[name] = forms.CharField(
                    widget=forms.PasswordInput(render_value=False), required=self.instance.pk is None,
                    help_text="Leave empty to keep the current value." if self.instance.pk else "",
                )

    def clean(self):
        data = super().clean()
        for name in self.secret_fields:
            if name in data and not data[name] and self.instance.pk:
                data[name] = getattr(self.instance, name)
        return data


class NasForm(SecretsForm):
    secret_fields = ("secret", "api_password")

    class Meta:
        model = Nas
        fields = ["tenant", "name", "ip_address", "secret", "nas_type", "require_message_authenticator", "coa_port",
                  "api_username", "api_password", "api_port", "api_use_ssl", "api_verify_tls", "is_active"]


class CustomerForm(SecretsForm):
    secret_fields = ("password",)

    class Meta:
        model = Customer
        fields = ["tenant", "node", "user", "customer_type", "username", "password", "full_name", "mobile", "email",
                  "zone", "address", "status", "package", "expires_at", "simultaneous_use", "mac_address", "static_ip"]


@admin.register(Zone)
class ZoneAdmin(ScopedAdmin):
    list_display = ["name", "parent"]
    search_fields = ["name"]


@admin.register(Nas)
class NasAdmin(ScopedAdmin):
    form = NasForm
    list_display = ["name", "ip_address", "nas_type", "require_message_authenticator", "is_active"]


@admin.register(Customer)
class CustomerAdmin(ScopedAdmin):
    form = CustomerForm
    list_display = ["username", "full_name", "customer_type", "status", "package", "expires_at", "node"]
    list_filter = ["customer_type", "status"]
    search_fields = ["username", "full_name", "mobile"]
    list_select_related = ["package", "node"]
    raw_id_fields = ["user"]
