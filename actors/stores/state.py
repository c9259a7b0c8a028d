"""One instance's state directory: private files, and a lock so no two instances share it.

The directory holds what makes an instance behave as it does beyond its config file: the
audit database, the router's journal and its acknowledgements, budget overrides, the
idempotency store and the HMAC key. Everything in it is private (directory 0700, files 0600:
the audit trail holds prompts and answers), and the router actor holds an exclusive
`fcntl.flock` on `lock` for as long as its process lives. The OS drops the lock when that
process dies, however it dies, so a restarted router takes it over at once while a second
instance (another `llm-router serve`, a notebook's embedded Ray) is refused, saying which
process holds it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

from actors.config import ConfigError

log = logging.getLogger(__name__)
LOCK_FILE = "lock"
DIR_MODE, FILE_MODE = 0o700, 0o600


class StateDirInUse(ConfigError):
    """Another live instance holds this state directory (a configuration problem: give
    each instance its own; the command line prints it like any other)."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) 0700, or tighten it to 0700 when it is ours to tighten.

    An existing directory is tightened only when this user owns it and it is not a shared
    place (sticky like /tmp, or the home directory itself); otherwise a warning names it.
    """
    p = Path(path)
    if not p.exists():
        p.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        os.chmod(p, DIR_MODE)  # mkdir's mode is masked by the umask
        return p
    st = p.stat()
    if stat.S_IMODE(st.st_mode) & 0o077:
        shared = bool(st.st_mode & stat.S_ISVTX) or p.resolve() == Path.home().resolve()
        if st.st_uid == os.getuid() and not shared:
            os.chmod(p, DIR_MODE)
        else:
            log.warning("%s is readable by other users and not ours to tighten; keep the "
                        "state directory (and tracker.db_path) in a private directory", p)
    return p


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create `path` empty 0600 if missing, else tighten it to 0600."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return p


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Replace a file atomically with `text`, 0600 from the first byte."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, p)


class StateLock:
    """An exclusive lock on a state directory, held while this object (and process) lives."""

    def __init__(self, directory: str | os.PathLike[str], *, wait_s: float = 10.0,
                 what: str = "router", owner: str = "",
                 predecessor_wait_s: float = 300.0) -> None:
        """`owner` names what holds the lock across restarts (the router's Ray actor id):
        a holder with the same owner is this actor's previous process, still dying, and is
        waited for up to `predecessor_wait_s` — a restart must not turn into a refusal."""
        self.directory = private_dir(directory)
        self.path = self.directory / LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                mine = bool(owner) and self.holder().get("owner") == owner
                if time.monotonic() - started >= (predecessor_wait_s if mine else wait_s):
                    holder = self.holder()
                    os.close(self._fd)
                    raise StateDirInUse(
                        f"state directory {self.directory} is in use by another llm-router "
                        f"instance ({_describe(holder)}); two instances never share one. Give "
                        "this one its own: `state_dir:` in the config, $LLM_ROUTER_STATE_DIR, "
                        "or a tracker.db_path in another directory") from None
                time.sleep(0.1)
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                     "owner": owner, "since": time.time()}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(self.info).encode(), 0)

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"{holder.get('what', 'process')} pid {holder.get('pid')} on {holder.get('host')}, " \
           f"since {since}"
