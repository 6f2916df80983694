"""Where cells run: `local` (a process per cell on this machine) or `ray` (a Ray task per cell).

A backend takes CellTasks and hands back (hash, outcome) pairs as they finish; it never sees the
results store. Both start every cell in a fresh process, so no cell inherits another's memory or
state. (A worker that dies breaks the local pool: the cells running beside it fail too, are
retried from their checkpoints, and are charged an attempt.)
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.outputs import pid_alive
from medmnist_lab.registry import Registry
from medmnist_lab.studies.worker import CellTask, run_cell


class Backend(Protocol):
    slots: int  # cells that may run at once

    def submit(self, task: CellTask) -> None: ...
    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]: ...
    def cancel_all(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendOptions:
    workers: int | None = None  # None: local 1; ray: the cluster's CPU count / cpus per cell
    address: str | None = None  # ray only: auto or HOST:PORT; None starts a local Ray
    threads: int | None = None  # torch threads per cell; None: cores / workers


BACKENDS: Registry[type] = Registry("backend")


def _failed(h: str, exc: BaseException) -> dict[str, Any]:
    return {"hash": h, "status": "failed", "error": f"worker process died: {type(exc).__name__}: {exc}"}


@BACKENDS.register("local")
class LocalBackend:
    """A pool of `workers` processes, each used for one cell only (max_tasks_per_child=1).

    The forkserver start method imports the engine once in the server and forks each worker from
    it: a fresh process per cell at fork cost (no re-import of torch), without forking the
    coordinator's threads.
    """

    def __init__(self, options: BackendOptions) -> None:
        self.slots = options.workers or 1
        if self.slots <= 0:
            raise MedMNISTLabError(f"--workers must be a positive integer, got {self.slots}")
        cores = os.cpu_count() or 1
        self.threads = options.threads or max(1, cores // self.slots)
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["medmnist_lab.studies.preload"])
        kw: dict[str, Any] = {
            "max_workers": self.slots,
            "mp_context": ctx,
            "initializer": _exit_with,
            "initargs": (os.getpid(),),
        }
        if sys.version_info >= (3, 11):
            kw["max_tasks_per_child"] = 1
        self._pool_kw = kw
        self._pool = cf.ProcessPoolExecutor(**kw)
        self._futures: dict[cf.Future, str] = {}

    def submit(self, task: CellTask) -> None:
        task = task if task.threads else dataclasses.replace(task, threads=self.threads)
        try:
            fut = self._pool.submit(run_cell, task)
        except cf.BrokenExecutor:  # BrokenProcessPool
            # A worker died (OOM killer, segfault, kill): the pool failed every cell it ran (each is
            # reported, and retried from its checkpoint) and takes no more work. A new one does.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = cf.ProcessPoolExecutor(**self._pool_kw)
            fut = self._pool.submit(run_cell, task)
        self._futures[fut] = task.hash

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            h = self._futures.pop(fut)
            try:
                out.append((h, fut.result()))
            except BaseException as exc:  # the process died (OOM killer, segfault, kill)
                out.append((h, _failed(h, exc)))
        return out

    def cancel_all(self) -> None:
        for fut in self._futures:
            fut.cancel()
        # Workers got the terminal's SIGINT too; make sure none trains on.
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _exit_with(coordinator: int) -> None:
    """Pool initializer: SIGKILL this worker as soon as the coordinator exits (kill -9 included).

    The worker's parent-death signal cannot do it: a forkserver worker's parent is the forkserver,
    which exits only once every worker has (each holds its "alive" pipe), so after a kill -9 the
    cells trained on to their end while a rerun could start the same cells again."""
    try:
        fd = os.pidfd_open(coordinator)  # Linux >= 5.3: readable once the process has exited
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (AttributeError, OSError):  # elsewhere: poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while pid_alive(coordinator):
                time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-coordinator", daemon=True).start()


@BACKENDS.register("ray")
class RayBackend:
    """Each cell a Ray task (num_gpus=1 when the cluster has GPUs, else `threads` CPUs).

    Workers write run folders and logs under the study folder: on a multi-node cluster it must be
    on a filesystem every node mounts at the same path (see docs/studies.md).
    """

    def __init__(self, options: BackendOptions) -> None:
        try:
            import ray
        except ImportError:
            raise MedMNISTLabError(
                "--backend ray needs Ray: pip install 'medmnist-lab[ray]' (the local backend needs nothing)"
            ) from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if options.address:
                kw["address"] = options.address
            else:  # a private single-node Ray on the loopback interface
                kw["_node_ip_address"] = "127.0.0.1"
                # Ray starts its workers at nice 15 (RAY_worker_niceness): beside any nice-0 load on
                # the machine a cell then gets a few per cent of a core (a 9 s cell took over 150 s
                # next to one busy process). The local backend's workers run at nice 0: so do these.
                kw["_system_config"] = {"worker_niceness": 0}
                if options.workers:
                    kw["num_cpus"] = options.workers * (options.threads or 1)
            try:
                with contextlib.nullcontext() if options.address else _loopback_ray():
                    ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = options.address or "a local instance"
                raise MedMNISTLabError(f"cannot start or join Ray at {where}: {exc}") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.threads = options.threads or 1
        cpus = int(resources.get("CPU", 1))
        self.slots = options.workers or max(1, self.gpus or cpus // self.threads)
        # max_calls=1: a fresh worker process per cell, as with the local backend.
        opts: dict[str, Any] = {"max_retries": 0, "max_calls": 1}
        opts.update({"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": self.threads})
        self._remote = ray.remote(**opts)(_ray_cell)
        self._refs: dict[Any, str] = {}

    def submit(self, task: CellTask) -> None:
        task = task if task.threads else dataclasses.replace(task, threads=self.threads)
        self._refs[self._remote.remote(task)] = task.hash

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            h = self._refs.pop(ref)
            try:
                out.append((h, self._ray.get(ref)))
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                out.append((h, _failed(h, exc)))
        return out

    def cancel_all(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


@contextlib.contextmanager
def _loopback_ray() -> Iterator[None]:
    """Keep a private Ray on 127.0.0.1. Ray replaces a node IP of 127.0.0.1 by the machine's
    routable address (and its services then listen on every interface) unless it thinks it runs on
    a laptop, where clusters are off: say so (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) while it
    starts, to this process (the constant, read at import) and to the processes Ray starts (the
    environment). Both are restored afterwards, so joining a cluster later in this process works."""
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray without this internal module: start it as it will
        yield
        return
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    saved_env, saved_flag = os.environ.get(var), getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    os.environ[var] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = saved_env


def _ray_cell(task: CellTask) -> dict[str, Any]:
    return run_cell(task)


def create_backend(name: str, options: BackendOptions) -> Backend:
    return BACKENDS.get(name)(options)
