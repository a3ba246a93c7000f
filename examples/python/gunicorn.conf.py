"""gunicorn settings, in the style of Heroku's python-getting-started (gunicorn.conf.py).

The router keeps its connections to a web dyno alive (as Heroku's Router 2.0 and an ALB do):
threaded workers serve a connection's next request without a new connection, where sync
workers answer every request with `Connection: close`.
"""

import os

# Every interface, on the port the platform gives the dyno.
bind = ["0.0.0.0:" + os.environ.get("PORT", "8000")]

# WEB_CONCURRENCY processes (gunicorn's own default reads it too), 2 when unset: this app's
# capacity before, with sync workers.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Threads serve requests; idle keep-alive connections wait in the worker's poller, not in a
# thread, so many idle router connections cost no thread.
worker_class = "gthread"
threads = 5

# The app is imported once, before the workers fork: less memory, a faster worker restart.
preload_app = True

# Idle keep-alive connections are kept longer than the router keeps them (a few seconds
# locally; Heroku's Router 2.0: 90 s), so closing one is always the router's doing: were
# gunicorn to close one just as the router sends a request on it, that request would fail
# (the router sends only GET, HEAD and OPTIONS again). gunicorn's default is 2 s. 95 s, as
# Heroku's getting-started, works on both.
keepalive = 95

# Access logs to stdout, which the platform collects (`dynoform logs`).
accesslog = "-"
