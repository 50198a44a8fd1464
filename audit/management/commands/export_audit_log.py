"""manage.py export_audit_log: the audit log as JSON Lines, oldest first, for a SIEM, and
its head to keep outside the database (--head)."""

import os
import sys
from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.export import KeptHead, events_for_export, json_lines, log_head
from audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Writes audit events as JSON Lines (one event per line, with its hash and "
        "prev_hash), oldest first, to standard output or a file; with --head, also the "
        "log's head to keep outside the database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            help=(
                "only events at or after this ISO 8601 date or time; without an offset "
                "it is in the portal's TIME_ZONE"
            ),
        )
        parser.add_argument(
            "--action",
            help='only this action, e.g. request.approved; "request.*" for a whole family',
        )
        parser.add_argument("--output", help="write to this file instead of standard output")
        parser.add_argument(
            "--head",
            metavar="FILE",
            help=(
                "also write the log's head (SEQ:HASH of its newest event, whatever the "
                "filters) to this file, to keep outside the database for "
                "verify_audit_log --head"
            ),
        )

    def handle(self, *args, **options):
        head = log_head()
        if options["head"] and head is None:
            raise CommandError("the audit log is empty: it has no head to keep")
        # The events and the head show the log as it was when the export began.
        events = AuditEvent.objects.filter(seq__lte=head.seq if head else 0)
        if options["since"]:
            events = events.filter(created_at__gte=_parse_since(options["since"]))
        if options["action"]:
            action = options["action"]
            if action.endswith(".*"):
                events = events.filter(action__startswith=action[:-1])
            else:
                events = events.filter(action=action)

        if not options["output"]:
            try:
                for line in json_lines(events_for_export(events)):
                    self.stdout.write(line, ending="")
                self.stdout.flush()
            except BrokenPipeError:
                # The reader stopped early (| head): not a failure. Point stdout at
                # /dev/null so that Python's own flush at exit does not fail again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
            if options["head"]:
                _write_head(options["head"], head)
            return
        count = 0
        try:
            with open(options["output"], "w", encoding="utf-8") as output:
                for line in json_lines(events_for_export(events)):
                    output.write(line)
                    count += 1
        except OSError as exc:
            raise CommandError(f"cannot write {options['output']}: {exc}") from None
        self.stdout.write(f"Wrote {count} audit events to {options['output']}")
        if options["head"]:
            _write_head(options["head"], head)
            self.stdout.write(f"Wrote the log head {head} to {options['head']}")


def _write_head(path: str, head: KeptHead) -> None:
    try:
        with open(path, "w", encoding="utf-8") as output:
            output.write(f"{head}\n")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc}") from None


def _parse_since(text: str) -> datetime:
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--since must be an ISO 8601 date or time, got {text!r}")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment
