"""Stub supervise daemon: says it started, then waits for a stop signal."""

import signal
import sys

print("stub supervise started", flush=True)
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
while True:
    signal.pause()
