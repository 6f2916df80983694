"""Run `medmnist-lab ARGS...` in this process and SIGKILL it at a chosen moment (fault injection).

    python fault_driver.py FAULT ARGS...

FAULT is one of (N counts from 1 within this process):
    none                  no fault
    step:N                during the N-th optimizer step (mid-epoch; N in epoch 0: before any checkpoint)
    history:N             right after the N-th history line is appended, before that epoch's checkpoints
    hang:N                no kill: sleep for good after the N-th epoch, holding the run folder (for lock tests)
    save-mid:N            during the N-th checkpoint write: its temp file half written
    save-before-replace:N the N-th checkpoint's temp file complete, not yet renamed
    replace-after:N       right after the N-th checkpoint replaced the old one (best.pt before last.pt)
    finish                after the last epoch, before summary.json is written
    timer:SECONDS         at a wall-clock moment
The kill is a real SIGKILL of this process: no Python cleanup, no finally blocks run, as with
`kill -9` or the OOM killer. The product code has no test hooks; the patches live here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(fault: str) -> None:
    kind, _, arg = fault.partition(":")
    if kind == "none":
        return
    if kind == "timer":
        threading.Timer(float(arg), die).start()
        return
    import medmnist_lab.engine.checkpoint as ckpt
    import medmnist_lab.engine.train as train
    from medmnist_lab.engine.runfolder import RunFolder
    from medmnist_lab.engine.summary import RunSummary

    n = int(arg) if arg else 0
    count = {"calls": 0}

    def hit() -> bool:
        count["calls"] += 1
        return count["calls"] == n

    if kind == "hang":
        real_fit = train.fit

        def fit(*a, **kw):
            def stop(epoch, record):
                if epoch + 1 == n:
                    print("hanging", flush=True)
                    while True:
                        time.sleep(60)

            return real_fit(*a, **{**kw, "on_epoch_end": stop})

        train.fit = fit
        import medmnist_lab.engine as engine

        engine.fit = fit
    elif kind == "step":
        real_loss = train.task_loss

        def task_loss(*a, **kw):
            if hit():
                die()
            return real_loss(*a, **kw)

        train.task_loss = task_loss
    elif kind == "history":
        real_append = RunFolder.append_history

        def append_history(self, record):
            real_append(self, record)
            if hit():
                die()

        RunFolder.append_history = append_history
    elif kind in ("save-mid", "save-before-replace", "replace-after"):
        real_atomic = ckpt.atomic_path

        @contextlib.contextmanager
        def atomic_path(path) -> Iterator[Path]:
            now = hit()
            if kind == "replace-after":
                with real_atomic(path) as tmp:
                    yield tmp
                if now:
                    die()
                return
            with real_atomic(path) as tmp:
                yield tmp
                if now:  # the body has written the whole temp file; os.replace has not run
                    if kind == "save-mid":
                        os.truncate(tmp, tmp.stat().st_size // 2)
                    die()

        ckpt.atomic_path = atomic_path
    elif kind == "finish":

        def write(self, path):
            die()

        RunSummary.write = write
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from medmnist_lab.cli.main import main

    sys.exit(main(sys.argv[2:]))
