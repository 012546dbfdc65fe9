"""Run a probe program inside a lab host, relaying its progress lines as they come.

topo.netns.run_in waits for the whole output; a spread of 10,000 connections
runs for seconds and reports progress on stderr, which a user should see
while it runs.  `run_streaming` starts the program in the host's namespaces
(after the same host-namespace check run_in makes), feeds it stdin, hands
each stderr line starting with `progress ` to a callback, and returns stdout.
The process and its reader threads are owned here and always reaped.
"""
from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from base.errors import CommandError
from topo.netns import HOST_CWD, MNEXEC, ensure_lab_namespace

PROGRESS_PREFIX = "progress "


def run_streaming(pid: int, argv: list[str], *, input: str, timeout: float, where: str,
                  on_progress: Callable[[str], None] | None = None) -> str:
    """Run argv in pid's namespaces; progress lines go to on_progress; return stdout."""
    ensure_lab_namespace(pid)
    full = [MNEXEC, "-a", str(pid), *argv]
    proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=HOST_CWD)
    stdout_parts: list[str] = []
    other_stderr: list[str] = []

    def read_stdout() -> None:
        stdout_parts.append(proc.stdout.read())

    def read_stderr() -> None:
        for line in proc.stderr:
            if line.startswith(PROGRESS_PREFIX):
                if on_progress is not None:
                    on_progress(line[len(PROGRESS_PREFIX):].rstrip("\n"))
            else:
                other_stderr.append(line)

    readers = [threading.Thread(target=read_stdout, daemon=True, name="probe-stdout"),
               threading.Thread(target=read_stderr, daemon=True, name="probe-stderr")]
    for reader in readers:
        reader.start()
    try:
        try:
            proc.stdin.write(input)
            proc.stdin.close()
        except BrokenPipeError:
            pass    # the program exited early; its exit code and stderr tell why
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise CommandError(full, -1, "", f"timed out after {timeout} s", where) from err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    if returncode != 0:
        raise CommandError(argv, returncode, "".join(stdout_parts), "".join(other_stderr), where)
    return "".join(stdout_parts)
