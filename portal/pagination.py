"""Counting for paginated lists, the API's and the admin's, that costs what the page costs
and not what the table holds: rows are counted only up to a bound a little past the page
asked for, and the list says whether its count stopped there.

A full COUNT(*) reads every matching row (or index entry) on every call, so a list of the
newest 50 of 300,000 requests spends nearly all its time counting the other 299,950. Past
the bound nobody needs the exact number to page on: the next page is known to exist."""

from functools import cached_property

from django.core.paginator import Paginator


def count_up_to(queryset, bound: int) -> int:
    """How many rows the queryset holds, counting no further than `bound`: a COUNT over a
    LIMITed subquery, without the ordering or the joins the page itself needs."""
    return queryset.order_by().values("pk")[:bound].count()


class BoundedCount:
    """A count that stops at `bound`: `count` is exact when `exact`, else a lower bound."""

    def __init__(self, queryset, bound: int):
        counted = count_up_to(queryset, bound + 1)
        self.exact = counted <= bound
        self.count = min(counted, bound)


class BoundedCountPaginator(Paginator):
    """Django's paginator, counting only up to `bound` rows (the admin's lists: see
    portal.admin_base.BoundedCountAdmin). `count_exact` says whether it stopped short."""

    def __init__(self, object_list, per_page, *, bound: int, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.bound = bound

    @cached_property
    def _bounded(self) -> BoundedCount:
        return BoundedCount(self.object_list, self.bound)

    @cached_property
    def count(self) -> int:
        return self._bounded.count

    @property
    def count_exact(self) -> bool:
        return self._bounded.exact
