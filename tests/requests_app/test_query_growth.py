"""The requester's and the admin's pages as history grows: "My requests", the admin's
request list (unfiltered, filtered, searched) and its dashboard take as many queries for 30
requests as for 3, read nothing per row, and show what they showed before; on PostgreSQL
the break-glass count reads its own index."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.admin_base import distinct_values_sql
from requests_app.models import AccessRequest
from requests_app.selectors import (
    admin_dashboard_requests,
    request_extended_until,
    requests_extended_until,
)
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
MINE = reverse("requests_app:my-requests")
CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")
INDEX = reverse("admin:index")


def queries_taken(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


def an_active_request_extended_twice(requester, policy, now):
    """An active request, its active extension, and that one's approved extension."""
    original = AccessRequestFactory(
        requester=requester, policy=policy, status=Status.ACTIVE,
        granted_at=now, expires_at=now + timedelta(hours=1),
    )
    first = AccessRequestFactory(
        requester=requester, policy=policy, extends=original, status=Status.ACTIVE,
        granted_at=now, expires_at=now + timedelta(hours=2),
    )
    second = AccessRequestFactory(
        requester=requester, policy=policy, extends=first, status=Status.APPROVED,
        expires_at=now + timedelta(hours=3),
    )
    return original, first, second


def some_of_everything(requester, policy, approver, n, now):
    """n rows of each kind "My requests" shows: pending with an approval, and active with
    an extension that continues it."""
    for i in range(n):
        pending = AccessRequestFactory(requester=requester, policy=policy, environment=f"p{i}")
        pending.approvals.create(approver=approver, approver_identity=f"login:{approver}")
        original = AccessRequestFactory(
            requester=requester, policy=policy, environment=f"a{i}", status=Status.ACTIVE,
            granted_at=now, expires_at=now + timedelta(hours=1),
        )
        AccessRequestFactory(
            requester=requester, policy=policy, environment=f"a{i}", extends=original,
            status=Status.APPROVED,
        )


# --- My requests ------------------------------------------------------------------------------


def test_my_requests_takes_as_many_queries_for_thirty_requests_as_for_three(
    client, django_assert_num_queries
):
    policy, _, users = approver_setup()
    dev = UserFactory(username="dev")
    client.force_login(dev)
    now = timezone.now()
    some_of_everything(dev, policy, users["alice"], 1, now)
    client.get(MINE)
    few = queries_taken(lambda: client.get(MINE))
    some_of_everything(dev, policy, users["alice"], 10, now)

    with django_assert_num_queries(few):
        response = client.get(MINE)

    assert len(response.context["access_requests"]) == 33
    page = response.content.decode()
    assert page.count("1 of 2") == 11  # every pending row's approval, counted for the page


def test_my_requests_shows_where_a_chain_of_extensions_ends(client):
    policy, _, _ = approver_setup()
    dev = UserFactory(username="dev")
    client.force_login(dev)
    now = timezone.now()
    original, first, second = an_active_request_extended_twice(dev, policy, now)

    rows = {r.pk: r for r in client.get(MINE).context["access_requests"]}

    # The original and its first extension both run on to the end of the second.
    assert rows[original.pk].extended_until == second.expires_at
    assert rows[first.pk].extended_until == second.expires_at
    assert rows[second.pk].extended_until is None


def test_the_ends_of_many_requests_are_those_of_each_alone():
    policy, _, _ = approver_setup()
    dev = UserFactory(username="dev")
    now = timezone.now()
    chain = an_active_request_extended_twice(dev, policy, now)
    lone = AccessRequestFactory(requester=dev, policy=policy, status=Status.APPROVED)
    # An extension that was denied does not continue anything.
    denied_after = AccessRequestFactory(
        requester=dev, policy=policy, status=Status.ACTIVE, granted_at=now,
        expires_at=now + timedelta(hours=1),
    )
    AccessRequestFactory(
        requester=dev, policy=policy, extends=denied_after, status=Status.DENIED,
        expires_at=now + timedelta(hours=5),
    )
    everything = [*chain, lone, denied_after]

    together = requests_extended_until(access_requests=everything)

    assert together == {r.pk: request_extended_until(access_request=r) for r in everything}
    assert together[chain[0].pk] == chain[2].expires_at
    assert together[denied_after.pk] is None


# --- the admin's request list -----------------------------------------------------------------


