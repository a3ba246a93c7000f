"""The `worker` process type: a loop that logs a heartbeat with its dyno and release."""

import os
import signal
import sys
import time

running = True


def stop(signum, frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
dyno = os.environ.get("DYNO", "unknown")
release = os.environ.get("DYNOFORM_RELEASE") or os.environ.get("HEROKU_RELEASE_VERSION", "unknown")
count = 0
while running:
    count += 1
    print(f"worker {dyno} release {release}: tick {count}", flush=True)
    for _ in range(50):
        if not running:
            break
        time.sleep(0.1)
print(f"worker {dyno}: SIGTERM received, exiting", flush=True)
sys.exit(0)
