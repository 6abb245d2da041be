"""A broken server for the grader's tests: it crashes at start (an exception before listening)."""
import sys

raise RuntimeError("the student forgot something: " + " ".join(sys.argv[1:]))
