"""Command lines as the emulated images' Go binaries read them.

The images parse their flags with Go's `flag` package (serve_hostname) or
with cobra/pflag (agnhost): `-port=9376`, `--port 9376`, `--port=9376`, a
bare `--tcp` for true and `--tcp=false`.  One lenient parser accepts all of
these, so a manifest copied from a page works whichever style it uses; an
unknown flag or a bad value is an error with Go's wording, as the real
binary would exit on.

Every emulated program is started by the kubelet as
`python -m agents.images.<program> [--image IMAGE] -- ARGV...`, ARGV being
what the image's own binary would get (argv[0] included): `split_launch`
separates the two.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence


class FlagError(ValueError):
    """A command line the image's binary would refuse (Go's message)."""


# image: the pod's image reference ("" when not given); argv: the image binary's
# argv, argv[0] included.  (A namedtuple: dataclasses would cost a pod ~1 MB.)
Launch = namedtuple("Launch", ("image", "argv"))


def split_launch(args: Sequence[str]) -> Launch:
    """`[--image IMAGE] -- ARGV...` -> Launch."""
    args = list(args)
    image = ""
    while args and args[0] != "--":
        option = args.pop(0)
        if option == "--image" and args:
            image = args.pop(0)
        elif option.startswith("--image="):
            image = option.split("=", 1)[1]
        else:
            raise FlagError(f"launcher: unknown option {option!r}")
    if args:
        args.pop(0)
    return Launch(image, tuple(args))


def _truth(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(text)


def parse_flags(args: Sequence[str], spec: dict[str, object]) -> tuple[dict[str, object],
                                                                        list[str]]:
    """(values, positional args) for flags declared in spec (name -> default;
    the default's type is the flag's: bool, int, float or str)."""
    values = dict(spec)
    positional: list[str] = []
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg == "--":
            positional += items
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name not in spec:
            raise FlagError(f"unknown flag: {arg.split('=', 1)[0]}")
        kind = type(spec[name])
        if kind is bool and not has_value:
            values[name] = True
            continue
        if not has_value:
            if not items:
                raise FlagError(f"flag needs an argument: {arg}")
            value = items.pop(0)
        try:
            values[name] = _truth(value) if kind is bool else kind(value)
        except ValueError as err:
            raise FlagError(f'invalid argument "{value}" for "--{name}" flag: '
                            f"parse error") from err
    return values, positional
