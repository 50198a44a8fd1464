"""The portal's own app config: the admin site, and what the portal wires up at start."""

from django.contrib.admin.apps import AdminConfig


class AirlockAdminConfig(AdminConfig):
    default_site = "portal.admin_site.AirlockAdminSite"

    def ready(self):
        # The corrected __in lookup is registered before the admin, which relies on it,
        # discovers the apps' admin modules.
        import portal.lookups  # noqa: F401

        super().ready()
        from django.contrib.auth.signals import user_login_failed

        from portal import checks  # noqa: F401  (registers the portal's system checks)
        from portal.ratelimit import sign_in_failed

        # Every failed password sign-in, on whichever form, counts towards its limits.
        user_login_failed.connect(sign_in_failed, dispatch_uid="airlock.sign_in_failed")
