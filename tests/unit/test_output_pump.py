"""The runtime's output pump stops cleanly while containers are still writing (a lab
stopped right after it came up crashed its daemon: the pump's thread closed its wake
pipe while `stop()` was still writing to it)."""

from __future__ import annotations

import os
import threading

import pytest

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


def _pipe_into(pump: OutputPump) -> tuple[int, list[bytes], threading.Event]:
    """A pipe whose read end the pump serves: (write end, what arrived, ended)."""
    read_end, write_end = os.pipe()
    got: list[bytes] = []
    ended = threading.Event()
    pump.add(read_end, got.append, ended.set)
    return write_end, got, ended


def test_a_reader_that_fails_ends_its_own_output_and_no_one_elses():
    """One container's log that cannot be written (a handler raising) ends that
    output; the thread keeps serving every other container's."""
    pump = OutputPump()
    broken_read, broken_write = os.pipe()
    broken_ended = threading.Event()

    def refuse(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    pump.add(broken_read, refuse, broken_ended.set)
    write_end, got, ended = _pipe_into(pump)
    try:
        os.write(broken_write, b"lost\n")
        assert broken_ended.wait(5)
        os.write(write_end, b"kept\n")
        os.close(write_end)
        assert ended.wait(5)
        assert b"".join(got) == b"kept\n"
        assert pump._thread.is_alive()
    finally:
        os.close(broken_write)
        pump.stop()
    assert not pump._thread.is_alive()


def test_a_number_reused_behind_its_back_ends_the_old_output_and_serves_the_new():
    pump = OutputPump()
    old_read, old_write = os.pipe()
    old_ended = threading.Event()
    pump.add(old_read, lambda data: None, old_ended.set)
    os.close(old_read)                  # someone else closes it; the number comes back
    os.close(old_write)
    new_read, write_end = os.pipe()
    assert new_read == old_read
    got: list[bytes] = []
    ended = threading.Event()
    pump.add(new_read, got.append, ended.set)
    try:
        assert old_ended.wait(5)
        os.write(write_end, b"new\n")
        os.close(write_end)
        assert ended.wait(5) and b"".join(got) == b"new\n"
    finally:
        pump.stop()


def test_stop_after_the_thread_ended_writes_to_no_descriptor():
    """The thread closes its wake pipe as it ends; the number may be someone
    else's by the time stop() is called (again)."""
    pump = OutputPump()
    pump.stop()
    spare_read, spare_write = os.pipe()
    os.dup2(spare_write, pump._wake_w)     # the old number, now another pipe's
    try:
        pump._stop_requested = False      # as if stop() came for the first time
        pump.stop()
        os.set_blocking(spare_read, False)
        try:
            leaked = os.read(spare_read, 16)
        except BlockingIOError:
            leaked = b""
        assert leaked == b""
    finally:
        os.close(pump._wake_w)
        os.close(spare_read)
        os.close(spare_write)


def test_a_wake_pipe_closed_behind_its_back_is_left_to_its_new_owner():
    """Code elsewhere closing a number it no longer owned closed the pump's wake
    pipe (the daemon then died at `down` with EBADF); whatever takes the number
    next must be neither written to nor closed by the pump."""
    pump = OutputPump()
    stranger_read, stranger_write = os.pipe()
    os.dup2(stranger_write, pump._wake_w)         # closed behind its back, taken by another
    try:
        write_end, got, ended = _pipe_into(pump)   # still served, on the poll interval
        os.write(write_end, b"late\n")
        os.close(write_end)
        assert ended.wait(5) and b"".join(got) == b"late\n"
        pump.stop()
        assert not pump._thread.is_alive()
        os.set_blocking(stranger_read, False)
        with pytest.raises(BlockingIOError):
            os.read(stranger_read, 16)            # nothing was written to it
        os.fstat(pump._wake_w)                     # and it is still open
    finally:
        os.close(pump._wake_w)
        os.close(stranger_read)
        os.close(stranger_write)


def test_its_own_descriptor_offered_as_an_output_is_refused():
    pump = OutputPump()
    ended = threading.Event()
    pump.add(pump._wake_w, lambda data: None, ended.set)
    try:
        assert ended.wait(5)
        os.fstat(pump._wake_w)                     # not closed as an ended output
        write_end, got, done = _pipe_into(pump)
        os.write(write_end, b"ok\n")
        os.close(write_end)
        assert done.wait(5) and b"".join(got) == b"ok\n"
    finally:
        pump.stop()
    assert not pump._thread.is_alive()

