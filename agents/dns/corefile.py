"""Reading a Corefile: tokens, server blocks and directives, as CoreDNS reads them.

CoreDNS reads its configuration with Caddy's Caddyfile lexer and parser
(github.com/coredns/caddy, caddyfile/lexer.go and parse.go); this module
follows the same rules, as plain functions without I/O:

- a token is a word separated by white space; `"..."` quotes a token (only
  `\\"` is an escape inside it); `#` starts a comment up to the end of the line;
- a server block is one or more keys (`.:53`, `example.org:5353`, a trailing
  `,` continues the list on the next line) followed by `{ ... }`;
- each line inside is a directive with its arguments; a `{` at the end of the
  line opens the directive's own block, whose lines are properties, which may
  have blocks of their own;
- `{$NAME}` is replaced by the environment variable NAME;
- a directive that is no CoreDNS plugin is refused with Caddy's message
  (`Corefile:3 - Error during parsing: Unknown directive 'x'`).

Snippets `(name) { ... }` and `import` are not emulated: they are refused
with a message saying so.  `fingerprint` is the SHA-512 that the reload
plugin logs (`Running configuration SHA512 = ...`): the JSON of the server
blocks, as CoreDNS's reload plugin hashes it, so a change of comments alone
does not reload, a change of lines does.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# The plugins a CoreDNS 1.12 binary knows (its plugin.cfg): any other
# directive is an "Unknown directive", as CoreDNS says.
COREDNS_DIRECTIVES = frozenset("""
    root metadata geoip cancel tls timeouts multisocket reload nsid bufsize bind debug
    trace ready health pprof prometheus errors log dnstap local dns64 acl any chaos
    loadbalance tsig cache rewrite header dnssec autopath minimal template transfer hosts
    route53 azure clouddns k8s_external kubernetes file auto secondary etcd loop forward
    grpc erratic whoami on sign view
""".split())
_ENV = re.compile(r"\{\$([^}]*)\}")


class CorefileError(ValueError):
    """A Corefile CoreDNS would refuse; the message is CoreDNS's."""


@dataclass(frozen=True)
class Token:
    text: str
    line: int


@dataclass(frozen=True)
class Directive:
    """One line of a server block (or of a directive's block): name, arguments and
    the lines of its own `{ ... }` block, if it has one."""

    name: str
    line: int
    args: tuple[str, ...] = ()
    block: tuple[Directive, ...] | None = None

    def lines(self) -> tuple[Directive, ...]:
        return self.block or ()


@dataclass(frozen=True)
class ServerBlock:
    keys: tuple[str, ...]
    directives: tuple[Directive, ...]
    line: int


def tokenize(text: str) -> list[Token]:
    """Caddy's lexer: words, quoted words, comments, line numbers."""
    tokens: list[Token] = []
    word: list[str] = []
    line, start = 1, 1
    quoted = escaped = comment = False
    text = text.removeprefix("\ufeff")
    for char in text:
        if quoted:
            if not escaped and char == "\\":
                escaped = True
                continue
            if not escaped and char == '"':
                quoted = False
                tokens.append(Token("".join(word), start))
                word = []
                continue
            if char == "\n":
                line += 1
            if escaped and char != '"':
                word.append("\\")
            word.append(char)
            escaped = False
            continue
        if char.isspace():
            if char == "\n":
                line += 1
                comment = False
            if word:                    # a `#` inside a word ends at the word's end
                tokens.append(Token("".join(word), start))
                word, comment = [], False
            continue
        if char == "#":
            comment = True
        if comment:
            continue
        if not word:
            start = line
            if char == '"':
                quoted = True
                continue
        word.append(char)
    if word or quoted:
        tokens.append(Token("".join(word), start))
    return tokens


def expand_env(text: str, env: Mapping[str, str]) -> str:
    return _ENV.sub(lambda m: env.get(m.group(1), ""), text)


