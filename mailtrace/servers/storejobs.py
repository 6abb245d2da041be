"""Store work off the event loop: the worker threads that run the cores' ``Pending`` jobs.

A core hands slow store work to its shell as a ``Pending`` (protocols/base.py): an fsync'd
Maildir delivery; every store call of the POP3 core (the password check, the lock and scan of
the maildrop, reading a message for RETR and TOP, the unlinks at QUIT, releasing the lock).  The shell
runs it here, in a pool of its own (not asyncio's default executor, which name lookups share),
so a slow disk or a uidlist lock held by another program stalls that session only.  Deliveries
that finish together share one directory fsync (group commit, ``store.folder.Folder.sync_dir``);
each reply is still sent only after its own job returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from typing import Any, Callable

WORKERS = 8  # concurrent store jobs; more only queue behind the same disk
#: How long a thread may hold the interpreter lock while another waits for it (Python's default
#: is 5 ms).  A store job releases the lock at every system call (open, write, fsync, rename)
#: and must win it back from the event loop each time; while one client floods the loop with
#: pipelined commands, 5 ms per win made another client's DATA wait for the whole flood (1.3 s
#: for 100,000 NOOPs, tests/integration/test_servers_fairness.py); at 0.5 ms it waits ~30 ms.
SWITCH_INTERVAL = 0.0005

_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        _pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="mailtrace-store")
    return _pool


async def run_store_job(job: Callable[[], Any]) -> Any:
    """``job()`` in a store worker thread; the event loop serves other sessions meanwhile.

    The worker hands the result straight to the loop (``call_soon_threadsafe``): half the
    CPU of ``run_in_executor``, which chains a second future to the pool's (9 against 18 µs
    a job, measured with uvloop; one job per delivered message)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def work() -> None:
        try:
            result = job()
        except BaseException as exc:  # handed to the awaiting session, as run_in_executor does
            loop.call_soon_threadsafe(_settle, done, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    _executor().submit(work)
    return await done


def _settle(done: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if done.cancelled():  # the session was cancelled (the lab stopping) while the job ran
        return
    if exc is None:
        done.set_result(result)
    else:
        done.set_exception(exc)
