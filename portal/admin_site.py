"""The admin site: platform admins (staff) and approvers share it.

Approvers are not staff. They get in because they belong to an approver group, and lose
access the moment they leave it; nothing has to be kept in sync.
"""

from django.contrib import admin


class AirlockAdminSite(admin.AdminSite):
    site_header = "Airlock administration"
    site_title = "Airlock"
    index_title = "Access requests, policies and audit"

    @property
    def login_form(self):
        # Django's admin login form admits staff only; approvers sign in here too.
        from requests_app.forms import AdminLoginForm

        return AdminLoginForm

    def has_permission(self, request):
        from requests_app.selectors import user_is_approver

        user = request.user
        return user.is_active and (user.is_staff or user_is_approver(user=user))
