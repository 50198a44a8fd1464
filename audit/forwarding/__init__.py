"""Forwarding the audit log to SIEM sinks: at least once, in seq order, never skipping
(PRODUCT.md "Audit forwarding"). Each sink's cursor lives in audit.models.AuditSink.

- configuration.py: the sinks the settings configure.
- lease.py: one deliverer per sink at a time, by compare-and-set.
- delivery.py: audit_forward() sends batches after the cursor and advances it.
- rewind.py: audit_sink_rewind() sets a cursor back (or forward) by hand, audited.
"""

from audit.forwarding.configuration import configured_sink_names, configured_sinks
from audit.forwarding.delivery import ForwardReport, audit_forward, audit_forward_all, sink_row
from audit.forwarding.rewind import ForwardingRewindError, audit_sink_rewind

__all__ = [
    "ForwardReport",
    "ForwardingRewindError",
    "audit_forward",
    "audit_forward_all",
    "audit_sink_rewind",
    "configured_sink_names",
    "configured_sinks",
    "sink_row",
]
