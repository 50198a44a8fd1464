"""What every page needs to know: dry-run mode and whether GitHub sign-in is on."""

from django.conf import settings


def airlock(request):
    return {
        "airlock_dry_run": settings.AIRLOCK_DRY_RUN,
        "airlock_github_sso": settings.AIRLOCK_GITHUB_SSO,
    }
