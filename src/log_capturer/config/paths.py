"""The files and directories the agent writes as it starts, checked before it does.

``log-capturer run`` checks them before it opens its log file or locks the positions
directory (either would otherwise fail with a traceback), and ``log-capturer validate``
reports the same problems. The checks are made as the user running the command.
"""

from __future__ import annotations

import os
from pathlib import Path

from log_capturer.config.schema import Config


def tails_files(config: Config) -> bool:
    """True when the agent follows files (files, containers, pods), so it keeps positions."""
    files = config.files_config
    return bool(files.enabled and files.watch_directories) or (
        config.container_monitor.enabled or config.kubernetes.enabled
    )


def path_problems(config: Config) -> list[str]:
    """``app.log_file`` and ``positions.directory`` problems, one message each."""
    problems = []
    log_file = config.app.log_file
    if log_file:
        why = _writable_file(Path(log_file))
        if why:
            problems.append(
                f"app.log_file: {log_file} {why}; change app.log_file, such as "
                "`log_file: /var/log/log-capturer/agent.log`, or set it to '' (stderr only)"
            )
    positions = config.positions
    if positions.enabled and tails_files(config):
        why = _creatable_directory(Path(positions.directory))
        if why:
            problems.append(
                f"positions.directory: {positions.directory} {why}; change positions.directory, "
                "such as `directory: /var/lib/log-capturer/positions`"
            )
    return problems


def _writable_file(path: Path) -> str:
    """Why ``path`` cannot be opened for appending ('' if it can)."""
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return "" if os.access(path, os.W_OK) else "is not writable"
    parent = path.parent
    if not parent.exists():
        return f"cannot be created: the directory {parent} does not exist"
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    return "" if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created: {parent} is not writable"


def _creatable_directory(path: Path) -> str:
    """Why ``path`` cannot be used, or made with its parents, as a writable directory ('' if it can)."""
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return "" if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be created: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot be created: {ancestor} is not writable"
    return ""
