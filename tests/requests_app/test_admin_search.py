"""The admin request list's search: it finds what Django's own search over the same
search_fields finds, on both backends; on PostgreSQL a searched list is served by the
trigram indexes of requests_app 0020 (a BitmapOr, no sequential scan) on a table big enough
for the planner to choose freely; and that migration does nothing on SQLite and explains
itself when PostgreSQL will not let it create pg_trgm."""

import importlib
from datetime import timedelta

import pytest
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from requests_app import selectors
from requests_app.models import AccessRequest
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")
MIGRATION = importlib.import_module(
    "requests_app.migrations.0020_request_search_trigram_indexes"
)


@pytest.fixture
def searchable():
    """Requests differing in each searched field, and a platform admin."""
    policy, _, users = approver_setup()
    others = AccessPolicyFactory(name="others", repository_patterns=["other/*"])
    builder = UserFactory(username="Bob-The-Builder")
    made = {
        "api": AccessRequestFactory(policy=policy, repository="acme/api"),
        "web_staging": AccessRequestFactory(
            policy=policy, repository="acme/web", environment="staging",
            requester=users["alice"],
        ),
        "secret": AccessRequestFactory(
            policy=others, repository="other/secret-project", requester=builder,
            reason="Rotating 100% of the keys_after INC-77",
        ),
        "svc": AccessRequestFactory(
            policy=others, repository="other/svc-007", environment="qa-eu",
            reason="Load test before the release",
        ),
    }
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    return made, root


def searched(admin_request, search_term, *, djangos_own=False) -> set[int]:
    model_admin = admin.site._registry[AccessRequest]
    queryset = AccessRequest.objects.all()
    if djangos_own:
        found, _ = admin.ModelAdmin.get_search_results(
            model_admin, admin_request, queryset, search_term
        )
    else:
        found, _ = model_admin.get_search_results(admin_request, queryset, search_term)
    return set(found.values_list("pk", flat=True))


@pytest.mark.parametrize("requesters_by", ["ids", "subquery"])
def test_the_search_finds_what_djangos_own_search_over_the_same_fields_found(
    searchable, requesters_by, monkeypatch
):
    made, root = searchable
    if requesters_by == "subquery":
        # A term naming more requesters than the bound is matched through a subquery: with
        # a bound of one, every term naming two or more people ("user", "b") takes that way.
        monkeypatch.setattr(selectors, "SEARCH_REQUESTER_IDS", 1)
    admin_request = RequestFactory().get(CHANGELIST)
    admin_request.user = root
    ids = {name: r.pk for name, r in made.items()}
    terms = [
        "acme", "ACME/Web", "svc-007", "007", "staging", "qa-", "builder", "BOB", "alice",
        "hotfix", "inc-77", "100%", "keys_after", "_", "%", str(ids["svc"]),
        f"0{ids['svc']}", f"{ids['api']} {ids['svc']}", "acme alice", "other builder",
        '"load test"', "'the release'", '"load release"', "nothing-like-it", "é", "user",
        "b", '"',
    ]
    found = {term: searched(admin_request, term) for term in terms}

    for term in terms:
        assert found[term] == searched(admin_request, term, djangos_own=True), term
    # And what each finds, so that the comparison is not of two empty sets.
    assert found["acme"] == {ids["api"], ids["web_staging"]}
    assert found["svc-007"] == {ids["svc"]}
    assert found["BOB"] == {ids["secret"]}
    assert found["acme alice"] == {ids["web_staging"]}
    assert found["100%"] == {ids["secret"]}
    assert found[str(ids["svc"])] >= {ids["svc"]}
    assert found['"load test"'] == {ids["svc"]}
    assert found['"load release"'] == set()
    assert found["nothing-like-it"] == set()
    # By the requesters' usernames alone: the factory's "userN" filed these two.
    assert found["user"] == {ids["api"], ids["svc"]}


def test_the_searched_list_shows_the_requests_found(client, searchable):
    made, root = searchable
    client.force_login(root)
    for term, expected in [
        ("builder", {"other/secret-project"}),
        ("svc-007", {"other/svc-007"}),
        ("staging alice", {"acme/web"}),
        (str(made["api"].pk), {"acme/api"}),
    ]:
        response = client.get(CHANGELIST, {"awaiting": "all", "q": term})
        assert response.status_code == 200
        shown = {r.repository for r in response.context["cl"].result_list}
        assert expected <= shown, (term, shown)
        if not term.isdigit():
            assert shown == expected, (term, shown)


def test_an_approver_searching_finds_nothing_routed_to_others(client, searchable):
    made, _ = searchable
    alice = made["web_staging"].requester
    client.force_login(alice)
    response = client.get(CHANGELIST, {"awaiting": "all", "q": "other"})
    assert response.status_code == 200
    # "other/..." belongs to a policy routed to nobody alice is: not in her search.
    assert list(response.context["cl"].result_list) == []
    response = client.get(CHANGELIST, {"awaiting": "all", "q": "acme"})
    assert {r.repository for r in response.context["cl"].result_list} == {"acme/api", "acme/web"}


# --- requests_app 0020 ------------------------------------------------------------------------


def trigram_indexes() -> dict:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, AccessRequest._meta.db_table)
    return {name: c for name, c in constraints.items() if name.endswith("_trgm")}


def test_the_trigram_indexes_exist_on_postgresql_only():
    indexes = trigram_indexes()
    if connection.vendor == "postgresql":
        assert set(indexes) == set(MIGRATION.INDEXES), indexes
        assert all(c["type"] == "gin" for c in indexes.values()), indexes
    else:
        # The migration ran and did nothing: SQLite has no GIN and no pg_trgm.
        assert indexes == {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM django_migrations WHERE app = 'requests_app' AND name = %s",
                [MIGRATION.__name__.rsplit(".", 1)[-1]],
            )
            assert cursor.fetchone() is not None


