"""How the REST API says no: every error is JSON, `{"message": str, "errors": {field:
[str]}}` (which error is which status: docs/api.md "Errors")."""

import logging

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from core.errors import NotAllowed, WrongState

logger = logging.getLogger(__name__)

NON_FIELD = "non_field_errors"
MESSAGE_FIELDS_SHOWN = 3


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request is not in a state that allows this."
    default_code = "wrong_state"


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer."""

    message = serializers.CharField(help_text="What went wrong, for people.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per input field; non_field_errors for the input as a whole.",
    )


_DESCRIPTIONS = {
    400: "Bad input: the message says what, errors says which field.",
    401: "No credentials, or credentials that are not valid (the message says why).",
    403: "Authenticated, but not allowed to do this.",
    404: "No such object, or not one the caller may see.",
    409: "The object's state does not allow this (already decided, cancelled, ended).",
    429: "Too many requests from this caller: wait the seconds Retry-After says.",
    503: "A service Airlock depends on did not answer.",
}


def error_responses(*codes: int) -> dict:
    """extend_schema(responses=...) entries for these error statuses."""
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=_DESCRIPTIONS[code])
        for code in codes
    }


def _field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as flat {"field": ["message", ...]}."""
    if isinstance(detail, dict):
        flat = {}
        for name, value in detail.items():
            name = NON_FIELD if name == NON_FIELD_ERRORS else str(name)
            flat.update(_field_errors(value, f"{prefix}.{name}" if prefix else name))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or NON_FIELD: [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_field_errors(item, f"{prefix}[{index}]"))
        return flat
    return {prefix or NON_FIELD: [str(detail)]}


def _validation_message(errors: dict[str, list[str]]) -> str:
    if list(errors) == [NON_FIELD]:
        return " ".join(errors[NON_FIELD])
    parts = [
        (messages[0] if name == NON_FIELD else f"{name}: {messages[0]}")
        for name, messages in list(errors.items())[:MESSAGE_FIELDS_SHOWN]
    ]
    more = len(errors) - MESSAGE_FIELDS_SHOWN
    return " ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _as_drf(exc):
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail = {
                name: [message for error in errors for message in error.messages]
                for name, errors in exc.error_dict.items()
            }
        else:
            detail = {NON_FIELD: exc.messages}
        return exceptions.ValidationError(detail)
    if isinstance(exc, NotAllowed):  # before DRF turns it into a bare "permission denied"
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, WrongState):
        return Conflict(str(exc) or None)
    return exc


def api_exception_handler(exc, context):
    exc = _as_drf(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        # Unexpected: roll back, log with the traceback, and still answer in JSON.
        set_rollback()
        view = context.get("view")
        logger.error(
            "Unhandled error in %s", type(view).__name__ if view else "the API", exc_info=exc
        )
        return Response(
            {"message": "Airlock hit an internal error; it has been logged.", "errors": {}},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        message = _validation_message(errors)
    elif isinstance(exc, Http404):
        errors, message = {}, "Not found."
    else:
        detail = getattr(exc, "detail", response.data)
        if isinstance(detail, (dict, list)):
            detail = _validation_message(_field_errors(detail))
        errors, message = {}, str(detail)
    response.data = {"message": message, "errors": errors}
    return response


def api_error_response(message: str, *, status: int) -> JsonResponse:
    """An error in the API's shape, for answers given before DRF sees the request."""
    return JsonResponse({"message": message, "errors": {}}, status=status)


@csrf_exempt  # nothing here to protect; a browser POST still gets the JSON 404
def api_not_found(request, *args, **kwargs):
    """Any path under /api/ that names no endpoint."""
    return api_error_response(f"There is no API endpoint at {request.path}.", status=404)
