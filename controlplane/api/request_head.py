"""Reading an HTTP/1.1 request's head without the `email` package.

`BaseHTTPRequestHandler.parse_request` reads headers with `http.client`'s
parser, which builds an `email` message: at a thousand pods that parsing,
and every `headers.get` scanning that message, cost the API server more of
its interpreter than the JSON of the requests.  `LeanRequestHead` replaces
`parse_request` with the same checks and answers (400 for a bad request
line, 505 for HTTP/2, 431 for a long line or too many headers, 100-continue,
the `Connection` header deciding keep-alive) over a plain list of lines.
"""
from __future__ import annotations

MAX_LINE = 65536
MAX_HEADERS = 100


class Headers:
    """A request's headers: `get` ignores case; a repeated header's values are
    joined with ", " (as HTTP allows)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self._by_name: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            seen = self._by_name.get(key)
            self._by_name[key] = value if seen is None else f"{seen}, {value}"

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._by_name.get(name.lower(), default)

    def lowered(self) -> dict[str, str]:
        """Lower-case names to values."""
        return dict(self._by_name)


class HeadTooLarge(ValueError):
    pass


def read_headers(rfile) -> Headers:
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeadTooLarge("Line too long")
        if line in (b"\r\n", b"\n", b""):
            return Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise HeadTooLarge(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and pairs:          # an obsolete folded line
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {text.strip()}")
            continue
        name, sep, value = text.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))


class LeanRequestHead:
    """Mixin for a BaseHTTPRequestHandler: `parse_request` as the standard one."""

    def parse_request(self) -> bool:
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _version_number(version)
            if number is None:
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({version})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(400, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(400, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)
        except HeadTooLarge as err:
            self.send_error(431, "Request header fields too large", str(err))
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if (expect == "100-continue" and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"):
            return self.handle_expect_100()
        return True


def _version_number(version: str) -> tuple[int, int] | None:
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 10 for p in parts):
        return None
    return int(parts[0]), int(parts[1])