@pytest.mark.postgres
def test_a_role_that_may_not_create_pg_trgm_is_told_what_to_run(on_postgres):
    role = f"{connection.settings_dict['NAME']}_no_create"[:63]
    with transaction.atomic(), connection.cursor() as cursor:
        # Undone with the test's transaction: the extension (and the indexes on it) gone,
        # and a role with no CREATE on the database, which a trusted extension needs.
        cursor.execute(f"DROP EXTENSION {MIGRATION.EXTENSION} CASCADE")
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        with pytest.raises(ImproperlyConfigured) as refused:
            MIGRATION.create_trigram_extension(connection)
        cursor.execute("RESET ROLE")
        # Still gone: nothing was half done.
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() is None
    message = str(refused.value)
    database = connection.settings_dict["NAME"]
    assert f"CREATE EXTENSION pg_trgm;` in \"{database}\"" in message, message
    assert f'GRANT CREATE ON DATABASE "{database}" TO "{role}"' in message, message
    assert "manage.py migrate" in message, message


@pytest.mark.postgres
def test_a_role_that_may_create_pg_trgm_creates_it(on_postgres):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP EXTENSION {MIGRATION.EXTENSION} CASCADE")
        MIGRATION.create_trigram_extension(connection)
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_invalid_index_left_by_an_interrupted_build_is_built_again(on_postgres):
    # CREATE INDEX CONCURRENTLY stopped halfway leaves an INVALID index, which serves no
    # query and which IF NOT EXISTS alone would keep. Marked invalid as such a build
    # leaves it (the test database's role is a superuser), then the migration runs again,
    # outside any transaction as CONCURRENTLY needs.
    def valid(name):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_index.indisvalid FROM pg_index JOIN pg_class "
                "ON pg_class.oid = pg_index.indexrelid WHERE pg_class.relname = %s",
                [name],
            )
            row = cursor.fetchone()
        return None if row is None else row[0]

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false FROM pg_class WHERE "
            "pg_class.oid = pg_index.indexrelid AND pg_class.relname = 'request_reason_trgm'"
        )
    assert valid("request_reason_trgm") is False
    assert MIGRATION.Migration.atomic is False
    with connection.schema_editor(atomic=False) as editor:
        MIGRATION.create_indexes(None, editor)
    assert {name: valid(name) for name in MIGRATION.INDEXES} == dict.fromkeys(
        MIGRATION.INDEXES, True
    )


# --- PostgreSQL's plan ----------------------------------------------------------------------------


def many_requests(n: int) -> dict:
    """n requests over 200 repositories, three environments and 50 requesters, written in
    bulk, and the table analysed, as autovacuum would have: enough rows that a sequential
    scan is the planner's own choice to refuse, not one priced out."""
    policy = AccessPolicyFactory(repository_patterns=["acme/*"])
    requesters = [UserFactory(username=f"person-{i:02d}") for i in range(50)]
    until = timezone.now() + timedelta(hours=24)
    rows = [
        AccessRequest(
            requester=requesters[i % 50], requester_identity=f"login:person-{i % 50:02d}",
            repository=f"acme/svc-{i % 200:03d}",
            environment=("production", "staging", "dev")[i % 3],
            access="reviewer", reason=f"Deploying the quarterly release, change {i}",
            duration_minutes=60, policy=policy, approvals_required=1,
            pending_until=until,
        )
        for i in range(n)
    ]
    AccessRequest.objects.bulk_create(rows, batch_size=5_000)
    with connection.cursor() as cursor:
        # What autovacuum does: the new rows moved from the GIN indexes' pending lists into
        # the indexes proper, and the table's statistics taken.
        for index in MIGRATION.INDEXES:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        cursor.execute(f"ANALYZE {AccessRequest._meta.db_table}")
    return {"requesters": requesters}


@pytest.mark.postgres
def test_a_searched_request_list_is_served_by_the_trigram_indexes(on_postgres, client):
    many_requests(30_000)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)

    for term in ("svc-007", "person-07", "12345"):
        cl = client.get(CHANGELIST, {"awaiting": "all", "q": term}).context["cl"]
        for name, queryset in [
            ("page", cl.queryset[:50]),
            ("count", cl.queryset.order_by().values("pk")[:551]),
        ]:
            shown = queryset.explain()
            assert "Seq Scan on requests_app_accessrequest" not in shown, (term, name, shown)
            if name == "page" and "BitmapOr" not in shown:
                # The page stops at 50 rows: the planner may as well walk an index in the
                # list's order and stop there (CI's fresh database chose an incremental sort
                # for svc-007). The count is what reads on for a rare term, and it must be
                # served by the trigram indexes, below.
                assert "Index" in shown, (term, name, shown)
                continue
            assert "BitmapOr" in shown, (term, name, shown)
            for index in MIGRATION.INDEXES:
                assert index in shown, (term, name, index, shown)
            if term == "person-07":
                # The requester's username matched first, its requests by their index.
                assert "requester_id" in shown, (term, name, shown)
            if term == "12345":
                assert "accessrequest_pkey" in shown, (term, name, shown)


def test_a_term_repeated_in_the_search_is_looked_up_once(searchable, django_assert_max_num_queries):
    # Each term costs a query for the requesters it names and a condition in the list's
    # statement: "Bob " pasted 3000 times held a request for 47 s on PostgreSQL.
    made, root = searchable
    admin_request = RequestFactory().get(CHANGELIST)
    admin_request.user = root
    once = searched(admin_request, "Bob")

    with django_assert_max_num_queries(2):  # the requesters named, then the list
        repeated = searched(admin_request, "Bob " * 500 + '"Bob"')

    assert repeated == once and made["secret"].pk in once
