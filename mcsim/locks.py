"""One mcsim process at a time per output or checkpoint directory.

Two runs on one ``--out`` (or one checkpoint directory) would overwrite each other's
checkpoints and the shorter one, finishing first, would delete the longer one's. So every
command that writes a report or checkpoints takes an exclusive lock first, and a second
process asking for a held lock is refused in one line (a :class:`ConfigError`, exit status 2)
before it runs anything.

* **How.** ``fcntl.flock(LOCK_EX | LOCK_NB)`` on a small lock file: the report directory's
  beside it (``.NAME.mcsim-lock``: the directory itself is swapped by a rename when the
  report is published, so a lock inside it would move away), the checkpoints' inside their
  directory (``process-I-of-N.lock``: each process of a distributed run writes only its own
  checkpoint file, so each takes only its own lock). The kernel drops a flock when the
  process ends, however it ends (SIGKILL included), so a killed run never leaves a stale
  lock: the next run takes it at once.
* **The lock file.** Holds the holder's pid and command line (for the refusal's message).
  It is mcsim's own file: removed (while still held, then released) when the command ends;
  a killed run leaves it behind, unlocked, and the next run on the directory takes it over
  and removes it. Taking the lock checks that the file it locked is still the one at the
  path (a run that removed it between our open and our lock is not "us holding it").
* **Within one process** the lock is re-entrant: the command line holds it for the whole
  command and the engine asks again for its checkpoints (a second flock of the same file
  in one process would refuse itself).
* **Where locks are unavailable** (a filesystem whose flock fails with ENOLCK, EOPNOTSUPP,
  ENOSYS, as some NFS mounts without a lock daemon and some FUSE filesystems do, or a lock
  file that cannot be created): one warning line on stderr, and the command goes on
  unlocked. Refusing would make mcsim unusable there for every run, while what the lock
  guards against is an operator's mistake, not a wrong number: reports are published by
  atomic renames, checkpoint temporary files are unique per process, a checkpoint is
  resumed only when it is readable and was written by the same run (so the worst a second
  run can do unlocked is to cost the first its progress). The warning says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

#: flock's answers that mean "no locks on this filesystem" (not "someone holds it")
UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS,
                         errno.EINVAL})
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
OUTPUT_SUFFIX = ".mcsim-lock"

#: lock file (absolute) -> [open descriptor (None: unlocked, locks unavailable), holders in
#: this process, the directories made for it]
_held: dict[Path, list] = {}


def output_lock_file(out: str | Path) -> Path:
    """The lock file of report directory ``out``: ``.NAME.mcsim-lock`` beside it."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}{OUTPUT_SUFFIX}"


def checkpoint_lock_file(directory: str | Path, process_index: int = 0,
                         num_processes: int = 1) -> Path:
    """The lock file of one process's checkpoints in ``directory``."""
    return Path(directory) / f"process-{process_index}-of-{num_processes}.lock"


@contextlib.contextmanager
def hold(lock_file: str | Path, *, key: str, value: str, what: str) -> Iterator[None]:
    """Hold the lock ``lock_file`` for the ``with`` block (re-entrant in one process).

    Raises ConfigError naming ``key`` = ``value`` (the flag and what the user gave) when
    another process holds it; ``what`` says what is shared ("report directory"). Where
    locks are unavailable, warns once on stderr and goes on (see the module docstring).
    """
    path = Path(os.path.abspath(lock_file))
    entry = _held.get(path)
    if entry is not None:
        entry[1] += 1
    else:
        made = _missing_parents(path.parent)
        try:
            fd = _acquire(path, key=key, value=value, what=what)
        except BaseException:
            _release(path, None, made)  # refused: leave no directory made for the lock
            raise
        entry = _held[path] = [fd, 1, made]
    try:
        yield
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            del _held[path]
            _release(path, entry[0], entry[2])


def _missing_parents(directory: Path) -> list[Path]:
    """The directories above the lock file that do not exist yet (outermost first): made
    here, and removed again at release when still empty."""
    missing = []
    for d in [directory, *directory.parents]:
        if d.exists():
            break
        missing.append(d)
    return missing[::-1]


def _acquire(path: Path, *, key: str, value: str, what: str) -> int | None:
    """An open descriptor of ``path`` holding its flock; None (after one warning line)
    where locks are unavailable."""
    for _ in range(10):  # another run may remove the file between our open and our lock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL first: a file made here is removed again if it cannot lock
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                created = False
        except FileNotFoundError:
            continue  # removed between the two opens: try again
        except OSError as exc:
            _warn(path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _HELD:
                raise ConfigError(key, value, f"a {what} that no other mcsim process is "
                                  f"using, but {_holder(path)} holds its lock {path} (wait "
                                  f"for it to end, or choose another {key})") from None
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            if exc.errno in UNSUPPORTED:
                _warn(path, exc)
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _describe(fd)
            return fd
        os.close(fd)  # we locked a file another run had just removed: take the new one
    _warn(path, OSError(errno.EAGAIN, "the lock file kept being replaced"))
    return None


def _describe(fd: int) -> None:
    """Write who holds the lock into it (best effort: the lock is the flock, not this)."""
    text = f"pid {os.getpid()}: {' '.join(sys.argv) or 'python'}\n"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(errors="replace"), 0)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    first = text.splitlines()[0] if text else ""
    if len(first) > 120:
        first = first[:117] + "..."
    return f"another mcsim process ({first})" if first else "another mcsim process"


_warned: list[Path] = []


def _warn(path: Path, exc: OSError) -> None:
    """One line, once per process (a command's second lock has the same story)."""
    if _warned:
        return
    _warned.append(path)
    reason = exc.strerror or str(exc)
    print(f"mcsim: warning: cannot lock {path} ({reason}): a second mcsim run on the same "
          "directory would not be refused; run one at a time", file=sys.stderr)


def _release(path: Path, fd: int | None, made: list[Path]) -> None:
    """Remove the lock file while still holding it, then drop the lock, then the empty
    directories :func:`hold` made for it."""
    if fd is not None:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)
    for d in reversed(made):
        try:
            d.rmdir()  # only when empty
        except OSError:
            break


def held(lock_file: str | Path) -> bool:
    """Whether this process holds ``lock_file`` now."""
    return Path(os.path.abspath(lock_file)) in _held
