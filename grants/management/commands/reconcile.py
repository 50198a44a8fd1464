"""manage.py reconcile: reconcile every target now, with a drift check, in this process."""

from django.core.management.base import BaseCommand

from grants.services import reconcile_all


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
        failed = False
        for result in results:
            self.stdout.write(result.summary())
            failed |= bool(result.errors or result.busy)
        if not results:
            self.stdout.write("No targets to reconcile.")
        if failed:
            self.stderr.write("Some targets were busy or reported errors (see above).")
