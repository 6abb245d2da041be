"""The store workers (servers/storejobs.py): jobs run off the event loop, their results and
errors reach the session that awaits them, and a job already handed over is finished even
when its loop or the whole process ends first (a delivery is never cut between its fsync and
its rename)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailtrace.servers.storejobs import run_store_job


def test_a_jobs_result_and_its_error_reach_the_awaiting_session():
    def fails():
        raise OSError(28, "No space left on device")

    async def main():
        here = threading.get_ident()
        ran_in = await run_store_job(threading.get_ident)
        with pytest.raises(OSError) as caught:
            await run_store_job(fails)
        return here, ran_in, caught.value.errno

    here, ran_in, errno = asyncio.run(main())
    assert ran_in != here  # off the loop's thread
    assert errno == 28


def test_a_job_that_ends_after_its_loop_closed_leaves_the_workers_serving():
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        assert release.wait(30)
        return "late"

    async def leave_it():
        task = asyncio.ensure_future(run_store_job(slow))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        task.cancel()  # the session went away (the lab stopping)

    asyncio.run(leave_it())  # its loop is closed now, the job still runs
    release.set()

    async def later():
        return await asyncio.gather(*(run_store_job(lambda k=k: k * k) for k in range(20)))

    assert asyncio.run(later()) == [k * k for k in range(20)]


def test_a_job_handed_over_is_finished_before_the_process_exits(tmp_path: Path):
    done = tmp_path / "done"
    program = f"""
import asyncio, threading, time
from mailtrace.servers.storejobs import run_store_job
started = threading.Event()
def job():
    started.set()
    time.sleep(0.5)  # a slow disk
    open({str(done)!r}, "w").write("renamed")
async def main():
    asyncio.ensure_future(run_store_job(job))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
asyncio.run(main())  # the program ends while the job runs
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert done.read_text() == "renamed"
