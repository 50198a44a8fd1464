"""The reconciler: brings one target on GitHub to its desired state (docs/reconciler.md)."""

from .context import PassContext, ReconcileResult
from .environment import reconcile_environment
from .expiry import expiry_batches
from .lease import Lease, request_reconcile
from .org_secrets import reconcile_org_secret
from .plan import EXPIRY_TOLERANCE, Plan
from .runner import MAX_PASSES
from .token_secrets import REFRESH_MARGIN, secret_token_refreshes
from .tokens import tokens_erase_expired, tokens_left_targets
from .transitions import MAX_RETRY_DELAY

__all__ = [
    "EXPIRY_TOLERANCE",
    "MAX_PASSES",
    "MAX_RETRY_DELAY",
    "REFRESH_MARGIN",
    "Lease",
    "PassContext",
    "Plan",
    "ReconcileResult",
    "expiry_batches",
    "reconcile_environment",
    "reconcile_org_secret",
    "request_reconcile",
    "secret_token_refreshes",
    "tokens_erase_expired",
    "tokens_left_targets",
]
