"""Requests and approvals keep the identity of the person who made them
(requests_app.selectors.approver_identity), and one person adds one approval per request."""

from django.conf import settings
from django.db import migrations, models


def _identity(user, github_ids) -> str:
    # As selectors.approver_identity computes it today, frozen here.
    uid = github_ids.get(user.pk)
    if uid is not None and uid.isdigit():
        return f"github:{int(uid)}"
    return f"login:{user.username.casefold()}"


def record_identities(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    SocialAccount = apps.get_model("socialaccount", "SocialAccount")
    AccessRequest = apps.get_model("requests_app", "AccessRequest")
    Approval = apps.get_model("requests_app", "Approval")
    github_ids = {}
    for user_id, uid in (
        SocialAccount.objects.filter(provider="github").order_by("-pk").values_list("user_id", "uid")
    ):
        github_ids[user_id] = uid  # the oldest account wins, as in the selector
    identities = {user.pk: _identity(user, github_ids) for user in User.objects.all()}
    for access_request in AccessRequest.objects.only("pk", "requester_id"):
        AccessRequest.objects.filter(pk=access_request.pk).update(
            requester_identity=identities[access_request.requester_id]
        )
    for approval in Approval.objects.only("pk", "approver_id"):
        Approval.objects.filter(pk=approval.pk).update(
            approver_identity=identities[approval.approver_id]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0006_username_unique_casefold"),
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
    ]

    operations = [
        migrations.AddField(
            model_name="accessrequest",
            name="requester_identity",
            field=models.CharField(blank=True, editable=False, max_length=160),
        ),
        migrations.AddField(
            model_name="approval",
            name="approver_identity",
            field=models.CharField(default="", editable=False, max_length=160),
            preserve_default=False,
        ),
        # Usernames are unique case aside (0006) and GitHub ids are unique per account, so
        # the identities recorded here are distinct per approval of a request.
        migrations.RunPython(record_identities, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="approval",
            constraint=models.UniqueConstraint(
                fields=("request", "approver_identity"), name="one_approval_per_person"
            ),
        ),
        migrations.AddConstraint(
            model_name="approval",
            constraint=models.CheckConstraint(
                condition=models.Q(("approver_identity", ""), _negated=True),
                name="approval_identity_recorded",
            ),
        ),
    ]
