"""Store work off the event loop: the worker threads that run the cores' ``Pending`` jobs.

A core hands slow store work to its shell as a ``Pending`` (protocols/base.py): an fsync'd
Maildir delivery; every store call of the POP3 core (the password check, the lock and scan of
the maildrop, reading a message for RETR and TOP, the unlinks at QUIT, releasing the lock).  The shell
runs it here, in worker threads of its own (not asyncio's default executor, which name lookups share),
so a slow disk or a uidlist lock held by another program stalls that session only.

Group commit: while a group's job is in a worker, the SMTP deliveries of that group whose
final dot is read meanwhile wait, and go to a worker together as ONE job when it returns
(``run_store_job`` below, ``InMemoryDelivery.run_group``): one hand-over to a thread and back,
one uidlist update and one fsync of new/ per mailbox for all of them.  A delivery that finds
its group idle goes at once (a single client waits for no one).  Each reply is still sent
only after its own message was fsync'd.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import queue
import sys
import threading
import weakref
from typing import Any, Callable

WORKERS = 8  # concurrent store jobs; more only queue behind the same disk
#: How long a thread may hold the interpreter lock while another waits for it (Python's default
#: is 5 ms).  A store job releases the lock at every system call (open, write, fsync, rename)
#: and must win it back from the event loop each time; while one client floods the loop with
#: pipelined commands, 5 ms per win made another client's DATA wait for the whole flood (1.3 s
#: for 100,000 NOOPs, tests/integration/test_servers_fairness.py); at 0.5 ms it waits ~30 ms.
SWITCH_INTERVAL = 0.0005

_jobs: queue.SimpleQueue = queue.SimpleQueue()  # (function, arguments) for the workers; None: stop
_workers: list[threading.Thread] = []
_idle: collections.deque = collections.deque()  # one token per worker waiting for a job (atomic append/pop)
_started = threading.Lock()


def _submit(fn: Callable[..., None], *args: Any) -> None:
    """Hand ``fn(*args)`` to a store worker; a new one is started when none is idle.

    The workers are threads of our own on one queue, not a ``concurrent.futures`` pool: no
    Future per job (a lock and a condition made and signalled for a result nobody reads), and
    a worker that has handed its result to the loop goes straight back to the queue, letting go
    of the interpreter lock the loop is waking up to take.  As in the pool, a worker is started
    only when every other one is busy: one client's deliveries keep going to the same warm
    thread."""
    _jobs.put((fn, args))
    try:
        _idle.pop()  # an idle worker will take it
    except IndexError:
        with _started:
            if len(_workers) < WORKERS:
                if not _workers:
                    if sys.getswitchinterval() > SWITCH_INTERVAL:
                        sys.setswitchinterval(SWITCH_INTERVAL)
                    atexit.register(_stop_workers)
                worker = threading.Thread(target=_worker, name=f"mailtrace-store_{len(_workers)}", daemon=True)
                worker.start()
                _workers.append(worker)


def _worker() -> None:
    """(A store worker's thread.)"""
    while True:
        item = _jobs.get()
        if item is None:
            return
        fn, args = item
        try:
            fn(*args)
        except RuntimeError:  # the loop was closed meanwhile (the lab stopped): nobody awaits it
            pass
        _idle.append(None)


def _stop_workers(timeout: float = 10.0) -> None:
    """At exit: the jobs already handed over are finished (a delivery is not cut between its
    fsync and its rename), then the workers end."""
    for _ in _workers:
        _jobs.put(None)
    for worker in _workers:
        worker.join(timeout)


async def run_store_job(job: Callable[[], Any]) -> Any:
    """``job()`` in a store worker thread; the event loop serves other sessions meanwhile.

    The worker hands the result straight to the loop (``call_soon_threadsafe``): half the
    CPU of ``run_in_executor``, which chains a second future to the pool's (9 against 18 µs
    a job, measured with uvloop; one job per delivered message); see ``_submit``.

    Group commit: a job with a ``group`` (protocols/smtp/delivery.py ``InMemoryDelivery``)
    goes to a worker at once when no job of its group is there; otherwise it waits with the
    others that come meanwhile, and they all go as one (``run_group``) when the job in the
    worker returns: one hand-over to a thread and back, one uidlist update and one directory
    fsync for all.  The busier the server, the larger the groups; one job per group at a
    time, so a group stuck on a lock (``InMemoryDelivery.group``: its mailboxes) holds up
    only the deliveries to those mailboxes.  Each awaiting session still gets its own job's
    result, once that job's work is done."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    group = getattr(job, "group", None)
    if group is not None:
        _gather(loop, group, job, done)
    else:
        _submit(_work, loop, job, done)
    return await done


def _work(loop: asyncio.AbstractEventLoop, job: Callable[[], Any], done: asyncio.Future) -> None:
    """(In a worker thread.)"""
    try:
        result = job()
    except BaseException as exc:  # handed to the awaiting session, as run_in_executor does
        loop.call_soon_threadsafe(_settle, done, None, exc)
    else:
        loop.call_soon_threadsafe(_settle, done, result, None)


#: The groups with a job in a worker, on each loop: group -> the [(job, future)] waiting for it
#: to return (touched only by the loop's thread; a loop closed meanwhile is forgotten).
_busy: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, list]] = weakref.WeakKeyDictionary()


def _gather(loop: asyncio.AbstractEventLoop, group: Any, job: Any, done: asyncio.Future) -> None:
    busy = _busy.setdefault(loop, {})
    waiting = busy.get(group)
    if waiting is None:  # the group is idle: this job goes now
        busy[group] = []
        _submit(_work_group, loop, group, [(job, done)])
    else:
        waiting.append((job, done))


def _returned(loop: asyncio.AbstractEventLoop, group: Any, settled: list) -> None:
    """(On the loop.)  A group's job is done: what waited for it goes to a worker as one job,
    then the sessions of the finished job get their results."""
    busy = _busy[loop]
    waiting = busy.pop(group)
    if waiting:
        busy[group] = []
        _submit(_work_group, loop, group, waiting)
    for done, result, exc in settled:
        _settle(done, result, exc)


def _work_group(loop: asyncio.AbstractEventLoop, group: Any, batch: list) -> None:
    """(In a worker thread.)  The jobs of one group as one; every future settled in one callback."""
    jobs = [job for job, _ in batch]
    try:
        results = type(jobs[0]).run_group(jobs) if len(jobs) > 1 else [jobs[0]()]
        settled = [(done, result, None) for (_, done), result in zip(batch, results)]
    except BaseException as exc:
        settled = [(done, None, exc) for _, done in batch]
    loop.call_soon_threadsafe(_returned, loop, group, settled)


def _settle(done: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if done.cancelled():  # the session was cancelled (the lab stopping) while the job ran
        return
    if exc is None:
        done.set_result(result)
    else:
        done.set_exception(exc)
