from django.contrib.admin.apps import AdminConfig


class AirlockAdminConfig(AdminConfig):
    default_site = "portal.admin_site.AirlockAdminSite"
