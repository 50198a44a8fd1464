"""manage.py verify_audit_log: check the audit log's keyed hash chain, and that it still
holds a head kept outside the database; exit 1 when it does not."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.export import KeptHead
from audit.verification import BROKEN, HASH_PREFIX_LENGTH, seq_span, verify_chain


class Command(BaseCommand):
    help = (
        "Checks the audit log's hash chain and reports the first broken link; with --head, "
        "also that the log still holds a head kept outside the database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--head",
            metavar="SEQ:HASH",
            help=(
                "a head kept earlier (export_audit_log --head), or a file holding it: "
                "fails if the log has since been rewound or rewritten"
            ),
        )

    def handle(self, *args, **options):
        kept_head = _kept_head(options["head"]) if options["head"] else None
        result = verify_chain(kept_head=kept_head)
        if result.failure == BROKEN:
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
        if result.failure:
            raise CommandError(f"Audit log {result.failure.upper()}: {result.problem}.")
        head = result.head_hash[:HASH_PREFIX_LENGTH] or "empty"
        summary = f"Audit log OK: {result.checked} events, chain intact (head {head})"
        if kept_head is not None:
            summary += f", kept head at seq {kept_head.seq} present"
        if result.unkeyed:
            span = seq_span(1, result.unkeyed)
            summary += f"; unkeyed, from before the chain had a key: {span}"
        if result.pending:
            summary += (
                f"; {result.pending} newer event(s) committed but not sealed into the chain "
                "yet (not checked)"
            )
        self.stdout.write(summary)


def _kept_head(given: str) -> KeptHead:
    """--head is SEQ:HASH itself, or the file export_audit_log --head wrote it to."""
    text = given
    if not given.partition(":")[0].isdigit() and Path(given).is_file():
        try:
            text = Path(given).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read --head file {given}: {exc}") from None
    try:
        return KeptHead.parse(text)
    except ValueError:
        raise CommandError(
            "--head must be SEQ:HASH (as export_audit_log --head writes it) or a file "
            f"holding it, got {given!r}"
        ) from None
