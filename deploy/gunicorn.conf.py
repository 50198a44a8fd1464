"""gunicorn settings for Airlock's web process (`deploy/start web`), sized for a shared
2-core host; WEB_CONCURRENCY and GUNICORN_CMD_ARGS change it."""

import os
import sys
from pathlib import Path

# The config file is read before the application is imported; make `portal` importable
# whatever directory gunicorn was started from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.logging import log_format_and_level_from_env, logging_config  # noqa: E402

wsgi_app = "portal.wsgi:application"
bind = os.environ.get("AIRLOCK_BIND", "0.0.0.0:8000")

# Threads rather than more processes: requests mostly wait on the database, and each
# process holds a full Django in memory.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 4
timeout = 30
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (jittered so they do not all restart at once).
max_requests = 1000
max_requests_jitter = 100
# Airlock does not use gunicorn's control socket (gunicorn 24+), which would be written
# under $HOME.
control_socket_disable = True
# Worker heartbeats on a memory filesystem: a container's overlay /tmp can stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# portal.middleware writes one access line per request, with the request id; gunicorn's
# own messages go through the same JSON formatter and secret filter.
accesslog = None
errorlog = "-"
_log_format, loglevel = log_format_and_level_from_env()
logconfig_dict = logging_config(log_format=_log_format, level=loglevel)
logconfig_dict["loggers"]["gunicorn.error"] = {
    "handlers": ["console"],
    "level": loglevel,
    "propagate": False,
}
logconfig_dict["loggers"]["gunicorn.access"] = {"handlers": [], "propagate": False}


def child_exit(server, worker):
    # Metrics (core/metrics.py, multiprocess mode): a dead worker's per-process gauges
    # go, its counters stay counted. (No gauge of Airlock's is per live process today;
    # this keeps one that is added right.)
    from core.metrics import process_exited

    process_exited(worker.pid)
