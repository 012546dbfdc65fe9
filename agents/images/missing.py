"""What a container runs when its program is one the lab cannot run.

    python -m agents.images.missing --program nslookup [--package bind9-dnsutils]

In Kubernetes a container whose program is not in its image fails to start
(`exec: "x": executable file not found in $PATH`, exit 128) and the pod backs
off.  svclab keeps that outcome, and says why: the program is in the image
but not on this machine (with the Debian package that has it), or in
neither.  The kubelet also records the reason as a Warning event.
"""
from __future__ import annotations

import argparse
import sys

EXIT_CODE = 128              # what a container runtime reports for a failed exec


def message(program: str, package: str) -> str:
    first = (f'exec: "{program}": executable file not found in $PATH: svclab runs the '
             "image's programs from this machine")
    if package:
        return (f"{first}; {program!r} comes from the Debian package {package!r}, which is "
                "not installed here")
    return f"{first}, and {program!r} is not one it has"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.images.missing")
    parser.add_argument("--program", required=True)
    parser.add_argument("--package", default="")
    args = parser.parse_args(argv)
    print(message(args.program, args.package), file=sys.stderr, flush=True)
    return EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
