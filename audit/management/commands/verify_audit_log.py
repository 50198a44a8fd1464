"""manage.py verify_audit_log: check the audit log's hash chain, exit 1 on a broken link."""

from django.core.management.base import BaseCommand, CommandError

from audit.verification import verify_chain

HASH_PREFIX_LENGTH = 12


class Command(BaseCommand):
    help = "Checks the audit log's hash chain and reports the first broken link."

    def handle(self, *args, **options):
        result = verify_chain()
        if not result.ok:
            event = result.first_broken
            where = (
                f"seq {event.seq} (id {event.id}, {event.action})"
                if event is not None
                else "the end of the log"
            )
            intact = (
                "1 event before it is intact"
                if result.checked == 1
                else f"{result.checked} events before it are intact"
            )
            raise CommandError(f"Audit log BROKEN at {where}: {result.problem}. {intact}.")
        head = result.head_hash[:HASH_PREFIX_LENGTH] or "empty"
        self.stdout.write(f"Audit log OK: {result.checked} events, chain intact (head {head})")
