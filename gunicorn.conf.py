"""gunicorn's settings for the portal's web process, from the environment:

    gunicorn -c gunicorn.conf.py upscaler_site.wsgi

(the Procfile's `web` line; README, "Running in production", lists the variables).
"""

import os
import subprocess
import sys

# Where to listen. A platform that sets PORT routes to it from outside the machine; with
# neither set, a proxy on this machine reaches us on loopback.
bind = os.environ.get("BIND") or (
    f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else "127.0.0.1:8000"
)

# Worker processes (WEB_CONCURRENCY, the name platforms use) and threads in each.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.environ.get("GUNICORN_WORKERS") or 0) or (
    (os.cpu_count() or 1) * 2
)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)

# Threads, not the default sync worker: a sync worker that spends longer than `timeout`
# on one response is killed mid-stream, which cuts a long download such as the spend CSV
# export (a StreamingHttpResponse) and the client gets a truncated file and no error
# (issue #10: 1M rows cut at 30 s). A gthread worker's main thread answers the master's
# heartbeat while request threads work, so `timeout` only kills a worker that is truly
# stuck, and a stream runs as long as it has rows to send. Threads also keep a slow
# client or a large image download from holding a whole process. (With threads > 1,
# gunicorn runs gthread even when asked for sync.)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
# On a restart or deploy (SIGTERM), requests in flight, streams included, get this long.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
# Seconds an idle connection from the proxy is kept open.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or 5)
# The worker heartbeat is a file touched every second: on tmpfs it cannot block on a slow
# disk (gunicorn's advice for containers).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Who may tell gunicorn a request came over https (X-Forwarded-Proto...): the
# TLS-terminating proxy's addresses (README, Security, "Behind a proxy"). The portal
# itself decides by SECURE_PROXY_SSL_HEADER; this keeps gunicorn's own idea the same.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"

# One line per request on stdout, gunicorn's own messages on stderr, both in the format
# LOG_FORMAT names (plain or json). The access line's content is set by the logger class
# (upscaler_site/access_log.py): method, path with our tokens masked and no query
# string, status, size, duration.
accesslog = "-"
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
logger_class = "upscaler_site.access_log.GunicornLogger"


def when_ready(server):
    """Once gunicorn listens, check in a process of its own that PUBLIC_BASE_URL and the
    enabled sandboxes answer (jobs/self_check.py): a wrong address gets one WARNING in
    this log and a banner on /providers/, as under bin/run. Not in this process: the
    master must not open a database connection its workers would inherit. gunicorn
    reaps the child with its workers. SELF_CHECK=off skips it (a node that cannot reach
    its own public address, for one)."""
    if (os.environ.get("SELF_CHECK") or "on").lower() in ("off", "0", "false", "no"):
        return
    from gunicorn.sock import TCPSocket

    # A unix socket or gunicorn's own TLS: no plain http address to wait for here.
    tcp = [s for s in server.LISTENERS if isinstance(s, TCPSocket) and not s.conf.is_ssl]
    if not tcp:
        return
    host, port = tcp[0].sock.getsockname()[:2]
    addrport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    manage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manage.py")
    subprocess.Popen([sys.executable, manage, "self_check", "--wait-for", addrport, "-v", "0"])
