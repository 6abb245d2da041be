"""A broken server for the grader's tests: it starts and never listens (it sleeps)."""
import time

while True:
    time.sleep(1)
