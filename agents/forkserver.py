"""`python -m agents.forkserver`: starts the lab's agents as forks of one warm interpreter.

A node's proxy and policy agents are `python -m agents.proxy` and `python -m
agents.policy`.  Started the usual way, each spends about 0.2 s of CPU importing
the same modules before it does anything; a 50-node lab has 100 of them, and
that import was most of its `up`.  This server imports the agents' modules
once (``--preload``) and then, for each request from the lab daemon on its
socket (base/forkwire.py), forks: the child leads a session of its own,
enters the namespaces the daemon sent (network, mount, UTS: the ones `nsenter`
enters), takes the log as its stdout and stderr, shows the command line it
stands for, and runs the module as ``__main__``, as ``python -m`` would.  The
agent is the same program with the same arguments; only its parent differs.

Safety: the daemon sends only namespaces of lab hosts (it checks, as for every
process it starts), and the child refuses the machine's own network namespace
(``--machine-netns-inode``, the daemon's) before it runs anything.  The server
runs in a lab host, is recorded as one of the lab's processes, and ends when
the daemon's end of the socket closes (the daemon stopped or was killed).  It
reaps its children.

The server's own command line carries a filler argument: a child can show a
command line only as long as the one it inherited (agents/proctitle.py).
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import os
import runpy
import select
import socket
import sys
import traceback

from agents.proctitle import set_process_title
from base.forkwire import ForkWireError, SpawnRequest, recv_request, send_answer
from base.setns import setns

REAP_SECONDS = 0.5
TITLE = "svclab-forkserver"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.forkserver", description=__doc__)
    parser.add_argument("--socket-fd", type=int, required=True,
                        help="the inherited SOCK_SEQPACKET socket the daemon sends requests on")
    parser.add_argument("--machine-netns-inode", type=int, required=True,
                        help="the machine's own network namespace, never entered")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="a module its children may run (`python -m MODULE`); repeatable")
    parser.add_argument("room", nargs="?", default="",
                        help="filler: room for the children's command lines")
    args = parser.parse_args(argv)
    set_process_title([TITLE, *(f"--preload={m}" for m in args.preload)])
    for module in args.preload:
        _preload(module)
    sock = socket.socket(fileno=args.socket_fd)
    return serve(sock, frozenset(args.preload), args.machine_netns_inode)


def _preload(module: str) -> None:
    """Import what `python -m module` runs (a package's __main__, or the module) and
    everything it imports, then forget that one module: a child runs it afresh as
    __main__, as `python -m` does (runpy warns of a module already imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise SystemExit(f"no module named {module!r} to preload")
    name = f"{module}.__main__" if spec.submodule_search_locations else module
    importlib.import_module(name)
    del sys.modules[name]


def serve(sock: socket.socket, modules: frozenset[str], machine_netns: int) -> int:
    """Answer requests until the daemon closes its end; reap children meanwhile."""
    while True:
        _reap()
        readable, _, _ = select.select([sock], [], [], REAP_SECONDS)
        if not readable:
            continue
        try:
            request = recv_request(sock)
        except ForkWireError as err:
            send_answer(sock, error=str(err))
            continue
        except OSError:
            return 0
        if request is None:
            return 0
        try:
            pid, start = spawn(sock, request, modules, machine_netns)
        except (OSError, ValueError) as err:
            send_answer(sock, error=str(err))
        else:
            send_answer(sock, pid, start)
        finally:
            for fd in (request.log_fd, *request.namespace_fds.values()):
                os.close(fd)


def spawn(sock: socket.socket, request: SpawnRequest, modules: frozenset[str],
          machine_netns: int) -> tuple[int, int]:
    if request.module not in modules:
        raise ValueError(f"module {request.module!r} is not preloaded; "
                         f"preloaded: {', '.join(sorted(modules))}")
    net = request.namespace_fds.get("net")
    if net is None or os.fstat(net).st_ino == machine_netns:
        raise ValueError("refusing to run in the machine's network namespace")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_child(sock, request, machine_netns)       # never returns
    return pid, _start_time(pid)


def _run_child(sock: socket.socket, request: SpawnRequest, machine_netns: int) -> None:
    code = 1
    try:
        sock.close()
        os.setsid()
        _enter(request.namespace_fds, machine_netns)
        os.chdir("/")
        _take_stdio(request.log_fd)
        argv = [sys.executable, "-m", request.module, *request.args]
        set_process_title(argv)
        sys.argv = [request.module, *request.args]
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:
        code = _exit_code(done.code)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()     # as the interpreter's exit does (logging's flush)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _enter(namespace_fds: dict[str, int], machine_netns: int) -> None:
    """Enter the namespaces, the network one first checked not to be the machine's."""
    net = namespace_fds.get("net")
    if net is None or os.fstat(net).st_ino == machine_netns:
        raise OSError("refusing to run in the machine's network namespace")
    for kind, fd in namespace_fds.items():
        setns(fd, kind)
    if os.stat("/proc/self/ns/net").st_ino != os.fstat(net).st_ino:
        raise OSError("not in the requested network namespace after setns")


def _take_stdio(log_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _start_time(pid: int) -> int:
    """The child's kernel start time; it cannot have been reaped yet (only we reap)."""
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[19])


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    sys.exit(main())