@pytest.fixture
def routed_world():
    """alice approves acme/* under one policy; a policy of others covers other/*."""
    policy, _, users = approver_setup()
    others = AccessPolicyFactory(name="others", repository_patterns=["other/*"])
    root = UserFactory(username="root", is_staff=True, is_superuser=True)

    def more(n):
        for i in range(n):
            AccessRequestFactory(policy=policy, repository=f"acme/r{i % 3}")
            AccessRequestFactory(policy=others, repository="other/secret-project")

    more.policy = policy
    return users["alice"], root, more


@pytest.mark.parametrize("who", ["approver", "platform admin"])
@pytest.mark.parametrize(
    "query",
    [
        "?awaiting=all",
        "",  # an approver's default: what awaits their decision
        "?awaiting=all&repository=acme/r1",
        "?awaiting=all&status=pending&created_at__gte=2000-01-01T00%3A00%3A00%2B00%3A00",
        "?awaiting=all&lifecycle=break_glass_review",
        "?awaiting=all&q=acme",
        # Requesters matched by username (every new one's, "userN"), two words, a number.
        "?awaiting=all&q=user+acme",
        "?awaiting=all&q=1",
    ],
)
def test_the_request_list_takes_as_many_queries_for_thirty_requests_as_for_three(
    client, routed_world, who, query, django_assert_num_queries
):
    alice, root, more = routed_world
    client.force_login(alice if who == "approver" else root)
    more(3)
    client.get(CHANGELIST + query)
    few = queries_taken(lambda: client.get(CHANGELIST + query))
    more(27)

    with django_assert_num_queries(few):
        response = client.get(CHANGELIST + query)

    assert response.status_code == 200


def test_the_request_list_runs_no_distinct_and_no_count_of_every_row(client, routed_world):
    _, root, more = routed_world
    more(5)
    client.force_login(root)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(CHANGELIST + "?awaiting=all")
    assert response.status_code == 200
    statements = [q["sql"].upper() for q in captured]
    assert not [sql for sql in statements if "DISTINCT" in sql and "ACCESSREQUEST" in sql]
    counts = [sql for sql in statements if "COUNT(" in sql and "ACCESSREQUEST" in sql]
    # The list's own count, a few pages ahead; approvals are counted for the page's rows.
    assert all("LIMIT" in sql or "APPROVAL" in sql for sql in counts), counts


def test_the_repository_and_environment_filters_offer_what_the_user_may_see(
    client, routed_world
):
    alice, root, more = routed_world
    more(3)
    AccessRequestFactory(
        policy=AccessPolicyFactory(name="staging", environment_patterns=["staging"]),
        repository="other/secret-project", environment="staging",
    )

    def choices(user, title):
        client.force_login(user)
        response = client.get(CHANGELIST + "?awaiting=all")
        (spec,) = [s for s in response.context["cl"].filter_specs if s.title == title]
        return [value for value, _ in spec.lookup_choices]

    assert choices(root, "repository") == [
        "acme/r0", "acme/r1", "acme/r2", "other/secret-project",
    ]
    assert choices(root, "environment") == ["production", "staging"]
    # Not routed to alice: no name of it leaks into her filter.
    assert choices(alice, "repository") == ["acme/r0", "acme/r1", "acme/r2"]
    assert choices(alice, "environment") == ["production"]


def response_policies(client, user):
    client.force_login(user)
    response = client.get(CHANGELIST + "?awaiting=all")
    (spec,) = [s for s in response.context["cl"].filter_specs if s.title == "policy"]
    return spec.lookup_choices


def test_the_filters_and_search_still_find_the_requests(client, routed_world):
    alice, root, more = routed_world
    more(3)
    client.force_login(root)

    def shown(query):
        return {r.repository for r in client.get(CHANGELIST + query).context["cl"].result_list}

    assert shown("?awaiting=all&repository=acme/r1") == {"acme/r1"}
    assert shown("?awaiting=all&environment=production") == {
        "acme/r0", "acme/r1", "acme/r2", "other/secret-project",
    }
    others = dict((name, pk) for pk, name in response_policies(client, root))["others"]
    assert shown(f"?awaiting=all&policy={others}") == {"other/secret-project"}
    assert shown("?awaiting=all&policy=nonsense") == set()
    assert shown("?awaiting=all&q=secret") == {"other/secret-project"}
    # The date filter's own "Today" link.
    response = client.get(CHANGELIST + "?awaiting=all")
    (dates,) = [s for s in response.context["cl"].filter_specs if s.title == "created at"]
    today = next(c for c in dates.choices(response.context["cl"]) if c["display"] == "Today")
    assert len(shown(today["query_string"])) == 4
    # alice's policy filter offers only what is routed to her.
    assert [name for _, name in response_policies(client, alice)] == [more.policy.name]


