"""Store work off the event loop: the worker threads that run the cores' ``Pending`` jobs.

A core hands slow store work to its shell as a ``Pending`` (protocols/base.py): an fsync'd
Maildir delivery; every store call of the POP3 core (the password check, the lock and scan of
the maildrop, reading a message for RETR and TOP, the unlinks at QUIT, releasing the lock).  The shell
runs it here, in a pool of its own (not asyncio's default executor, which name lookups share),
so a slow disk or a uidlist lock held by another program stalls that session only.

Group commit: the SMTP deliveries whose final dot was read in the same turn of the event loop
go to one worker as one job (``run_store_job`` below, ``InMemoryDelivery.run_group``): one
hand-over to a thread and back, one uidlist update and one fsync of new/ per mailbox for all
of them.  Each reply is still sent only after its own message was fsync'd.
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
    a job, measured with uvloop; one job per delivered message).

    Group commit: a job with a ``group`` (protocols/smtp/delivery.py ``InMemoryDelivery``)
    waits for the end of the current turn of the loop; the jobs of one group gathered in
    that turn then run as one (``run_group``): one hand-over to a thread and back, one
    uidlist update and one directory fsync for all.  Each awaiting session still gets its
    own job's result, once that job's work is done."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    group = getattr(job, "group", None)
    if group is not None:
        _gather(loop, group, job, done)
    else:
        _executor().submit(_work, loop, job, done)
    return await done


def _work(loop: asyncio.AbstractEventLoop, job: Callable[[], Any], done: asyncio.Future) -> None:
    """(In a worker thread.)"""
    try:
        result = job()
    except BaseException as exc:  # handed to the awaiting session, as run_in_executor does
        loop.call_soon_threadsafe(_settle, done, None, exc)
    else:
        loop.call_soon_threadsafe(_settle, done, result, None)


#: The group jobs gathered in the current turn of each loop: group -> [(job, future)].
_gathering: dict[asyncio.AbstractEventLoop, dict[Any, list]] = {}


def _gather(loop: asyncio.AbstractEventLoop, group: Any, job: Any, done: asyncio.Future) -> None:
    groups = _gathering.get(loop)
    if groups is None:
        groups = _gathering[loop] = {}
        loop.call_soon(_hand_over, loop)  # after the callbacks already due in this turn
    groups.setdefault(group, []).append((job, done))


def _hand_over(loop: asyncio.AbstractEventLoop) -> None:
    for batch in _gathering.pop(loop, {}).values():
        _executor().submit(_work_group, loop, batch)


def _work_group(loop: asyncio.AbstractEventLoop, batch: list) -> None:
    """(In a worker thread.)  The jobs of one group as one; every future settled in one callback."""
    jobs = [job for job, _ in batch]
    try:
        results = type(jobs[0]).run_group(jobs) if len(jobs) > 1 else [jobs[0]()]
        settled = [(done, result, None) for (_, done), result in zip(batch, results)]
    except BaseException as exc:
        settled = [(done, None, exc) for _, done in batch]
    loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list) -> None:
    for done, result, exc in settled:
        _settle(done, result, exc)


def _settle(done: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if done.cancelled():  # the session was cancelled (the lab stopping) while the job ran
        return
    if exc is None:
        done.set_result(result)
    else:
        done.set_exception(exc)
