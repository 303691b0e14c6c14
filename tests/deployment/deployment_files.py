"""The Dockerfile, docker-compose.yml and .dockerignore, read without Docker: what the
deployment tests parse them with, and the names of services and stages they expect."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "SHARDTRAIN_"
SHARED_ENV_SERVICES = ("migrate", "api", "worker")
# Every service issue 8 names; all but the one-shot `migrate` run for good.
REQUIRED_SERVICES = {"api", "worker", "beat", "postgres", "redis", "migrate", "flower"}
ONE_SHOT_SERVICES = {"migrate"}
LONG_RUNNING_SERVICES = REQUIRED_SERVICES - ONE_SHOT_SERVICES
# Services built from this repository's Dockerfile that run for good, and their stage.
SERVICE_STAGES = {"api": "api", "worker": "worker", "beat": "beat", "flower": "flower"}


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and `\\` continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        lines.append((pending + stripped).strip())
        pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = None
            if len(words) >= 3 and words[1].upper() == "AS":
                name = words[2]
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments: JSON exec form or shell form, as a list of words."""
    parsed = yaml.safe_load(args) if args.startswith("[") else None
    return [str(a) for a in parsed] if isinstance(parsed, list) else shlex.split(args)


def dockerfile_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.args("ENV"):
        for word in shlex.split(args):
            if "=" in word:
                key, _, value = word.partition("=")
                env[key] = value
    return env


def stage_chain(stage: Stage, stage_by_name: dict[str, Stage]) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stage]
    while chain[-1].base in stage_by_name:
        chain.append(stage_by_name[chain[-1].base])
        assert len(chain) < 50, "FROM cycle in Dockerfile"
    return chain


def effective(stage: Stage, stage_by_name: dict[str, Stage], keyword: str) -> str | None:
    """The last value of an instruction that a stage sets or inherits."""
    for link in stage_chain(stage, stage_by_name):
        values = link.args(keyword)
        if values:
            return values[-1]
    return None


def dockerfile_healthcheck(stage: Stage, stage_by_name: dict[str, Stage]) -> list[str]:
    check = effective(stage, stage_by_name, "HEALTHCHECK")
    assert check, f"stage {stage.name} has no HEALTHCHECK"
    _, cmd_keyword, cmd = check.partition(" CMD ")
    assert cmd_keyword, f"stage {stage.name}: HEALTHCHECK without CMD: {check}"
    return exec_form(cmd.strip())


# --------------------------------------------------------------------------- compose


def command_words(command: Any) -> list[str]:
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"unexpected command {command!r}"
    return [str(word) for word in command]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """A compose value as compose makes it from the shell's (or .env's) variables:
    `${X}`, `${X:-default}` (also when X is empty), `${X-default}` (only when unset),
    `${X:?message}` (compose refuses to start)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        given = shell.get(name)
        if op == ":-":
            return given if given else arg
        if op == "-":
            return arg if given is None else given
        if op in (":?", "?") and not given:
            raise AssertionError(f"compose refuses to start: {name}: {arg}")
        return given or ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def resolved_env(service: dict[str, Any], shell: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment after compose's interpolation, given the variables."""
    return {k: interpolate(v, shell or {}) for k, v in service_env(service).items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target path -> source for every volume of a service (short or long syntax)."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[volume["target"]] = volume.get("source", "")
    return mounts


def option_value(words: list[str], *names: str) -> str:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    raise AssertionError(f"none of {names} in {words}")


def build_target(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


def healthcheck_words(service: dict[str, Any]) -> list[str]:
    """A compose healthcheck's `test` as the words of the command it runs."""
    words = command_words(service["healthcheck"]["test"])
    if words[:1] == ["CMD-SHELL"]:
        return ["sh", "-c", *words[1:]]
    assert words[:1] == ["CMD"], f"healthcheck test must start with CMD or CMD-SHELL: {words}"
    return words[1:]


def python_snippet(words: list[str]) -> str:
    """The code of a `python -c CODE` command."""
    assert words[:2] == ["python", "-c"] and len(words) == 3, words
    return words[2]


def seconds(duration: Any) -> float:
    """A compose duration (`1m30s`, `180s`, `500ms`) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    return sum(float(n) * units[u] for n, u in parts)


def celery_app_module(words: list[str]) -> str:
    assert words[:1] == ["celery"], words
    return option_value(words, "-A", "--app")


# --------------------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    assert path.is_file(), ".dockerignore is missing"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, "*/" + pattern)
            for p in prefixes
        ):
            result = not negate
    return result
