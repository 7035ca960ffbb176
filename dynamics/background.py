"""One piece of recording work at a time on a background thread (the trainer's and `dynamics.record`'s overlap).

`Background.submit(fn, *args)` waits for the previous piece, then runs fn(*args) on the thread and returns at
once; `wait()` blocks until it is done and raises its error; `close()` waits and stops the thread. The thread
computes with the caller's torch thread count, set again for every piece: a thread started after
torch.set_num_threads(k) reports k but may run GEMMs with MKL's default count, and so round differently from
the caller (the tests compare both ways bit for bit).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import torch

__all__ = ["Background"]


class Background:
    def __init__(self, name: str):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(self._run, torch.get_num_threads(), fn, args)

    @staticmethod
    def _run(threads: int, fn: Callable[..., Any], args: tuple) -> None:
        torch.set_num_threads(threads)
        fn(*args)

    def wait(self) -> None:
        fut, self._pending = self._pending, None
        if fut is not None:
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()
