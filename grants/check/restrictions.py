"""A grant's workflow and ref restrictions (workflow_ref_pattern / ref_pattern globs): whether
a workflow's claims satisfy them, and how to name them."""

from fnmatch import fnmatchcase


def restriction_refusal(access_request, *, job_workflow_ref: str | None, ref: str | None) -> str:
    """Why a workflow with these claims may not use this request's grant; "" if it may.

    access_request is anything with workflow_ref_pattern and ref_pattern: an
    AccessRequest, or the check's CheckedGrant.

    None for a claim means "not known" (the deployment webhook names no workflow, for
    instance): a grant restricted on that claim is then refused, never assumed to match.
    """
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
    if access_request.workflow_ref_pattern:
        parts.append(f"workflows matching '{access_request.workflow_ref_pattern}'")
    if access_request.ref_pattern:
        parts.append(f"refs matching '{access_request.ref_pattern}'")
    return " and ".join(parts)
