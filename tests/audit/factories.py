"""Test data for the audit app. Events are made through log_event(), the only way in."""

import factory
from django.contrib.auth import get_user_model

from audit.services import log_event


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"auditee{n}")


class AuditEventFactory(factory.Factory):
    """AuditEventFactory(action=..., actor=..., ...) appends a real, chained event."""

    class Meta:
        model = dict  # only the keyword arguments; _create hands them to log_event()

    action = "request.created"
    target_type = "requests_app.accessrequest"
    target_id = factory.Sequence(str)
    target_repr = factory.LazyAttribute(lambda event: f"request #{event.target_id}")
    reason = "ship the hotfix"
    detail = factory.LazyAttribute(lambda event: {"environment": "production"})

    @classmethod
    def _create(cls, model_class, **kwargs):
        return log_event(**kwargs)