class _Parser:
    def __init__(self, tokens: list[Token], filename: str, env: Mapping[str, str],
                 check: bool = True):
        self.tokens, self.filename, self.env, self.check = tokens, filename, env, check
        self.index = 0
        self.raw: list[tuple[list[str], dict[str, list[Token]]]] = []   # for the fingerprint

    def error(self, line: int, message: str) -> CorefileError:
        return CorefileError(f"{self.filename}:{line} - Error during parsing: {message}")

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def server_blocks(self) -> list[ServerBlock]:
        blocks = []
        while self.peek() is not None:
            blocks.append(self.server_block())
        return blocks

    def server_block(self) -> ServerBlock:
        first = self.peek()
        keys: list[str] = []
        expecting = False
        while True:
            token = self.take()
            text = expand_env(token.text, self.env)
            if text == "import":
                raise self.error(token.line, "import is not emulated by svclab's cluster DNS "
                                 "(docs/cluster-dns.md)")
            if text == "{":
                if expecting:
                    raise self.error(token.line, "Expected another address but had '{' - "
                                     "check for extra comma")
                self.index -= 1
                break
            if text:
                expecting = text.endswith(",")
                keys.append(text.rstrip(","))
            following = self.peek()
            if following is None:
                if expecting:
                    raise self.error(token.line, "Unexpected EOF")
                self.raw.append((keys, {}))
                return ServerBlock(tuple(keys), (), first.line)
            if not expecting and following.line != token.line:
                break
        if len(keys) == 1 and keys[0].startswith("(") and keys[0].endswith(")"):
            raise self.error(first.line, "snippets are not emulated by svclab's cluster DNS "
                             "(docs/cluster-dns.md)")
        grouped: dict[str, list[Token]] = {}
        self.raw.append((keys, grouped))
        opened = self.peek() is not None and self.peek().text == "{"
        if opened:
            self.take()
        directives = []
        while (token := self.peek()) is not None and token.text != "}":
            directives.append(self.directive(grouped))
        if opened:
            if self.peek() is None:
                last = self.tokens[-1].line if self.tokens else 1
                raise CorefileError(f"{self.filename}:{last} - Syntax error: Unexpected token "
                                    f"'{self.tokens[-1].text}', expecting '}}'")
            self.take()
        return ServerBlock(tuple(keys), tuple(directives), first.line)

    def directive(self, grouped: dict[str, list[Token]]) -> Directive:
        head = self.take()
        name = expand_env(head.text, self.env)
        if name == "import":
            raise self.error(head.line, "import is not emulated by svclab's cluster DNS "
                             "(docs/cluster-dns.md)")
        if self.check and name not in COREDNS_DIRECTIVES:
            raise self.error(head.line, f"Unknown directive '{name}'")
        collected = grouped.setdefault(name, [])
        collected.append(head)
        directive = self._line(name, head, collected)
        return directive

    def _line(self, name: str, head: Token, collected: list[Token]) -> Directive:
        """The rest of `head`'s line, then its block when the line ends with `{`."""
        args: list[str] = []
        last_line = head.line
        while (token := self.peek()) is not None and token.line == last_line \
                and token.text not in ("{", "}"):
            self.take()
            text = expand_env(token.text, self.env)
            collected.append(Token(text, token.line))
            args.append(text)
        token = self.peek()
        if token is None or token.text != "{" or token.line != last_line:
            return Directive(name, head.line, tuple(args))
        collected.append(self.take())
        lines = []
        while True:
            token = self.peek()
            if token is None:
                raise self.error(head.line, "Unexpected EOF")
            if token.text == "}":
                collected.append(self.take())
                break
            if token.text == "{":
                raise self.error(token.line, "Unexpected '{' at the start of a line")
            inner = self.take()
            collected.append(Token(expand_env(inner.text, self.env), inner.line))
            lines.append(self._line(expand_env(inner.text, self.env), inner, collected))
        return Directive(name, head.line, tuple(args), tuple(lines))

    def fingerprint(self) -> str:
        """SHA-512 of the server blocks' JSON as Go's encoding/json writes CoreDNS's
        []ServerBlock{Keys, Tokens{File, Line, Text}} (map keys sorted, HTML escaped)."""
        document = [{"Keys": keys, "Tokens": {name: [{"File": "", "Line": t.line, "Text": t.text}
                                                    for t in tokens]
                                             for name, tokens in grouped.items()}}
                    for keys, grouped in self.raw]
        text = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                             ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(char, escape)
        return hashlib.sha512(text.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Corefile:
    filename: str
    blocks: tuple[ServerBlock, ...]
    sha512: str


def parse_corefile(text: str, filename: str = "Corefile",
                   env: Mapping[str, str] | None = None, *, check: bool = True) -> Corefile:
    """The server blocks of a Corefile; CorefileError with CoreDNS's message if refused.
    check=False lets unknown directives through (the reload plugin's first look)."""
    parser = _Parser(tokenize(text), filename, os.environ if env is None else env, check)
    blocks = parser.server_blocks()
    blocks = [b for b in blocks if b.keys]
    if not blocks:
        raise CorefileError(f"{filename}: no server block (CoreDNS would serve only its "
                            "default `whoami` configuration, which svclab does not emulate)")
    return Corefile(filename, tuple(blocks), parser.fingerprint())
