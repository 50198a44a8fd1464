"""The admin base classes the apps' ModelAdmins share; it imports no app, so every app's
admin may use it without pulling in the admin site's dashboard."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList


class CalendarChangeList(ChangeList):
    """Django's change list, refusing a date hierarchy off the calendar as bad lookup
    parameters (the list shows its "?e=1" notice), as it refuses other bad ones. Django
    checks only for ValueError while it makes the first date: a year of 99999999999999999999999
    (OverflowError), or of 9999, whose next year does not exist (ValueError, later), were
    500s."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as refusal:
            raise IncorrectLookupParameters(refusal) from refusal


class DateHierarchyAdmin(admin.ModelAdmin):
    """The base of every ModelAdmin with a date_hierarchy (see CalendarChangeList)."""

    def get_changelist(self, request, **kwargs):
        return CalendarChangeList
