"""``.gonets/run.env``: how the CLI finds the system ``gonets run`` started.

``gonets run`` writes its environment there (``export KEY=VALUE`` lines, absolute paths,
shell-quoted: ``source .gonets/run.env`` works in sh, bash and zsh) and removes it when it
stops.  The CLI reads it when neither ``GONETS_REDIS_URL`` nor ``GONETS_CONFIG`` is set,
looking in this order:

1. ``GONETS_RUN_FILE`` if set;
2. ``.gonets/run.env`` in the current directory or any parent;
3. ``.gonets/run.env`` in the project the ``gonets`` command is installed from (``make
   install`` installs it editable), so ``gonets send`` works from any directory.

Variables already set in the environment win over the file's.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from core.errors import ConfigError

RUN_FILE = "run.env"
#: the project the code runs from (an editable install: the checkout ``make run`` runs in)
PROJECT = Path(__file__).resolve().parent.parent


def write_run_file(path: Path, env: dict[str, str]) -> Path:
    """Write ``env`` as ``export`` lines (mode 0600: it holds the demo token)."""
    path = path.resolve()
    body = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# written by `gonets run`; removed when it stops\n" + body)
    os.replace(tmp, path)
    return path


def read_run_file(path: Path) -> dict[str, str]:
    """The variables of a file written by ``write_run_file`` (other lines are skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        key, sep, value = line[len("export "):].partition("=")
        if not sep or not key.isidentifier():
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key] = words[0] if words else ""
    return out


def find_run_file(cwd: Path | None = None, environ: dict[str, str] | None = None
                  ) -> Path | None:
    env = os.environ if environ is None else environ
    explicit = env.get("GONETS_RUN_FILE")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    here = (cwd or Path.cwd()).resolve()
    for d in (here, *here.parents, PROJECT):
        candidate = d / ".gonets" / RUN_FILE
        if candidate.is_file():
            return candidate
    return None


def load_run_environment(environ: dict[str, str] | None = None,
                         cwd: Path | None = None) -> Path | None:
    """Put the run file's variables into ``environ`` (default ``os.environ``) unless the
    environment names a system already. Returns the file read, if any."""
    env = os.environ if environ is None else environ
    if env.get("GONETS_REDIS_URL") or env.get("GONETS_CONFIG"):
        return None
    path = find_run_file(cwd, env)
    if path is None:
        return None
    try:
        values = read_run_file(path)
    except OSError:
        return None
    for k, v in values.items():
        env.setdefault(k, v)
    return path


class NoConfiguration(ConfigError):
    """A command that needs a system was run with none configured and no run file found."""

    def __init__(self) -> None:
        super().__init__(
            "no configuration is loaded: start the local system with 'make run' in the "
            "project directory (this command then finds it through .gonets/run.env), or set "
            "GONETS_CONFIG to a config file and GONETS_REDIS_URL to its Redis")


def require_configuration() -> None:
    """Refuse clearly (instead of "no account routes this number") without a configuration."""
    from core.settings import get_settings

    if not get_settings().accounts and not os.environ.get("GONETS_CONFIG"):
        raise NoConfiguration()
