"""GET /api/v1/requests/ and /api/v1/grants/ as history grows: the same people see the same
rows as before, each list takes as many queries for 30 rows as for 3, `count` stops a
little past the page instead of counting the table, and on PostgreSQL a non-staff
caller's list is planned on indexes with no subquery run against every row."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from grants.api import visible_grants
from requests_app.api import ApiPagination, visible_requests
from tests.api.conftest import active_request, token_client
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    ApproverGroupFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Requests under three policies: routed to alice (her group spells her ALICE), routed
    to bob, routed to nobody; filed by dave, erin and alice herself. Grants for dave and
    erin. A staff member without the permission to view requests, and an outsider."""
    people = {
        login: UserFactory(username=login) for login in ("dave", "erin", "alice", "bob", "olga")
    }
    people["root"] = UserFactory(username="root", is_staff=True, is_superuser=True)
    people["staffer"] = UserFactory(username="staffer", is_staff=True)
    to_alice = AccessPolicyFactory(
        name="to-alice", approver_groups=[ApproverGroupFactory(members=["ALICE", "zed"])]
    )
    to_bob = AccessPolicyFactory(
        name="to-bob", approver_groups=[ApproverGroupFactory(members=["bob"])]
    )
    to_nobody = AccessPolicyFactory(name="to-nobody")

    def filed(login, policy, **fields):
        return AccessRequestFactory(requester=people[login], policy=policy, **fields).pk

    ids = {
        "dave_alice_1": filed("dave", to_alice),
        "dave_alice_2": filed("dave", to_alice, environment="staging"),
        "dave_nobody": filed("dave", to_nobody),
        "erin_alice": filed("erin", to_alice),
        "erin_bob": filed("erin", to_bob),
        "erin_nobody": filed("erin", to_nobody),
        "alice_nobody": filed("alice", to_nobody),
    }
    ids["dave_granted"] = active_request("dave", policy=to_nobody).pk
    ids["erin_granted"] = active_request("erin", policy=to_alice).pk
    return people, ids


def listed(user, path: str) -> list[int]:
    response = token_client(user).get(f"{path}?limit=200")
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("login", "names"),
    [
        ("dave", {"dave_alice_1", "dave_alice_2", "dave_nobody", "dave_granted"}),
        # Routed to her (her group names her in capitals), and her own.
        ("alice", {"dave_alice_1", "dave_alice_2", "erin_alice", "erin_granted", "alice_nobody"}),
        ("bob", {"erin_bob"}),
        ("olga", set()),
        # Staff alone opens nothing: the permission to view requests does.
        ("staffer", set()),
        (
            "root",
            {
                "dave_alice_1", "dave_alice_2", "dave_nobody", "erin_alice", "erin_bob",
                "erin_nobody", "alice_nobody", "dave_granted", "erin_granted",
            },
        ),
    ],
)
def test_each_caller_sees_exactly_the_requests_they_saw_before(world, login, names):
    people, ids = world
    got = listed(people[login], "/api/v1/requests/")
    assert sorted(got) == sorted(ids[name] for name in names)
    assert len(got) == len(set(got))  # no request twice, routed and own at once
    assert got == sorted(got, reverse=True)  # newest first (ids grow with created_at)


@pytest.mark.parametrize(
    ("login", "names"),
    [
        ("dave", {"dave_granted"}),
        ("erin", {"erin_granted"}),
        ("alice", set()),  # approvers see their own grants only
        ("olga", set()),
        ("root", {"dave_granted", "erin_granted"}),
    ],
)
def test_each_caller_sees_exactly_the_grants_they_saw_before(world, login, names):
    people, ids = world
    got = listed(people[login], "/api/v1/grants/")
    expected = {
        row["id"]
        for row in token_client(people["root"]).get("/api/v1/grants/").json()["results"]
        if row["request"] in {ids[name] for name in names}
    }
    assert set(got) == expected


def queries_taken(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


@pytest.mark.parametrize("login", ["alice", "root", "dave"])
@pytest.mark.parametrize("path", ["/api/v1/requests/", "/api/v1/grants/"])
def test_a_list_takes_as_many_queries_for_thirty_rows_as_for_three(
    world, login, path, django_assert_num_queries
):
    people, _ = world
    client = token_client(people[login])
    policy = AccessPolicyFactory(name="to-alice")

    def more(n):
        for i in range(n):
            AccessRequestFactory(requester=people[login], policy=policy, environment=f"e{i}")
            active_request(login, policy=policy, environment=f"g{i}")

    more(3)
    client.get(path)  # the token's first use is recorded once
    few = queries_taken(lambda: client.get(path))
    more(27)
    with django_assert_num_queries(few):
        response = client.get(path)
    assert response.status_code == 200
    assert len(response.json()["results"]) >= 30


def test_the_count_stops_past_the_page_and_says_so(world, monkeypatch):
    people, _ = world
    policy = AccessPolicyFactory(name="to-nobody")
    for i in range(8):
        AccessRequestFactory(requester=people["olga"], policy=policy, environment=f"e{i}")
    monkeypatch.setattr(ApiPagination, "COUNT_AHEAD", 5)
    client = token_client(people["olga"])

    first = client.get("/api/v1/requests/?limit=2").json()
    assert (first["count"], first["count_exact"]) == (5, False)
    assert len(first["results"]) == 2 and first["next"]

    # Counted up to 5 past the offset: all 8 are within reach, and the count is exact.
    later = client.get("/api/v1/requests/?limit=2&offset=4").json()
    assert (later["count"], later["count_exact"]) == (8, True)
    assert later["next"] and later["previous"]
    last = client.get(later["next"]).json()
    assert [len(last["results"]), last["next"]] == [2, None]


def test_a_short_list_counts_exactly(world):
    people, ids = world
    page = token_client(people["dave"]).get("/api/v1/requests/?limit=2").json()
    assert (page["count"], page["count_exact"]) == (4, True)


def test_the_count_is_a_limited_subquery_never_a_count_of_the_table(world):
    people, _ = world
    client = token_client(people["root"])
    client.get("/api/v1/requests/")
    with CaptureQueriesContext(connection) as captured:
        client.get("/api/v1/requests/")
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()]
    assert counts, "the list counts its rows"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


# --- the plans PostgreSQL makes -------------------------------------------------------------


def plan(queryset) -> str:
    # With sequential scans priced out, the plan shows which indexes can serve the query;
    # a query no index serves still scans the table.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


@pytest.mark.postgres
def test_an_approvers_list_is_two_index_scans_and_no_subquery_per_row(world, on_postgres):
    people, _ = world
    page = visible_requests(people["alice"])[:50]
    shown = plan(page)
    assert "SubPlan" not in shown, shown
    assert "Seq Scan on requests_app_accessrequest" not in shown, shown
    assert "requester_id" in shown and "policy_id" in shown, shown


@pytest.mark.postgres
def test_a_requesters_grants_are_found_by_index(world, on_postgres):
    people, _ = world
    shown = plan(visible_grants(people["dave"])[:50])
    assert "SubPlan" not in shown, shown
    assert "Seq Scan on requests_app_accessrequest" not in shown, shown


@pytest.mark.postgres
def test_a_platform_admins_grants_are_read_newest_first_down_an_index_not_sorted(
    world, on_postgres
):
    people, _ = world
    shown = plan(visible_grants(people["root"])[:50])
    assert "grant_newest" in shown, shown
    assert "Sort" not in shown.split("Index Scan")[0], shown  # no sort above the index scan
