"""The runtime's output pump stops cleanly while containers are still writing (a lab
stopped right after it came up crashed its daemon: the pump's thread closed its wake
pipe while `stop()` was still writing to it)."""

from __future__ import annotations

import os
import threading

from topo.consoles import OutputPump


def _stop_while_a_container_writes() -> OutputPump:
    pump = OutputPump()
    read_end, write_end = os.pipe()
    reading, writing = threading.Event(), threading.Event()
    pump.add(read_end, lambda data: reading.set(), lambda: None)
    writing.set()

    def chatter() -> None:
        while writing.is_set():
            try:
                os.write(write_end, b"line\n")
            except OSError:       # the pump closed the read end at its end
                return

    writer = threading.Thread(target=chatter)
    writer.start()
    try:
        assert reading.wait(5)              # the pump is busy reading
        pump.stop()
    finally:
        writing.clear()
        writer.join(5)
        os.close(write_end)
    return pump


def test_stop_while_output_keeps_arriving_never_fails():
    for _ in range(400):
        pump = _stop_while_a_container_writes()
        assert not pump._thread.is_alive()
