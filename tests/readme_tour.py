"""The README's tour as steps to run, and a match of what they print against what the
README shows.

- A `console` block is commands, each after `$ ` (continued over the lines bash needs
  to parse it, here-documents included), each followed by the lines it printed.
- A `python` block is a program; the `text` block right after it is what it printed.
- `sh` blocks (`make run`, the admin commands) are not part of the tour.

What is shown is matched loosely where runs differ and strictly elsewhere: ids, numbers
and sparkline bars match any ids (of the same kind), numbers and bars; box-drawing
rules and spaces match any width; `…` in a line matches any text; a line that is only
`…` (or a table row of `…` cells) matches any lines. Every other word must be there,
in order."""

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
ID = re.compile(r"\b(ds|job|mdl|evt|bp)_(?:[0-9a-f]{24}|…)")
NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
BARS = re.compile(r"[▁▂▃▄▅▆▇█]+")
RULES = re.compile(r"([─━═])\1*")
SPACES = re.compile(r"\s+")
ONLY_ELLIPSIS = re.compile(r"^[│┃|\s]*…[│┃|\s]*$")
MARK = "@@readme-tour"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # "console" or "python"
    line: int  # where it starts in the README, for messages
    steps: list[Step]


def _fenced(text: str) -> list[tuple[str, int, list[str]]]:
    blocks: list[tuple[str, int, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append((opened.group(1), start, body))
        i += 1
    return blocks


def _complete(command: str) -> bool:
    """Whether bash can parse the command as it stands (a quote or `\\` may continue it)."""
    if command.endswith("\\"):
        return False
    checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    return checked.returncode == 0


def console_steps(body: list[str]) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(body):
        line = body[i]
        if not line.startswith("$ "):
            if not steps:
                raise ValueError(f"output before any command: {line!r}")
            steps[-1].expected.append(line)
            i += 1
            continue
        command = [line[2:]]
        i += 1
        heredoc = HEREDOC.search(line)
        if heredoc is not None:
            while i < len(body) and body[i] != heredoc.group(1):
                command.append(body[i])
                i += 1
            command.append(body[i])
            i += 1
        else:
            while not _complete("\n".join(command)) and i < len(body):
                command.append(body[i])
                i += 1
        steps.append(Step("\n".join(command)))
    return steps


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    fenced = _fenced(text)
    for n, (kind, line, body) in enumerate(fenced):
        if kind == "console":
            blocks.append(Block("console", line, console_steps(body)))
        elif kind == "python":
            shown = fenced[n + 1] if n + 1 < len(fenced) else None
            if shown is None or shown[0] != "text":
                raise ValueError(f"README line {line}: a python block needs a text block after it")
            blocks.append(Block("python", line, [Step("\n".join(body), shown[2])]))
    return blocks


def normalize(line: str) -> str:
    line = ID.sub("\\1_\x00id", line)
    line = BARS.sub("\x00bars", line)
    line = NUMBER.sub("\x00n", line)
    line = RULES.sub(r"\1", line)
    return SPACES.sub(" ", line).strip()


def _pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if not line.strip():
            continue
        if ONLY_ELLIPSIS.match(line):
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = [re.escape(piece) for piece in normalize(line).split("…")]
        parts.append(r"[^\n]*".join(pieces) + r"\n")
    return re.compile("".join(parts))


def matches(expected: list[str], printed: str) -> bool:
    lines = [normalize(line) for line in printed.split("\n")]
    text = "".join(f"{line}\n" for line in lines if line)
    return _pattern(expected).fullmatch(text) is not None


@dataclass
class Ran:
    step: Step
    printed: str
    returncode: int


def run_console(block: Block, cwd: Path, env: dict[str, str], timeout: float) -> list[Ran]:
    """The block's commands in one bash, in order (variables carry from one to the
    next), each with stderr on stdout as a terminal shows them."""
    script = []
    for n, step in enumerate(block.steps):
        script.append(f"printf '\\n{MARK} {n}\\n'")
        script.append(f"{{ {step.command}\n}} 2>&1")
        script.append(f"printf '\\n{MARK} rc %d\\n' $?")
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    chunks = re.split(rf"\n{MARK} (\d+)\n", "\n" + done.stdout)
    ran = []
    for n, step in enumerate(block.steps):
        at = chunks.index(str(n)) if str(n) in chunks else None
        if at is None:
            ran.append(Ran(step, done.stdout + done.stderr, -1))
            continue
        body, _, rc = chunks[at + 1].rpartition(f"\n{MARK} rc ")
        ran.append(Ran(step, body, int(rc.split()[0])))
    return ran


def run_python(block: Block, cwd: Path, env: dict[str, str], timeout: float) -> Ran:
    program = cwd / f"readme_block_{block.line}.py"
    program.write_text(block.steps[0].command)
    done = subprocess.run(
        [os.path.join(env["VIRTUAL_ENV"], "bin", "python"), program.name],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Ran(block.steps[0], done.stdout + done.stderr, done.returncode)
