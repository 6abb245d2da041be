"""The servers' loop tunes the garbage collector (servers/loop.py ``tune_collector``) without
turning it off: a reference cycle dropped while the servers run is still collected.

Run in a child interpreter (``sys.executable``): the tuning is for the whole process, and must not
change the collector of the test run itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import asyncio, gc, weakref
    from mailtrace.servers.loop import YOUNG_THRESHOLD, run

    class Node:
        pass

    async def main():
        assert gc.isenabled() and gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_threshold()
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        gone = weakref.ref(a)
        del a, b
        for _ in range(20):  # allocations, as serving sessions makes, until the collector runs
            keep = [[i] for i in range(YOUNG_THRESHOLD)]
            await asyncio.sleep(0)
            if gone() is None:
                return "collected"
        return "leaked"

    print(run(main()), gc.get_freeze_count() > 0)
""")


def test_a_cycle_dropped_while_the_servers_run_is_still_collected():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["collected", "True"]
