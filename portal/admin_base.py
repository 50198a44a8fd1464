"""The admin base classes the apps' ModelAdmins share: the calendar-safe change list, the
list that counts only a few pages ahead, and filters whose choices come from an index. It
imports no app, so every app's admin may use it without pulling in the admin site's
dashboard."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.db import connection

from portal.pagination import BoundedCountPaginator


class CalendarChangeList(ChangeList):
    """Django's change list, refusing a date hierarchy off the calendar as bad lookup
    parameters (the list shows its "?e=1" notice), as it refuses other bad ones. Django
    checks only for ValueError while it makes the first date: a year of 99999999999999999999999
    (OverflowError), or of 9999, whose next year does not exist (ValueError, later), were
    500s.

    A list with a date filter instead of a hierarchy still takes `<field>__year=` in its
    address (old links, bookmarks): a year off the calendar is refused here too, since the
    filter would fail only when the query runs, a 500 in the list or its export."""

    def get_filters(self, request):
        for key, values in self.get_filters_params().items():
            if key.endswith("__year"):
                for value in values if isinstance(values, list) else [values]:
                    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 9999):
                        raise IncorrectLookupParameters(f"{key}={value} is not a year.")
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as refusal:
            raise IncorrectLookupParameters(refusal) from refusal


class DateHierarchyAdmin(admin.ModelAdmin):
    """The base of every ModelAdmin with a date_hierarchy, or with a date filter in its
    place (see CalendarChangeList)."""

    def get_changelist(self, request, **kwargs):
        return CalendarChangeList


class BoundedCountAdmin(admin.ModelAdmin):
    """A list that counts its rows only a few pages past the one shown (portal.pagination),
    and never the whole table for "N total" (show_full_result_count): on a table that only
    grows, a page costs what it shows. The pager says "more than N" where it stopped."""

    show_full_result_count = False
    # Pages counted past the one shown: enough to page on, and to jump a few pages ahead.
    count_pages_ahead = 10

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page = max(int(request.GET.get(PAGE_VAR, 1)), 1)
        except ValueError:
            page = 1  # the change list refuses it itself
        return BoundedCountPaginator(
            queryset,
            per_page,
            bound=(page + self.count_pages_ahead) * per_page,
            orphans=orphans,
            allow_empty_first_page=allow_empty_first_page,
        )


def distinct_values(model, field_name: str, *, limit: int, within=None) -> list:
    """The distinct values of one indexed column, in order, at most `limit` of them: a loose
    index scan (one index probe per value, "the least value after the last one") instead of
    a DISTINCT that reads every row. `within` = (field name, values) keeps to rows whose
    field is one of the values. One query, in SQL that PostgreSQL and SQLite both run."""
    statement = distinct_values_sql(model, field_name, limit=limit, within=within)
    if statement is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return [value for (value,) in cursor.fetchall()]


def distinct_values_sql(model, field_name: str, *, limit: int, within=None):
    """distinct_values' statement and parameters; None when `within` admits no row."""
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field_name).column)
    condition, params = "", []
    if within is not None:
        within_field, within_values = within
        within_values = list(within_values)
        if not within_values:
            return None
        within_column = connection.ops.quote_name(model._meta.get_field(within_field).column)
        placeholders = ", ".join(["%s"] * len(within_values))
        condition = f" AND {within_column} IN ({placeholders})"
        params = within_values
    sql = (
        f"WITH RECURSIVE found(value, n) AS ("
        f" SELECT MIN({column}), 1 FROM {table} WHERE 1 = 1{condition}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.value{condition}),"
        f" found.n + 1 FROM found WHERE found.value IS NOT NULL AND found.n < %s"
        f") SELECT value FROM found WHERE value IS NOT NULL ORDER BY n"
    )
    return sql, [*params, *params, limit]


class IndexedValuesFilter(admin.SimpleListFilter):
    """A filter on one indexed column (`field_name`, also the query parameter, as Django's
    own filter on a field names it), its choices read by distinct_values: as cheap on ten
    years of rows as on ten. A value beyond the first `limit` choices still filters when
    typed into the address, and search finds it."""

    field_name = ""
    limit = 100

    def __init__(self, request, params, model, model_admin):
        self.parameter_name = self.field_name
        super().__init__(request, params, model, model_admin)

    def choice_values(self, request, model_admin) -> list:
        return distinct_values(model_admin.model, self.field_name, limit=self.limit)

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.choice_values(request, model_admin)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field_name: self.value()})
