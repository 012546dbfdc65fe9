"""`nft list table` output compared by content: the integration tests check that
a table was rebuilt or repaired exactly, whatever order nft lists it in."""
from __future__ import annotations

import re


def normalised(listing: str) -> list[tuple[str, ...]]:
    """The listing as sorted blocks (chains, sets, maps; rule order kept),
    with every element list sorted."""
    text = re.sub(r"elements = \{([^}]*)\}",
                  lambda m: "elements = {" + ", ".join(sorted(
                      e.strip() for e in m.group(1).split(","))) + "}",
                  listing, flags=re.S)
    blocks: list[tuple[str, ...]] = []
    current: list[str] = []
    for line in text.splitlines():
        if re.match(r"^\t(chain|set|map) ", line):
            current = [line.strip()]
        elif line == "\t}" and current:
            blocks.append(tuple(current))
            current = []
        elif current:
            current.append(line.strip())
    return sorted(blocks)
