"""The secret definition admin (staff only): the value is write-only."""

from django.contrib import admin

from integrations.github.permissions import format_permissions
from requests_app.admin.base import PlatformAdminOnly
from requests_app.forms import SecretDefinitionAdminForm
from requests_app.models import SecretDefinition


@admin.register(SecretDefinition)
class SecretDefinitionAdmin(PlatformAdminOnly):
    form = SecretDefinitionAdminForm
    list_display = ("name", "kind", "org", "permissions_column", "value_column", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "org")
    fields = ("name", "kind", "org", "permissions", "value_column", "new_value")
    readonly_fields = ("value_column",)
    # Compared to record that the value changed; the ciphertext itself is never written.
    audit_secret_fields = ("encrypted_value",)

    @admin.display(description="value")
    def value_column(self, obj):
        if obj.kind == SecretDefinition.Kind.ORGANIZATION:
            return "kept on GitHub (organization secret)"
        if obj.kind == SecretDefinition.Kind.GITHUB_TOKEN:
            return "a token minted for each grant; none is stored here"
        if not obj.has_value:
            return "no value"
        if obj.value_updated_at:
            return f"value set on {obj.value_updated_at:%Y-%m-%d %H:%M %Z}"
        return "value set"

    @admin.display(description="permissions")
    def permissions_column(self, obj):
        if not isinstance(obj.permissions, dict) or not obj.permissions:
            return "-"
        return format_permissions(obj.permissions)
