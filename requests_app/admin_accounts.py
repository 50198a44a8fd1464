"""Django's user, group and GitHub-account admin with Airlock's rules: usernames unique case
aside, and every change to who may do what audited with before and after."""

from allauth.socialaccount.admin import SocialAccountAdmin as AllauthSocialAccountAdmin
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.admin import sensitive_post_parameters_m
from django.contrib.auth.models import Group
from django.db import router, transaction

from audit.admin_changes import AuditedAdmin
from requests_app.forms import UserAdminChangeForm, UserAdminCreationForm

User = get_user_model()


def _permission_names(permissions) -> list[str]:
    return sorted(
        f"{p.content_type.app_label}.{p.codename}"
        for p in permissions.select_related("content_type")
    )


admin.site.unregister(User)
# GitHub's OAuth app is configured in settings (GITHUB_OAUTH_CLIENT_ID and _SECRET): a
# GitHub app added here as well makes allauth's sign-in pages fail for everyone. Airlock
# stores no OAuth tokens (SOCIALACCOUNT_STORE_TOKENS is off), and they would be secrets.
admin.site.unregister(SocialApp)
admin.site.unregister(SocialToken)


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    # Compared to record "password" as changed; the hash itself is never written.
    audit_secret_fields = ("password",)

    def audit_snapshot(self, obj) -> dict:
        return {
            "username": obj.username,
            "email": obj.email,
            "is_active": obj.is_active,
            "is_staff": obj.is_staff,
            "is_superuser": obj.is_superuser,
            "groups": sorted(obj.groups.values_list("name", flat=True)),
            "user_permissions": _permission_names(obj.user_permissions.all()),
            "has_usable_password": obj.has_usable_password(),
            "password": obj.password,
        }

    @sensitive_post_parameters_m
    def user_change_password(self, request, id, form_url=""):
        # Django's password view saves and logs outside a transaction; here both commit
        # together, and the event says the password changed.
        with transaction.atomic(using=router.db_for_write(self.model)):
            user = self.get_object(request, unquote(id))
            if user is not None:
                self.audit_before(request, user)
            return super().user_change_password(request, id, form_url)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedAdmin, DjangoGroupAdmin):
    def audit_snapshot(self, obj) -> dict:
        return {"name": obj.name, "permissions": _permission_names(obj.permissions.all())}

    def audit_context(self, obj) -> dict:
        # Who the group's permissions reach.
        return {"members": sorted(obj.user_set.values_list("username", flat=True))}


admin.site.unregister(SocialAccount)


@admin.register(SocialAccount)
class SocialAccountAdmin(AuditedAdmin, AllauthSocialAccountAdmin):
    """Which portal user a GitHub account belongs to decides who that person is
    (selectors.approver_identity)."""

    def audit_snapshot(self, obj) -> dict:
        return {"user": obj.user.get_username(), "provider": obj.provider, "uid": obj.uid}
