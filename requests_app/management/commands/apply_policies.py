"""manage.py apply_policies FILE: approver groups, secrets and policies from YAML."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from requests_app.policy_file import PolicyFileError, parse_policy_file
from requests_app.services import policy_file_apply


class Command(BaseCommand):
    help = "Load approver groups, secret definitions and policies from a YAML policy file."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            text = file.read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        try:
            report = policy_file_apply(document=parse_policy_file(text))
        except PolicyFileError as exc:
            lines = "\n".join(f"  - {problem}" for problem in exc.problems)
            raise CommandError(f"{file} was refused, nothing changed:\n{lines}") from None
        for label, names in (
            ("created", report.created),
            ("changed", report.changed),
            ("unchanged", report.unchanged),
        ):
            for name in names:
                self.stdout.write(f"{label:>9}  {name}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{file}: {len(report.created)} created, {len(report.changed)} changed, "
                f"{len(report.unchanged)} unchanged"
            )
        )