def test_a_long_list_says_it_stopped_counting(client, routed_world, settings):
    _, root, more = routed_world
    more(6)  # 12 requests
    client.force_login(root)
    admin_class = type(client.get(CHANGELIST).context["cl"].model_admin)
    original = (admin_class.list_per_page, admin_class.count_pages_ahead)
    admin_class.list_per_page, admin_class.count_pages_ahead = 2, 1
    try:
        first = client.get(CHANGELIST + "?awaiting=all")
        # Pages 1 and 2 counted (4 rows), and there are more.
        assert first.context["cl"].result_count == 4
        assert "more than 4 access requests" in first.content.decode()
        # Page 5 is reachable: the count follows the page asked for.
        fifth = client.get(CHANGELIST + "?awaiting=all&p=5")
        assert fifth.status_code == 200
        assert len(fifth.context["cl"].result_list) == 2
        last = client.get(CHANGELIST + "?awaiting=all&p=6")
        assert last.context["cl"].result_count == 12
        assert "12 access requests" in last.content.decode()
        assert "more than" not in last.content.decode()
    finally:
        admin_class.list_per_page, admin_class.count_pages_ahead = original


# --- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_takes_as_many_queries_for_thirty_requests_as_for_three(
    client, routed_world, django_assert_num_queries
):
    alice, root, more = routed_world
    now = timezone.now()

    def break_glass(n):
        for _ in range(n):
            AccessRequestFactory(
                policy=AccessPolicyFactory(name="policy-routed-bg"), break_glass=True,
                status=Status.ACTIVE, granted_at=now, expires_at=now + timedelta(minutes=30),
            )

    for user in (alice, root):
        client.force_login(user)
        more(3)
        break_glass(3)
        client.get(INDEX)
        few = queries_taken(lambda: client.get(INDEX))
        more(27)
        break_glass(27)
        with django_assert_num_queries(few):
            assert client.get(INDEX).status_code == 200


# --- PostgreSQL's plans -------------------------------------------------------------------------


def plan(queryset, *, in_order: bool = False) -> str:
    # With sequential scans priced out, the plan shows which indexes can serve the query;
    # a query no index serves still scans the table. in_order also prices out bitmap scans
    # (which return rows in no order): on a few rows the planner may well prefer one and a
    # sort, so what is asked is whether an index can serve the list in its order at all.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if in_order:
            cursor.execute("SET LOCAL enable_bitmapscan = off")
        return queryset.explain()


@pytest.mark.postgres
def test_the_break_glass_count_reads_its_own_index(on_postgres, routed_world):
    alice, root, more = routed_world
    more(3)
    now = timezone.now()
    for user in (root, alice):
        sections = admin_dashboard_requests(
            user=user, now=now, expiring_within=timedelta(hours=1),
            failed_since=now - timedelta(days=7),
        )
        shown = plan(sections["break_glass"].order_by())
        assert "request_break_glass_review" in shown, shown
        assert "SubPlan" not in shown, shown


@pytest.mark.postgres
def test_the_request_list_walks_the_created_at_index(on_postgres, client, routed_world):
    alice, root, more = routed_world
    more(3)
    for user in (root, alice):
        client.force_login(user)
        cl = client.get(CHANGELIST + "?awaiting=all").context["cl"]
        shown = plan(cl.queryset[:50])
        assert "SubPlan" not in shown, shown
        assert "Seq Scan on requests_app_accessrequest" not in shown, shown


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("repository=acme/r1", "request_repository_newest"),
        ("environment=production", "request_environment_newest"),
    ],
)
def test_a_filtered_request_list_walks_its_targets_newest_first(
    on_postgres, client, routed_world, query, index
):
    _, root, more = routed_world
    more(3)
    client.force_login(root)
    cl = client.get(f"{CHANGELIST}?awaiting=all&{query}").context["cl"]
    shown = plan(cl.queryset[:50], in_order=True)
    # Read in the list's order off the index: no sort of the target's whole history.
    assert index in shown, shown
    assert "Sort" not in shown, shown


@pytest.mark.postgres
@pytest.mark.parametrize("field", ["repository", "environment"])
def test_the_target_filters_read_their_choices_from_an_index(on_postgres, routed_world, field):
    alice, _, more = routed_world
    more(3)
    for within in (None, ("policy", [more.policy.pk])):
        sql, params = distinct_values_sql(AccessRequest, field, limit=100, within=within)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            shown = "\n".join(row for (row,) in cursor.fetchall())
        assert "Seq Scan" not in shown, shown
        assert "Index" in shown, shown
