"""The worker: takes jobs off the Redis list `jobs` and counts them; stops on SIGTERM."""

import os
import signal
import sys
import time

import redis

running = True


def stop(signum, frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
dyno = os.environ.get("DYNO", "unknown")
if "REDIS_URL" not in os.environ:  # no add-on (yet, or any more): idle until stopped
    print(f"worker {dyno}: no REDIS_URL; idle (dynoform addons:create redis)", flush=True)
    while running:
        time.sleep(0.5)
    sys.exit(0)
client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)
print(f"worker {dyno}: waiting for jobs", flush=True)
while running:
    try:
        item = client.blpop(["jobs"], timeout=1)
    except redis.exceptions.ConnectionError as exc:
        print(f"worker {dyno}: redis unavailable ({exc}); retrying", flush=True)
        time.sleep(1)
        continue
    if item is None:
        continue
    pipe = client.pipeline()
    pipe.incr("processed")
    pipe.hincrby("processed_by", dyno, 1)
    pipe.execute()
print(f"worker {dyno}: SIGTERM received, exiting", flush=True)
sys.exit(0)
