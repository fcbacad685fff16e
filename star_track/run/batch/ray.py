"""Ray: the per-video tasks as Ray tasks on a local runtime or a cluster (Ray places, retries and applies
back-pressure), with the cluster's address checked first so that an unreachable one is one error line."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from ...errors import ClusterError, MissingDependency
from ..signals import StopFlag
from .task import VideoTask, failed_row, one_line, run_task

CLUSTER_HINT = 'pip install "star-track[cluster]"'
"""The install command for the ``cluster`` extra (Ray)."""


def ray_task(task: VideoTask) -> dict[str, Any]:
    """:func:`run_task` as Ray runs it (the module-level Tracker cache lives on in Ray's reused workers)."""
    return run_task(task)


def connect_ray(address: str, num_cpus: int, timeout: float) -> bool:
    """Connect to the Ray cluster ``address`` names, or start a local runtime with ``num_cpus`` CPUs
    (``"local"``); True when this call did (and the caller shuts it down).

    Only errors of Ray's own loggers reach the terminal: not its start-up notes, not its token-authentication
    warning, not the workers' output."""
    try:
        import ray
    except ImportError:
        raise MissingDependency(f"--ray needs ray: {CLUSTER_HINT}") from None
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    else:
        check_ray_address(address, timeout)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray's errors, one line naming what was asked for
            raise ClusterError(f"ray {address}: cannot connect ({one_line(e).splitlines()[0]})") from None
    return True


_GCS_CHECK = ("import sys, ray._raylet as r; "
              "r.GcsClient(address=sys.argv[1]).get_all_node_info(timeout=float(sys.argv[2]))")


def check_ray_address(address: str, timeout: float = 30.0) -> None:
    """Raise :class:`~star_track.errors.ClusterError`, naming ``address`` as given, unless a Ray cluster
    answers there within ``timeout`` seconds.

    ``ray.init`` alone waits for many minutes when nothing answers, cannot be interrupted, then ends the whole
    process from native code naming the address it resolved (``127.0.0.1`` becomes the host's IP). Here: a TCP
    connect (refused at once, or ``timeout``), then, for a cluster (GCS) address, one GCS request in a child
    process that is killed at the deadline (or on Ctrl-C) - a port that accepts connections is not yet Ray."""
    deadline = time.monotonic() + timeout
    client = address.startswith("ray://")
    try:
        if client:
            target = address[len("ray://"):]
        else:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die(address)  # "auto": RAY_ADDRESS or the running one
        host, _, port = target.rpartition(":")
        host, port_number = host.strip("[]"), int(port.split("/")[0])
    except Exception as e:  # noqa: BLE001 - a bad address, or "auto" with no cluster
        raise ClusterError(f"ray {address}: {one_line(e).splitlines()[0]}") from None
    where = address if target == address else f"{address} ({target})"
    try:
        with socket.create_connection((host, port_number), timeout=timeout):
            pass
    except socket.timeout:
        raise ClusterError(f"ray {where}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ClusterError(f"ray {where}: cannot connect ({e.strerror or e})") from None
    if client:
        return
    left = max(1.0, deadline - time.monotonic())
    try:
        r = subprocess.run([sys.executable, "-c", _GCS_CHECK, target, str(left)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"ray {where}: the port is open but no Ray cluster answered within {timeout:g} s") \
            from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ClusterError(f"ray {where}: not a Ray cluster, or it failed to answer ({last})")


def run_ray(tasks: list[VideoTask], max_retries: int, num_gpus: float | None, record: Callable[[dict], None],
            stop: StopFlag) -> None:
    """Run ``tasks`` as Ray tasks, passing each row to ``record``; a stop signal cancels the waiting ones."""
    import ray

    threads = tasks[0].tracker_kwargs.get("threads") or 1
    engine = str(tasks[0].tracker_kwargs.get("engine", "auto"))
    gpus = num_gpus if num_gpus is not None else (1.0 if engine in ("tensorrt", "torch") else 0.0)
    remote = ray.remote(ray_task).options(num_cpus=threads, num_gpus=gpus, max_retries=max_retries)
    refs = {remote.remote(t): t for t in tasks}
    waiting = list(refs)
    cancelled = False
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1, timeout=0.2)
        for ref in done:
            try:
                record(ray.get(ref))
            except Exception as e:  # noqa: BLE001 - a task that died max_retries + 1 times, or cancelled
                if not cancelled:
                    record(failed_row(refs[ref], f"ray: {one_line(e).splitlines()[0]}"))
        if stop.signum is not None and not cancelled:
            cancelled = True
            for ref in waiting:
                ray.cancel(ref)
            waiting = []
