from django.contrib.admin.apps import AdminConfig


class AirlockAdminConfig(AdminConfig):
    default_site = "portal.admin_site.AirlockAdminSite"

    def ready(self):
        # The corrected __in lookup is registered before the admin, which relies on it,
        # discovers the apps' admin modules.
        import portal.lookups  # noqa: F401

        super().ready()
