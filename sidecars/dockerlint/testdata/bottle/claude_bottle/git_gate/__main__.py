"""Stub git_gate daemon: says it started, then waits for a stop signal."""

import signal
import sys

print("stub git_gate started", flush=True)
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
while True:
    signal.pause()
