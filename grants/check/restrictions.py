"""A grant's run binding and its workflow and ref restrictions (workflow_ref_pattern /
ref_pattern globs): whether a workflow's claims satisfy them, and how to name them."""

from fnmatch import fnmatchcase


def run_refusal(access_request, *, run_id: int | None) -> str:
    """Why a caller of this run (None: no run, a person) may not use this request's grant;
    "" if it may. A grant a workflow asked for serves only that run."""
    bound = access_request.run_id
    if bound is None or bound == run_id:
        return ""
    if run_id is None:
        return (
            f"it belongs to run {bound} of {access_request.repository}, and only that run "
            "may use it"
        )
    return f"it belongs to run {bound} of {access_request.repository}; this is run {run_id}"


def restriction_refusal(
    access_request, *, job_workflow_ref: str | None, ref: str | None, run_id: int | None
) -> str:
    """Why a workflow with these claims may not use this request's grant; "" if it may.

    access_request is anything with workflow_ref_pattern, ref_pattern and run_id: an
    AccessRequest, or the check's CheckedGrant.

    None for a claim means "not known" (the deployment webhook names no workflow, for
    instance): a grant restricted on that claim is then refused, never assumed to match.
    """
    if refusal := run_refusal(access_request, run_id=run_id):
        return refusal
    pattern = access_request.workflow_ref_pattern
    if pattern:
        if job_workflow_ref is None:
            return f"only workflows matching '{pattern}' may use it, and the workflow is unknown"
        if not fnmatchcase(job_workflow_ref, pattern):
            return (
                f"only workflows matching '{pattern}' may use it; this one is "
                f"'{job_workflow_ref or '(none)'}'"
            )
    pattern = access_request.ref_pattern
    if pattern:
        if ref is None:
            return f"only refs matching '{pattern}' may use it, and the ref is unknown"
        if not fnmatchcase(ref, pattern):
            return f"only refs matching '{pattern}' may use it; this one is '{ref or '(none)'}'"
    return ""


def restriction_label(access_request) -> str:
    """The request's restrictions in words; "" when it has none."""
    parts = []
    if access_request.run_id is not None:
        parts.append(f"run {access_request.run_id}")
    if access_request.workflow_ref_pattern:
        parts.append(f"workflows matching '{access_request.workflow_ref_pattern}'")
    if access_request.ref_pattern:
        parts.append(f"refs matching '{access_request.ref_pattern}'")
    return " and ".join(parts)
