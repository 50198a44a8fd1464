"""The admin pages that approve, deny and review break-glass requests: one confirmation page
for each, reached from the list or a request's page; the request services decide."""

from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.errors import NotAllowed, WrongState
from requests_app import selectors
from requests_app.forms import BreakGlassReviewForm, DecisionForm
from requests_app.models import AccessRequest
from requests_app.services import (
    access_request_approve,
    access_request_deny,
    access_request_review_break_glass,
)
from requests_app.views import grant_state_template

Status = AccessRequest.Status


@dataclass(frozen=True)
class RequestPage:
    """One kind of confirmation page: its form, why a request is refused on it, the service
    it calls with the confirmed form, and what it says when that went well."""

    template: str
    title: str
    form: type
    refusal: object  # (access_request, user) -> str | None
    act: object  # (access_request, user, cleaned_data) -> None
    outcome: object  # (access_request) -> str
    form_kwargs: dict | None = None
    context: dict | None = None
    counted: bool = False  # the title names the requests: "Approve access requests"


def _decision_refusal(access_request, user) -> str | None:
    if access_request.status != Status.PENDING:
        return f"It is {access_request.get_status_display()}."
    return selectors.request_refusal_for_decider(access_request=access_request, user=user)


def _review_refusal(access_request, user) -> str | None:
    refusal = selectors.request_refusal_for_reviewer(access_request=access_request, user=user)
    if refusal is None and access_request.review_outcome:
        return f"Already reviewed: {access_request.get_review_outcome_display()}."
    return refusal


def _approved(access_request) -> str:
    count = access_request.approvals.count()
    if access_request.status == Status.APPROVED:
        return (
            f"Request #{access_request.pk} is approved ({count} of "
            f"{access_request.approvals_required}); access will be granted."
        )
    return (
        f"Your approval of request #{access_request.pk} is recorded ({count} of "
        f"{access_request.approvals_required}); it needs more."
    )


def _decision_page(name: str, title: str, service, outcome) -> RequestPage:
    return RequestPage(
        template="admin/requests_app/accessrequest/decision.html",
        title=f"{title} access request",
        counted=True,
        form=DecisionForm,
        form_kwargs={"decision": name},
        context={"decision": name},
        refusal=_decision_refusal,
        act=lambda access_request, user, data: service(
            access_request=access_request, approver=user, comment=data["comment"]
        ),
        outcome=outcome,
    )


PAGES = {
    "approve": _decision_page("approve", "Approve", access_request_approve, _approved),
    "deny": _decision_page(
        "deny", "Deny", access_request_deny, lambda r: f"Request #{r.pk} is denied."
    ),
    "review": RequestPage(
        template="admin/requests_app/accessrequest/review.html",
        title="Record the review of break-glass access",
        form=BreakGlassReviewForm,
        refusal=_review_refusal,
        act=lambda access_request, user, data: access_request_review_break_glass(
            access_request=access_request,
            reviewer=user,
            outcome=data["outcome"],
            comment=data["comment"],
        ),
        outcome=lambda r: (
            f"Break-glass request #{r.pk}: review recorded ({r.get_review_outcome_display()})."
        ),
    ),
}


class RequestPagesMixin:
    """The decision and review pages of AccessRequestAdmin, with its change page showing
    whether the user may decide or review."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if obj is not None:
            extra_context.update(self._decision_context(request, obj))
        return super().change_view(request, object_id, form_url, extra_context)

    def _decision_context(self, request, obj) -> dict:
        if obj.status != Status.PENDING:
            refusal = f"This request is {obj.get_status_display()}; there is nothing to decide."
        else:
            refusal = selectors.request_refusal_for_decider(access_request=obj, user=request.user)
            if refusal is None and obj.approvals.filter(approver=request.user).exists():
                refusal = "You have approved this request already."
        review_refusal = None
        if obj.break_glass:
            review_refusal = selectors.request_refusal_for_reviewer(
                access_request=obj, user=request.user
            )
        return {
            "grant_template": grant_state_template(),
            "decision_refusal": refusal,
            "approve_url": reverse(f"admin:{self._url_name('approve')}", args=[obj.pk]),
            "deny_url": reverse(f"admin:{self._url_name('deny')}", args=[obj.pk]),
            "review_refusal": review_refusal,
            "review_url": reverse(f"admin:{self._url_name('review')}", args=[obj.pk]),
        }

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        return [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(getattr(self, f"{name}_view")),
                name=self._url_name(name),
            )
            for name in PAGES
        ] + super().get_urls()

    @admin.action(description="Approve selected requests…", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._page(request, "approve", list(queryset), from_action="approve_selected")

    @admin.action(description="Deny selected requests…", permissions=["decide"])
    def deny_selected(self, request, queryset):
        return self._page(request, "deny", list(queryset), from_action="deny_selected")

    @admin.action(description="Record break-glass review…", permissions=["decide"])
    def review_break_glass_selected(self, request, queryset):
        return self._page(
            request, "review", list(queryset), from_action="review_break_glass_selected"
        )

    def approve_view(self, request, object_id):
        return self._page_for_one(request, object_id, "approve")

    def deny_view(self, request, object_id):
        return self._page_for_one(request, object_id, "deny")

    def review_view(self, request, object_id):
        return self._page_for_one(request, object_id, "review")

    def _page_for_one(self, request, object_id, name):
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        response = self._page(request, name, [obj])
        if response is None:
            return HttpResponseRedirect(
                reverse(
                    f"admin:{self._url_name('change')}",
                    args=[obj.pk],
                    current_app=self.admin_site.name,
                )
            )
        return response

    def _page(self, request, name, access_requests, *, from_action=None):
        """Show the confirmation page; when it is sent, act on each request and say how
        each went. Returns None once done (the caller redirects)."""
        page = PAGES[name]
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = page.form(request.POST if confirmed else None, **(page.form_kwargs or {}))
        if confirmed and form.is_valid():
            for access_request in access_requests:
                self._act(request, page, access_request, form.cleaned_data)
            return None
        rows = [(r, page.refusal(r, request.user)) for r in access_requests]
        title = page.title + ("s" if page.counted and len(rows) != 1 else "")
        context = {
            **self.admin_site.each_context(request),
            **(page.context or {}),
            "title": title,
            "opts": self.opts,
            "rows": rows,
            "form": form,
            "from_action": from_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "single": None if from_action else access_requests[0],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, page.template, context)

    def _act(self, request, page, access_request, data) -> None:
        try:
            page.act(access_request, request.user, data)
        except NotAllowed as exc:
            self.message_user(request, f"Request #{access_request.pk}: {exc}", messages.ERROR)
        except (WrongState, ValidationError) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.message_user(request, f"Request #{access_request.pk}: {text}", messages.WARNING)
        else:
            self.message_user(request, page.outcome(access_request), messages.SUCCESS)
