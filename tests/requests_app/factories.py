"""Test data for the requests app."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from requests_app.models import (
    AccessPolicy,
    AccessRequest,
    ApproverGroup,
    ApproverGroupMember,
    SecretDefinition,
)
from requests_app.selectors import approver_identity


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery")


class ApproverGroupFactory(factory.django.DjangoModelFactory):
    """ApproverGroupFactory(members=["alice", "bob"]) adds those logins."""

    class Meta:
        model = ApproverGroup
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"approvers-{n}")

    @factory.post_generation
    def members(self, create, extracted, **kwargs):
        for login in extracted or []:
            ApproverGroupMember.objects.get_or_create(group=self, login=login)


class SecretDefinitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SecretDefinition
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"DEPLOY_TOKEN_{n}")
    kind = SecretDefinition.Kind.ENVIRONMENT
    value = "s3cret-value"

    @classmethod
    def _create(cls, model_class, *args, value=None, **kwargs):
        secret = model_class(*args, **kwargs)
        if value and secret.kind == SecretDefinition.Kind.ENVIRONMENT:
            secret.set_value(value)
        secret.save()
        return secret


class AccessPolicyFactory(factory.django.DjangoModelFactory):
    """AccessPolicyFactory(approver_groups=[group], secrets=[secret])."""

    class Meta:
        model = AccessPolicy
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"policy-{n}")
    repository_patterns = factory.LazyFunction(lambda: ["acme/*"])
    environment_patterns = factory.LazyFunction(lambda: ["production"])
    access_kinds = factory.LazyFunction(lambda: ["reviewer", "secret"])
    max_duration = timedelta(hours=4)
    default_duration = timedelta(hours=1)
    approvals_required = 2
    reason_min_length = 10
    pending_ttl = timedelta(hours=24)

    @factory.post_generation
    def approver_groups(self, create, extracted, **kwargs):
        if extracted:
            self.approver_groups.set(extracted)

    @factory.post_generation
    def secrets(self, create, extracted, **kwargs):
        if extracted:
            self.secrets.set(extracted)


class AccessRequestFactory(factory.django.DjangoModelFactory):
    """A pending request made directly in the database (services are tested on their own).

    Use requests_app.services.access_request_create when the test is about filing."""

    class Meta:
        model = AccessRequest

    requester = factory.SubFactory(UserFactory)
    requester_identity = factory.LazyAttribute(lambda r: approver_identity(r.requester))
    repository = "acme/api"
    environment = "production"
    access = "reviewer"
    reason = "Deploying the hotfix for INC-1234"
    duration_minutes = 60
    policy = factory.SubFactory(AccessPolicyFactory)
    approvals_required = factory.LazyAttribute(lambda r: r.policy.approvals_required)
    pending_until = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=24))


def approver_setup(*, approvers=("alice", "bob", "carol"), approvals_required=2, **policy):
    """A group of approvers (as users) and a policy routed to it."""
    group = ApproverGroupFactory(members=list(approvers))
    users = {login: UserFactory(username=login) for login in approvers}
    policy_obj = AccessPolicyFactory(
        approver_groups=[group], approvals_required=approvals_required, **policy
    )
    return policy_obj, group, users


# The environment name of the look-alike attack: a dotless ı (U+0131), which PostgreSQL's
# UPPER() folds to "I", so it once reached the real production environment.
LOOKALIKE = "product\u0131on"


def strict_and_lax_policies():
    """The look-alike attack's policies: a strict one for acme's production (two approvals,
    routed to alice, bob and carol) and a lax catch-all that approves by itself."""
    strict, _, _ = approver_setup(
        name="production", repository_patterns=["acme/*"], environment_patterns=["production"]
    )
    lax = AccessPolicyFactory(
        name="everything-else",
        repository_patterns=["*/*"],
        environment_patterns=["*"],
        approvals_required=0,
    )
    return strict, lax
