"""Run the local GitHub by itself: python -m tests.github_fake --port 9100 [--state-file X]."""

import argparse
import time

from .server import GitHubServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.github_fake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--state-file",
        help="JSON seed loaded at start (if it exists) and rewritten after every write; "
        "same vocabulary as GET /_fake/state",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args()
    server = GitHubServer(args.host, args.port, state_file=args.state_file, verbose=not args.quiet)
    server.start()
    print(
        f"local GitHub on {server.base_url}  (REST {server.api_url}, app token {server.app_token})",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
