"""Every ``log-capturer`` command line the README and docs show names a real command and real
options (the docs once told users to run ``log-capturer dlq replay --all``, which did not exist)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer

from log_capturer.cli import app

#: A command line in a doc: from ``log-capturer`` to the end of the code span or line.
COMMAND = re.compile(r"log-capturer((?: +[^`\n|&;#>]+)+)")
#: An option as a user types it (not an arrow of a diagram such as ``--exec-->``).
OPTION = re.compile(r"--[a-z][a-z0-9-]*[a-z0-9]")


def documented_commands(repo_root: Path) -> list[tuple[str, str]]:
    """(file, command line) for every ``log-capturer ...`` in the README and docs/*.md."""
    found: list[tuple[str, str]] = []
    for path in [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]:
        for m in COMMAND.finditer(path.read_text()):
            found.append((path.name, "log-capturer" + m.group(1).rstrip(" .,:)")))
    return found


def problems_of(line: str, root: Any) -> list[str]:
    """What is wrong with a documented command line, for the typer command tree ``root``."""
    try:
        words = shlex.split(line)[1:]
    except ValueError:
        return []
    command = root
    for word in words:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    if hasattr(command, "commands"):
        return []  # a group itself, or prose after the program name
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    named = [w.split("=")[0] for w in words if OPTION.fullmatch(w.split("=")[0])]
    return [f"{line}: {command.name} has no option {w}" for w in named if w not in options]


def test_documented_command_lines_use_real_commands_and_options(repo_root: Path) -> None:
    root = typer.main.get_command(app)
    commands = documented_commands(repo_root)
    assert len(commands) > 20, commands  # the pattern finds them
    problems = [f"{name}: {p}" for name, line in commands for p in problems_of(line, root)]
    assert problems == []


def test_the_check_catches_an_option_that_does_not_exist() -> None:
    root = typer.main.get_command(app)
    assert problems_of("log-capturer dlq replay --all", root) == [
        "log-capturer dlq replay --all: replay has no option --all"
    ]
    assert problems_of("log-capturer dlq replay --reason backpressure", root) == []
