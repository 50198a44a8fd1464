"""Forms of the request pages and the admin. They check the shape of the input only; the
rules (policy limits, who may decide) live in services.py and come back as errors."""

import re

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from portal.parsers import parse_json
from requests_app.models import AccessKind, AccessPolicy, AccessRequest, SecretDefinition
from requests_app.selectors import user_is_approver


class PortalForm(forms.Form):
    """Labels without Django's trailing colon: they read as headings of their fields."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class AccessRequestForm(PortalForm):
    repository = forms.CharField(
        max_length=200,
        help_text="owner/name, for example acme/api",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    environment = forms.CharField(
        max_length=255,
        help_text="The GitHub environment, for example production",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    access = forms.ChoiceField(
        label="Access kind",
        choices=AccessKind.choices,
        help_text=(
            "Required reviewer: you may approve deployments to the environment. "
            "Secret: a secret reaches the environment's workflows."
        ),
    )
    secret = forms.ChoiceField(
        required=False,
        help_text="Only for secret access: which secret to grant.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Why you need this access now; approvers read it.",
    )
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        required=False,
        min_value=1,
        max_value=AccessRequest.MAX_DURATION_MINUTES,
        help_text="Counted from the moment access is granted. Empty: the policy's default.",
    )
    starts_at = forms.DateTimeField(
        label="Start (optional)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Leave empty to start as soon as the request is approved.",
    )
    break_glass = forms.BooleanField(
        label="Break-glass: I need access at once, without waiting for approval",
        required=False,
        help_text=(
            "Only where the policy allows it. Approvers are told at once and the access is "
            "reviewed afterwards."
        ),
    )
    workflow_ref_pattern = forms.CharField(
        label="Workflow (optional)",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            "Only workflows whose job_workflow_ref matches may use the grant, for example "
            "acme/api/.github/workflows/deploy.yml@refs/heads/main, or …/deploy.yml@* for any "
            "ref. A glob, matched in full and case-sensitively. Empty: any workflow."
        ),
    )
    ref_pattern = forms.CharField(
        label="Ref (optional)",
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            "Only workflows running on a matching ref may use the grant, for example "
            "refs/heads/main or refs/tags/v*. Empty: any ref."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = SecretDefinition.objects.values_list("name", flat=True)
        self.fields["secret"].choices = [("", "(none)")] + [(name, name) for name in names]
        self.fields["starts_at"].help_text += f" Times are in {timezone.get_current_timezone()}."


class DecisionForm(PortalForm):
    """The comment an approver gives with their decision."""

    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
    )

    def __init__(self, *args, decision: str, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["comment"]
        if decision == "deny":
            field.required = True
            field.label = "Why are you denying? (required; the requester reads it)"
            field.error_messages["required"] = "Say why you deny, so the requester knows."
        else:
            field.label = "Comment (optional)"


class CancelForm(PortalForm):
    comment = forms.CharField(
        label="Comment (optional)", required=False, max_length=2000, strip=True
    )


class ExtendForm(PortalForm):
    """More time on active access: the policy's rules apply again (services.py)."""

    reason = forms.CharField(
        label="Why do you need more time?",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Approvers read it, as for any request.",
    )
    duration_minutes = forms.IntegerField(
        label="More time (minutes)",
        required=False,
        min_value=1,
        max_value=AccessRequest.MAX_DURATION_MINUTES,
        help_text="Added to the current end once approved. Empty: the policy's default.",
    )


