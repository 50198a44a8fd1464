"""manage.py reconcile: reconcile every target now, with a drift check, in this process."""

from django.core.management.base import BaseCommand, CommandError

from grants.drift import reconcile_all


class Command(BaseCommand):
    help = (
        "Reconcile every target now: apply approved grants, revoke ended ones, and compare "
        "each managed environment and organization secret on GitHub with its desired state "
        "(drift is repaired and audited)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-check",
            action="store_true",
            help="Skip the drift check: only touch targets with grants to apply or revoke.",
        )

    def handle(self, *args, no_check=False, **options):
        results = reconcile_all(check=not no_check)
        for result in results:
            self.stdout.write(result.summary())
        if not results:
            self.stdout.write("No targets to reconcile.")
        busy = sum(result.busy for result in results)
        if busy:
            # Not a failure: the worker holding the target makes another pass for us.
            self.stderr.write(f"{busy} target(s) busy in another worker (see above).")
        failed = sum(bool(result.errors) for result in results)
        if failed:
            # A non-zero exit, so scripts and cron jobs notice without reading the output.
            raise CommandError(f"{failed} target(s) reported errors (see above).")
