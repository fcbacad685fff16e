"""Local parallelism: the per-video tasks in a pool of spawned worker processes; a worker that dies is
replaced and its video tried once more; SIGINT/SIGTERM stop the running videos after their current frame."""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from ..signals import StopFlag
from .task import VideoTask, failed_row, init_worker, one_line, run_task


def run_pool(tasks: list[VideoTask], workers: int, record: Callable[[dict], None], stop: StopFlag) -> None:
    """Run ``tasks`` on ``workers`` processes, passing each row to ``record`` as it arrives."""
    ctx = mp.get_context("spawn")  # the parent may hold threads (ONNX Runtime, FFmpeg): no fork
    event = ctx.Event()
    attempts = {t.input: 0 for t in tasks}
    todo = list(tasks)
    while todo and stop.signum is None:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=init_worker,
                                   initargs=(event, os.getpid()))
        broken: list[VideoTask] = []
        try:
            futures: dict[Future, VideoTask] = {pool.submit(run_task, t): t for t in todo}
            todo = []
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in done:
                    t = futures[f]
                    if f.cancelled():
                        continue
                    try:
                        record(f.result())
                    except BrokenProcessPool:
                        broken.append(t)
                    except Exception as e:  # noqa: BLE001 - e.g. a result that could not be pickled
                        record(failed_row(t, one_line(e)))
                if stop.signum is not None and not event.is_set():
                    event.set()  # running videos stop after their current frame
                    for f in waiting:
                        f.cancel()
        finally:
            if stop.signum is not None:
                event.set()
            pool.shutdown(wait=True, cancel_futures=True)
        for t in broken:
            attempts[t.input] += 1
            if attempts[t.input] >= 2:
                record(failed_row(t, "the worker process died while processing it (twice)"))
            else:
                todo.append(t)
