"""manage.py createapitoken USERNAME [--expires-in 30d] [--name NAME]: a personal API token,
printed once, alone on the last line of output so that scripts can take it with tail -1."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.durations import parse_duration
from requests_app.tokens import DEFAULT_LIFETIME, MAX_LIFETIME, api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--expires-in",
            default=f"{DEFAULT_LIFETIME.days}d",
            help=f"lifetime, e.g. 30m, 12h, 30d (default {DEFAULT_LIFETIME.days}d, "
            f"at most {MAX_LIFETIME.days}d)",
        )
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args, username: str, expires_in: str, name: str, **options):
        user = get_user_model().objects.filter(username__iexact=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not user.is_active:
            raise CommandError(f"The user {user.username} is disabled.")
        try:
            lifetime = parse_duration(expires_in)
        except ValueError as problem:
            raise CommandError(f"--expires-in: {problem}") from None
        try:
            token, raw = api_token_create(
                user=user, name=name or "created with manage.py createapitoken", lifetime=lifetime
            )
        except ValueError as problem:
            raise CommandError(str(problem)) from None
        self.stdout.write(
            f"API token {token.prefix}… for {user.username}, expires "
            f"{token.expires_at.isoformat(timespec='seconds')}. It is shown only this once:"
        )
        self.stdout.write(raw)