class BreakGlassReviewForm(PortalForm):
    """An approver's after-the-fact review of break-glass access (the admin)."""

    outcome = forms.ChoiceField(
        choices=[
            ("acknowledged", "Acknowledged: the use was justified"),
            ("escalated", "Escalated: it needs a closer look"),
        ],
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        label="Comment (required to escalate)",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


# --- admin forms -----------------------------------------------------------------------------


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's password form, open to approvers as well as staff, like the admin site
    itself (portal.admin_site). Django's own form lets staff in only."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": (
            "Please enter the correct %(username)s and password of an approver or platform "
            "admin account. Note that both fields may be case-sensitive."
        ),
    }

    def confirm_login_allowed(self, user):
        AuthenticationForm.confirm_login_allowed(self, user)
        if not (user.is_staff or user_is_approver(user=user)):
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PatternListField(forms.CharField):
    """A JSON list of glob patterns, edited as comma-separated text."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, str) and value.startswith("["):
            # A re-rendered bound JSONField value; anything else is shown as typed.
            try:
                patterns = parse_json(value)
            except ValueError:
                return value
            if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
                return ", ".join(patterns)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = super().to_python(value)
        return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]

    def validate(self, value):
        if self.required and not value:
            raise ValidationError("Give at least one pattern.", code="required")
        for pattern in value:
            if any(ord(char) < 32 for char in pattern):
                raise ValidationError(f"{pattern!r} contains a control character.")
            if pattern.count("[") != pattern.count("]"):
                raise ValidationError(f"{pattern!r} has an unbalanced [ ].")


class AccessPolicyAdminForm(forms.ModelForm):
    repository_patterns = PatternListField(
        help_text='Comma-separated globs, for example "acme/*, acme-infra/deploy"',
        widget=forms.TextInput(attrs={"size": 60}),
    )
    environment_patterns = PatternListField(
        help_text='Comma-separated globs, for example "production, prod-*"',
        widget=forms.TextInput(attrs={"size": 60}),
    )
    access_kinds = forms.MultipleChoiceField(
        choices=AccessKind.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="The access kinds this policy covers.",
    )

    class Meta:
        model = AccessPolicy
        fields = [
            "name",
            "description",
            "repository_patterns",
            "environment_patterns",
            "access_kinds",
            "secrets",
            "max_duration",
            "default_duration",
            "approvals_required",
            "approver_groups",
            "reason_min_length",
            "pending_ttl",
            "break_glass",
            "break_glass_max_duration",
        ]

    def clean_repository_patterns(self):
        patterns = self.cleaned_data["repository_patterns"]
        for pattern in patterns:
            if "/" not in pattern:
                raise ValidationError(
                    f"{pattern!r} must name owner/repository, for example acme/* or acme/api."
                )
        return patterns

    def clean(self):
        cleaned = super().clean()
        default, maximum = cleaned.get("default_duration"), cleaned.get("max_duration")
        if default is not None and maximum is not None and default > maximum:
            self.add_error("default_duration", "The default must not exceed the maximum.")
        return cleaned


class SecretDefinitionAdminForm(forms.ModelForm):
    new_value = forms.CharField(
        label="New value",
        required=False,
        strip=False,
        # render_value=False: the stored value is never sent back to a browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=(
            "Environment secrets only. Leave empty to keep the current value. The value is "
            "stored encrypted and never shown again."
        ),
    )

    class Meta:
        model = SecretDefinition
        fields = ["name", "kind", "org"]

    def clean_name(self):
        # GitHub's rules for secret names; refusing here beats a failed grant later.
        name = self.cleaned_data["name"].strip()
        if not SECRET_NAME_RE.match(name):
            raise ValidationError(
                "Use letters, digits and underscores only, not starting with a digit."
            )
        if name.upper().startswith("GITHUB_"):
            raise ValidationError("GitHub reserves names starting with GITHUB_.")
        return name

    def clean(self):
        cleaned = super().clean()
        kind, org = cleaned.get("kind"), cleaned.get("org", "").strip()
        new_value = cleaned.get("new_value", "")
        if kind == SecretDefinition.Kind.ORGANIZATION:
            if not org:
                self.add_error("org", "An organization secret needs its organization.")
            if new_value:
                self.add_error(
                    "new_value",
                    "An organization secret's value stays on GitHub; Airlock only adds "
                    "repositories to it.",
                )
        elif kind == SecretDefinition.Kind.ENVIRONMENT and org:
            self.add_error("org", "Only organization secrets take an organization.")
        cleaned["org"] = org
        return cleaned

    def save(self, commit=True):
        secret = super().save(commit=False)
        if self.cleaned_data.get("new_value"):
            secret.set_value(self.cleaned_data["new_value"])
            secret.value_updated_at = timezone.now()
        if commit:
            secret.save()
            self.save_m2m()
        return secret
