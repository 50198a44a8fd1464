"""manage.py forward_audit_log: deliver the audit log to every configured SIEM sink now and
show how far each is; with --sink and --from-seq, first set where that sink delivers from."""

from django.core.management.base import BaseCommand, CommandError

from audit.actions import AuditAction
from audit.forwarding import (
    ForwardingRewindError,
    audit_forward,
    audit_sink_rewind,
    configured_sinks,
    sink_row,
)
from audit.selectors import sink_backlog


class Command(BaseCommand):
    help = (
        "Delivers the audit events each configured sink (AIRLOCK_AUDIT_STREAM_URL, "
        "AIRLOCK_AUDIT_SYSLOG_URL) has not accepted yet, then prints each sink's cursor, "
        "backlog and last error. With --sink NAME --from-seq N, that sink first goes back "
        "(or forward) to deliver from seq N (audited as "
        f"{AuditAction.AUDIT_FORWARDING_REWOUND.value})."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sink", help='the sink to set: "http" or "syslog"')
        parser.add_argument(
            "--from-seq",
            type=int,
            metavar="N",
            help="deliver to --sink from seq N on: 1 sends the whole log again",
        )
        parser.add_argument(
            "--actor",
            default="",
            help="who asks for the --from-seq change, for the audit log (default: system)",
        )

    def handle(self, *args, **options):
        sinks = {sink.name: sink for sink in configured_sinks()}
        name, from_seq = options["sink"], options["from_seq"]
        if (name is None) != (from_seq is None):
            raise CommandError("--sink and --from-seq go together")
        if name is not None:
            if name not in sinks:
                configured = ", ".join(sinks) or "none"
                raise CommandError(
                    f"--sink {name!r} is not a configured sink (configured: {configured}; "
                    "set AIRLOCK_AUDIT_STREAM_URL or AIRLOCK_AUDIT_SYSLOG_URL)"
                )
            try:
                row = audit_sink_rewind(
                    sink=sinks[name], from_seq=from_seq, actor_label=options["actor"]
                )
            except ForwardingRewindError as error:
                raise CommandError(f"--from-seq: {error}") from None
            self.stdout.write(f"{name}: delivers from seq {row.cursor + 1}")
        if not sinks:
            self.stdout.write(
                "No sink is configured (AIRLOCK_AUDIT_STREAM_URL, AIRLOCK_AUDIT_SYSLOG_URL)."
            )
            return
        for sink in sinks.values():
            report = audit_forward(sink=sink)
            row = sink_row(sink)
            backlog = sink_backlog(row)
            line = (
                f"{sink.name} ({sink.target}): {report.delivered} event(s) accepted now "
                f"({report.outcome}); cursor {row.cursor}, backlog {backlog.events}"
            )
            if backlog.oldest_at is not None:
                line += f" since {backlog.oldest_at.isoformat()}"
            if row.last_error:
                line += f"; last error at {row.last_error_at.isoformat()}: {row.last_error}"
            self.stdout.write(line)
