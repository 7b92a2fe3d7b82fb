"""Read-ahead: a thread pulls the next blocks of a network stream while the caller works.

GET from S3 waits on the network with the GIL released; sealing (ISA-L, AES-NI) is CPU. Run
one after the other, a worker takes their sum; with a bounded read-ahead queue it takes about
the longer of the two, with at most ``depth`` blocks in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


def read_ahead(blocks: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=pump, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
