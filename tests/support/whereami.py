"""`python -m support.whereami ARGS`: prints, as one JSON line, where it runs (a
program for tests/integration/test_forkserver.py to start)."""
import json
import os
import sys

if __name__ == "__main__":
    with open("/proc/self/cmdline", "rb") as cmdline:
        shown = [a.decode() for a in cmdline.read().rstrip(b"\0").split(b"\0")]
    print(json.dumps({"pid": os.getpid(), "netns": os.stat("/proc/self/ns/net").st_ino,
                      "sid": os.getsid(0), "cwd": os.getcwd(), "argv": sys.argv[1:],
                      "cmdline": shown, "stdin": os.readlink("/proc/self/fd/0"),
                      "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))}),
          flush=True)
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
