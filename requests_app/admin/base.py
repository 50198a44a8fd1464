"""Who may open which admin page: approvers see the requests routed to their groups (computed
from membership on every request, never stored), and platform admins' models are staff-only."""

from django.contrib import admin

from audit.admin_changes import AuditedAdmin, field_values
from requests_app import selectors


def is_approver(request) -> bool:
    # Asked several times per admin page; membership cannot change within one request.
    if not hasattr(request, "_airlock_is_approver"):
        request._airlock_is_approver = request.user.is_active and selectors.user_is_approver(
            user=request.user
        )
    return request._airlock_is_approver


def sees_all_requests(request) -> bool:
    return selectors.user_sees_all_requests(user=request.user)


def can_view_request(request, access_request=None) -> bool:
    if sees_all_requests(request):
        return True
    if not is_approver(request):
        return False
    if access_request is None:
        return True
    routed = selectors.requests_routed_to(user=request.user)
    return routed.filter(pk=access_request.pk).exists()


class PlatformAdminOnly(AuditedAdmin, admin.ModelAdmin):
    """For staff only: approvers never see these, whatever permissions they were given.
    Changes are written to the audit log too, in the admin's transaction."""

    def has_module_permission(self, request):
        return request.user.is_staff and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.is_staff and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return request.user.is_staff and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_staff and super().has_delete_permission(request, obj)

    def audit_snapshot(self, obj) -> dict:
        # Every admin write of these rows records the fields it changed, before and after.
        return field_values(obj, exclude=self.audit_excluded_fields)

    # Fields never written to the audit log (a secret's ciphertext, timestamps).
    audit_excluded_fields: tuple[str, ...] = ("created_at", "updated_at")
