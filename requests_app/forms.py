"""Forms of the request pages and the admin. They check the shape of the input only; the
rules (policy limits, who may decide) live in the services and requests_app.rules."""


from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AdminUserCreationForm, AuthenticationForm, UserChangeForm
from django.contrib.auth.validators import ASCIIUsernameValidator
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.names import (
    NameRefused,
    canonical_environment,
    canonical_environment_pattern,
    canonical_owner,
    canonical_repository,
    canonical_repository_pattern,
    canonical_secret_name,
)
from integrations.github.permissions import format_permissions, permissions_refusal
from portal.parsers import parse_json
from portal.ratelimit import sign_in_refusal
from requests_app.models import AccessKind, AccessPolicy, AccessRequest, SecretDefinition
from requests_app.rules import (
    COMMENT_MAX_LENGTH,
    REASON_MAX_LENGTH,
    approver_groups_refusal,
    default_duration_refusal,
    request_field_max_length,
    secret_permissions_refusal,
    secrets_refusal,
    token_permissions_refusal,
)
from requests_app.selectors import user_is_approver, username_is_taken


class PortalForm(forms.Form):
    """Labels without Django's trailing colon: they read as headings of their fields."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class AccessRequestForm(PortalForm):
    repository = forms.CharField(
        max_length=request_field_max_length("repository"),
        help_text="owner/name, for example acme/api",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    environment = forms.CharField(
        max_length=request_field_max_length("environment"),
        help_text="The GitHub environment, for example production",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    access = forms.ChoiceField(
        label="Access kind",
        choices=AccessKind.choices,
        help_text=(
            "Required reviewer: you may approve deployments to the environment. "
            "Secret: a secret reaches the environment's workflows. "
            "GitHub token: the environment's workflows may exchange their OIDC token for a "
            "short-lived GitHub token for the repository, with the policy's permissions."
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
        max_length=request_field_max_length("workflow_ref_pattern"),
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
        max_length=request_field_max_length("ref_pattern"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            "Only workflows running on a matching ref may use the grant, for example "
            "refs/heads/main or refs/tags/v*. Empty: any ref."
        ),
    )

    TARGET_FIELDS = ("repository", "environment", "access")

    def __init__(self, *args, preview: bool = False, **kwargs):
        """preview: only the target is judged ("Check policy"), not the fields that may
        not be filled in yet."""
        super().__init__(*args, **kwargs)
        names = SecretDefinition.objects.values_list("name", flat=True)
        self.fields["secret"].choices = [("", "(none)")] + [(name, name) for name in names]
        self.fields["starts_at"].help_text += f" Times are in {timezone.get_current_timezone()}."
        if preview:
            for name, field in self.fields.items():
                field.required = field.required and name in self.TARGET_FIELDS

    # The target's canonical names (core.names): what the policy is looked up by and what
    # the request is filed with.
    def clean_repository(self):
        return _canonical(canonical_repository, self.cleaned_data["repository"])

    def clean_environment(self):
        return _canonical(canonical_environment, self.cleaned_data["environment"])


def _canonical(rule, value):
    try:
        return rule(value)
    except NameRefused as refusal:
        raise ValidationError(refusal.messages) from None


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
        label="Comment (optional)",
        required=False,
        max_length=COMMENT_MAX_LENGTH,
        strip=True,
    )


class ExtendForm(PortalForm):
    """More time on active access: the policy's rules apply again (requests_app.services)."""

    reason = forms.CharField(
        label="Why do you need more time?",
        max_length=REASON_MAX_LENGTH,
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
        max_length=COMMENT_MAX_LENGTH,
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

    def clean(self):
        # Before the password is tried: at the limit even the right one is refused.
        refusal = sign_in_refusal(request=self.request, username=self.cleaned_data.get("username"))
        if refusal:
            raise ValidationError(refusal, code="locked_out")
        return super().clean()

    def confirm_login_allowed(self, user):
        AuthenticationForm.confirm_login_allowed(self, user)
        if not (user.is_staff or user_is_approver(user=user)):
            raise ValidationError(
                self.error_messages["invalid_login"],
                code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )


class PatternListField(forms.CharField):
    """A JSON list of glob patterns, edited as comma-separated text, each checked and
    lower-cased by rule (a core.names canonical pattern function)."""

    def __init__(self, *, rule, **kwargs):
        self.rule = rule
        super().__init__(**kwargs)

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

    def clean(self, value):
        patterns = super().clean(value)
        return [_canonical(self.rule, pattern) for pattern in patterns]


class PermissionsField(forms.CharField):
    """A token's GitHub App permissions, {name: level}, edited as "contents: write,
    packages: read" (commas or lines; a JSON object is read too). Read strictly: every entry
    is a known permission at a level it takes (integrations.github.permissions)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 60, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        shown = value
        if isinstance(value, str) and value.startswith("{"):
            # A re-rendered bound JSONField value; anything else is shown as typed.
            try:
                value = parse_json(value)
            except ValueError:
                return shown
        if isinstance(value, dict):
            if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return format_permissions(value)
            return shown if isinstance(shown, str) else ""
        return value

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        text = super().to_python(value).strip()
        if text.startswith("{"):
            try:
                permissions = parse_json(text)
            except ValueError:
                raise ValidationError(
                    'Not a JSON object; write "contents: write, packages: read".',
                    code="invalid",
                ) from None
            if not isinstance(permissions, dict):
                raise ValidationError("Give a JSON object of permissions.", code="invalid")
            return permissions
        permissions = {}
        for entry in (part.strip() for part in text.replace("\n", ",").split(",")):
            if not entry:
                continue
            name, colon, level = (part.strip() for part in entry.partition(":"))
            if not colon or not name or not level:
                shown = entry if len(entry) <= 40 else entry[:40] + "…"
                raise ValidationError(
                    f"{shown!r} is not “permission: level”; write for example "
                    "“contents: write, packages: read”.",
                    code="invalid",
                )
            if name in permissions:
                raise ValidationError(f"{name} is given twice.", code="invalid")
            permissions[name] = level
        return permissions

    def validate(self, value):
        if value and (refusal := permissions_refusal(value)):
            raise ValidationError(_sentence(refusal), code="invalid")


def _sentence(refusal: str) -> str:
    """A rule's refusal (requests_app.rules) as a form error."""
    refusal = refusal[:1].upper() + refusal[1:]
    return refusal if refusal.endswith(".") else refusal + "."


class AccessPolicyAdminForm(forms.ModelForm):
    repository_patterns = PatternListField(
        rule=canonical_repository_pattern,
        help_text='Comma-separated globs, for example "acme/*, acme-infra/deploy"',
        widget=forms.TextInput(attrs={"size": 60}),
    )
    environment_patterns = PatternListField(
        rule=canonical_environment_pattern,
        help_text='Comma-separated globs, for example "production, prod-*"',
        widget=forms.TextInput(attrs={"size": 60}),
    )
    access_kinds = forms.MultipleChoiceField(
        choices=AccessKind.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="The access kinds this policy covers.",
    )
    token_permissions = PermissionsField(
        help_text=(
            "Token access only: what a token minted for a grant may do in the target's "
            'repository, as GitHub App permissions, for example "contents: write, '
            'packages: read". A job may ask for less, never more.'
        ),
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
            "token_permissions",
            "max_duration",
            "default_duration",
            "approvals_required",
            "approver_groups",
            "reason_min_length",
            "pending_ttl",
            "break_glass",
            "break_glass_max_duration",
            "workflow_requests",
            "slack_approvals",
        ]

    def clean(self):
        cleaned = super().clean()
        default, maximum = cleaned.get("default_duration"), cleaned.get("max_duration")
        if default is not None and maximum is not None:
            if default_duration_refusal(default=default, maximum=maximum):
                self.add_error("default_duration", "The default must not exceed the maximum.")
        kinds, secrets = cleaned.get("access_kinds"), cleaned.get("secrets")
        if kinds is not None and secrets_refusal(access_kinds=kinds, secrets=secrets):
            self.add_error("secrets", "Secrets are granted only with the 'secret' access kind.")
        permissions = cleaned.get("token_permissions")
        if kinds is not None and permissions is not None:
            refusal = token_permissions_refusal(
                access_kinds=kinds, token_permissions=permissions
            )
            if refusal:
                self.add_error("token_permissions", _sentence(refusal))
        approvals = cleaned.get("approvals_required")
        if approvals is not None and "approver_groups" not in self.errors:
            refusal = approver_groups_refusal(
                approvals_required=approvals, approver_groups=cleaned.get("approver_groups")
            )
            if refusal:
                self.add_error("approver_groups", f"This field {refusal}.")
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
    permissions = PermissionsField(
        help_text=(
            "GitHub token secrets only: the permissions of the token minted for each grant "
            'and written as the environment secret, for example "contents: read, '
            'packages: write".'
        ),
    )

    class Meta:
        model = SecretDefinition
        fields = ["name", "kind", "org", "permissions"]

    def clean_name(self):
        # GitHub's rules for secret names; refusing here beats a failed grant later. The
        # name is kept as written: policies refer to the secret by it.
        name = self.cleaned_data["name"].strip()
        _canonical(canonical_secret_name, name)
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
        elif kind in (SecretDefinition.Kind.ENVIRONMENT, SecretDefinition.Kind.GITHUB_TOKEN):
            if org:
                self.add_error("org", "Only organization secrets take an organization.")
        if kind == SecretDefinition.Kind.GITHUB_TOKEN and new_value:
            self.add_error(
                "new_value",
                "A GitHub token secret's value is a token minted for each grant; it takes "
                "no value.",
            )
        permissions = cleaned.get("permissions")
        if kind and permissions is not None and "permissions" not in self.errors:
            if refusal := secret_permissions_refusal(kind=kind, permissions=permissions):
                self.add_error("permissions", _sentence(refusal))
        if org:
            try:
                org = canonical_owner(org, field="org")
            except NameRefused as refusal:
                self.add_error("org", refusal.messages)
        cleaned["org"] = org
        return cleaned

    def save(self, commit=True):
        secret = super().save(commit=False)
        if secret.kind == SecretDefinition.Kind.GITHUB_TOKEN and secret.has_value:
            # Its value is minted per grant: one kept from another kind is dropped.
            secret.encrypted_value = b""
            secret.value_updated_at = None
        if self.cleaned_data.get("new_value"):
            secret.set_value(self.cleaned_data["new_value"])
            secret.value_updated_at = timezone.now()
        if commit:
            secret.save()
            self.save_m2m()
        return secret


def _refuse_taken_username(form, username: str, *, other_than=None) -> str:
    # Usernames are GitHub logins, which are ASCII: elsewhere a lookup without regard to
    # case may fold "ı" into "I" in the database (migration 0009 says more).
    if username:
        ASCIIUsernameValidator()(username)
    if username and username_is_taken(username=username, other_than=other_than):
        raise ValidationError(
            form.instance.unique_error_message(form._meta.model, ["username"]), code="unique"
        )
    return username


class UserAdminCreationForm(AdminUserCreationForm):
    """Usernames are GitHub logins: a case variant of one taken is taken (the database
    refuses it too; this says so as a form error instead of failing)."""

    def clean_username(self):
        return _refuse_taken_username(self, self.cleaned_data.get("username"))


class UserAdminChangeForm(UserChangeForm):
    """Renaming to a case variant of another user's name is refused, as when adding."""

    def clean_username(self):
        return _refuse_taken_username(
            self, self.cleaned_data.get("username"), other_than=self.instance
        )
