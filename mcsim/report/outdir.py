"""Output directories that mcsim owns: checked before a run, replaced without losing anything.

Every directory mcsim writes (a report, a sweep, a sensitivity study, a comparison) holds a
manifest, ``.mcsim-output.json``, listing the files mcsim wrote there. The rules follow from
one principle: **mcsim never deletes a file it did not write.**

* ``OUT`` does not exist, is empty, or holds exactly the files its manifest lists (an earlier
  report, untouched): the new files are written into a staging directory beside ``OUT`` and
  swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux), so at every instant
  ``OUT`` is the complete old report or the complete new one. Where the exchange is not
  supported, two renames are used, and a staging directory stranded by a kill between them
  is found and put back (or cleaned up) by the next write to ``OUT``.
* ``OUT`` is an mcsim report the user added files to (notes, a config): mcsim replaces only
  its own files, each one atomically, and removes those of its earlier files that the new
  report does not have. The user's files stay.
* ``OUT`` is a non-empty directory mcsim did not write: refused before the run starts, unless
  ``force`` (``--force``), which writes mcsim's files into it as in the previous case.

The checks that can be made before a run (a parent that is a file, a read-only directory,
``OUT`` being the working directory, a manifest mcsim did not write, a mount point) are in
:func:`check_output_dir`, which also makes and renames a staging directory where the write
will, so a bad ``--out`` fails in a second, not after an hour of simulation. A manifest is
trusted only whole and only for paths inside ``OUT``: it is what lets mcsim delete files.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..errors import ConfigError

MANIFEST = ".mcsim-output.json"
MANIFEST_FORMAT = "mcsim.output/1"
#: written first into every staging directory: what :func:`_clean_stranded` may delete
STAGING_MARK = ".mcsim-staging"
_STAGING = ".mcsim-staging-"


#: a manifest lists file names: far below this; a bigger file is not one mcsim wrote
MAX_MANIFEST_BYTES = 16 * 2**20
MANIFEST_FORM = (f'{{"format": "{MANIFEST_FORMAT}", "files": [the relative paths of the '
                 'files mcsim wrote there]}')


def _manifest_files(directory: Path) -> set[str] | None:
    """The files mcsim wrote into ``directory`` (relative paths), or None without a
    readable manifest (:func:`read_manifest`)."""
    return read_manifest(directory)[0]


def read_manifest(directory: Path) -> tuple[set[str] | None, str | None]:
    """``(files, None)`` from a manifest mcsim wrote; ``(None, None)`` where there is no
    manifest; ``(None, what is wrong)`` where the file there is not one.

    Only a regular file of at most :data:`MAX_MANIFEST_BYTES` is read (a FIFO would block,
    a link may point anywhere), and only entries that stay inside ``directory`` count: a
    manifest is what lets mcsim delete files, so one naming ``../x`` or ``/x`` is refused
    whole rather than trusted in part.
    """
    path = directory / MANIFEST
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file"
    if info.st_size > MAX_MANIFEST_BYTES:
        return None, f"{info.st_size:,} bytes, far larger than any manifest"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start})"
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    except RecursionError:
        return None, "JSON nested too deeply"
    if not isinstance(doc, dict):
        return None, f"a JSON {type(doc).__name__}, not an object"
    if doc.get("format") != MANIFEST_FORMAT:
        return None, f"format {doc.get('format', '<missing>')!r}"
    files = doc.get("files")
    if not isinstance(files, list):
        return None, f"files = {type(files).__name__ if files is not None else '<missing>'}"
    for entry in files:
        if not _relative_inside(entry):
            shown = repr(entry) if len(repr(entry)) <= 60 else repr(entry)[:57] + "..."
            return None, f"files holds {shown}, not a relative path inside the directory"
    return set(files), None


def _relative_inside(entry: object) -> bool:
    """A normalised relative path (a trailing ``/``: an empty directory) with no ``..``."""
    if not isinstance(entry, str) or not entry.rstrip("/") or "\0" in entry:
        return False
    rel = PurePosixPath(entry.rstrip("/"))
    return not rel.is_absolute() and ".." not in rel.parts and \
        rel.as_posix() == entry.rstrip("/")


def _all_files(directory: Path) -> set[str]:
    """Every file and symlink under ``directory`` (relative paths, ``/``-separated), and
    every empty directory (with a trailing ``/``)."""
    out = set()
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        for name in files:
            out.add((rel / name).as_posix())
        for name in dirs:
            full = Path(root) / name
            if full.is_symlink():
                out.add((rel / name).as_posix())
            elif not _listing(full):
                out.add((rel / name).as_posix() + "/")
    return out


def _listing(directory: Path) -> list[str]:
    """The names in ``directory``; an unreadable one counts as holding something (so it
    is never taken for empty, nor for one mcsim may remove)."""
    try:
        return os.listdir(directory)
    except OSError:
        return ["<unreadable>"]


def foreign_files(directory: Path) -> list[str]:
    """Entries of an existing ``directory`` that mcsim did not write (sorted); a file named
    like the manifest that is not a readable one counts as foreign too."""
    own = _manifest_files(directory)
    own = set() if own is None else own | {MANIFEST}
    return sorted(f for f in _all_files(directory) if f not in own)


def _is_cwd_or_above(path: Path) -> bool:
    cwd = Path.cwd().resolve()
    target = path.resolve()
    return target == cwd or target in cwd.parents


def check_output_dir(path: str | Path, *, key: str = "out_dir", force: bool = False,
                     probe: bool = True) -> Path:
    """Check before a run that ``path`` can take mcsim's files; returns it as a Path.

    Raises ConfigError (naming ``key``: the Python argument ``out_dir`` unless told, which
    the command line renames to its flag) for: an empty path; a path whose parent is a file;
    a path that exists and is not a directory; a directory (or nearest existing parent)
    that is not writable; a non-empty directory mcsim did not write (or whose manifest is
    not one mcsim wrote), unless ``force``. With ``probe`` (the default) also for what
    only trying finds, by doing now what the write will do (:func:`_probe`): a mount point
    (whose files cannot be swapped in from beside it), a parent where the staging
    directory cannot be made (a read-only file system that ``os.access`` does not see, a
    quota), a rename refused there. ``probe=False`` is for the write itself
    (:func:`output_directory`, which is about to do the same) and for a directory written
    into rather than replaced (checkpoints).
    """
    text = str(path)
    if not text.strip():
        raise ConfigError(key, text, "a directory path (got an empty one)")
    out = Path(path)
    for parent in [out, *out.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "is" if parent == out else f"is inside {parent}, which is"
                raise ConfigError(key, text, f"a directory path, but it {what} a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(key, text, f"a directory path where mcsim may write, but "
                                  f"{parent} is not writable")
            break
    if out.is_dir():
        manifest = out / MANIFEST
        if manifest.is_dir() and not manifest.is_symlink():  # even --force cannot write it
            raise ConfigError(key, text, f"a directory where mcsim can write its manifest, "
                              f"but {manifest} is a directory mcsim did not write (rename "
                              "it, or choose another directory)")
        own, problem = read_manifest(out)
        if problem and not force:
            raise ConfigError(key, text, f"a new or empty directory, or one mcsim wrote; "
                              f"its {MANIFEST} is not a manifest mcsim wrote ({problem}; "
                              f"expected {MANIFEST_FORM}), so mcsim cannot tell its own "
                              "files there (choose another directory, or pass --force to "
                              "add mcsim's files beside the others)")
        # without a manifest every entry is foreign: its top level says so, no walk needed
        foreign = sorted(_listing(out)) if own is None and not force else []
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more"
                                              if len(foreign) > 3 else "")
            raise ConfigError(key, text, f"a new or empty directory, or one mcsim wrote; it "
                              f"holds {shown}, which mcsim did not write (choose another "
                              f"directory, or pass --force to add mcsim's files beside them)")
    if probe:
        _probe(out, key, text)
    return out


def _probe(out: Path, key: str, text: str) -> None:
    """Do what :func:`output_directory` will do to ``out``, short of replacing it: so a
    write bound to fail fails before the run, not after hours of it.

    The staging directory is made where and as the write makes it (beside ``out``, missing
    parents first), renamed there as the write's last step will rename it, and removed,
    with any parents made for it. ``out`` itself is not touched (exchanging a report and
    back would put it at risk for nothing): a mount point, or a link into another file
    system, is found by looking, since moving the new files in from beside it would fail
    (EBUSY, EXDEV).
    """
    _check_mount(out, key, text)
    missing = []  # parents to make, nearest last
    parent = out.parent
    while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    made: list[Path] = []
    staging: Path | None = None
    step = f"making {out.parent}"
    try:
        for directory in reversed(missing):
            directory.mkdir()
            made.append(directory)
        step = f"making its staging directory in {out.parent}"
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=out.parent))
        (staging / STAGING_MARK).touch()  # marked: a kill leaves what the next write tidies
        # the write ends with a rename in this directory: try one (to a name of its own,
        # never onto OUT, which other processes of a distributed run probe at once)
        step = f"renaming its staging directory in {out.parent}"
        renamed = staging.with_name(staging.name + "-probe")
        os.rename(staging, renamed)
        staging = renamed
    except OSError as exc:
        raise ConfigError(key, text, f"a directory path where mcsim may write, but "
                          f"{step} failed: {exc.strerror or exc}") from None
    finally:
        # exactly what the probe made (the mark, the directory), nothing else
        if staging is not None:
            with contextlib.suppress(OSError):
                (staging / STAGING_MARK).unlink(missing_ok=True)
                staging.rmdir()
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _check_mount(out: Path, key: str, text: str) -> None:
    """Refuse an existing ``out`` on another mount than its parent, where the staging
    directory is made: the new files could not be moved in (EBUSY, EXDEV)."""
    if (out.exists() or out.is_symlink()) and not _same_mount(out, out.parent):
        raise ConfigError(key, text, f"a directory mcsim can fill from beside it, but {out} "
                          f"is a mount point (or a link into another file system than "
                          f"{out.parent.resolve()}), where the new report cannot be moved "
                          f"in: write into a new directory inside it, e.g. {out / 'report'}")


def _staging_prefix(out: Path) -> str:
    """The name every staging directory of ``out`` starts with (this process's id next,
    so :func:`_clean_stranded` can tell a live writer's from a killed one's)."""
    return f".{out.name}{_STAGING}{os.getpid()}-"


def _same_mount(a: Path, b: Path) -> bool:
    """``a`` and ``b`` (links followed) lie on the same mount: a rename between them can
    work. Devices first; then, on Linux, the mount table, since a bind mount keeps its
    device."""
    try:
        ra, rb = a.resolve(), b.resolve()
        if os.stat(ra).st_dev != os.stat(rb).st_dev:
            return False
    except OSError:
        return True  # nothing to look at: the write will say what is wrong
    mounts = _mount_points()
    return _mount_of(ra, mounts) == _mount_of(rb, mounts)


def _mount_points() -> list[Path]:
    """Every mount point of this process (Linux: /proc/self/mountinfo; empty elsewhere)."""
    import re

    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8",
                                                       errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:  # the fifth field, with spaces etc. as octal escapes
            out.append(Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                                   fields[4])))
    return out


def _mount_of(path: Path, mounts: list[Path]) -> Path | None:
    """The deepest mount point at or above ``path``."""
    above = [m for m in mounts if m == path or m in path.parents]
    return max(above, key=lambda m: len(m.parts)) if above else None


@contextlib.contextmanager
def output_directory(path: str | Path, *, force: bool = False,
                     key: str = "out_dir") -> Iterator[Path]:
    """Yield an empty staging directory to write into; on success its files become ``path``
    (see the module docstring), on any failure the staging directory is deleted and
    ``path`` is left as it was."""
    # no probe: what it would try is what happens next (the CLI probed before the run);
    # but a mount point, which would fail only at the end, is refused first
    out = check_output_dir(path, key=key, force=force, probe=False)
    _check_mount(out, key, str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stranded(out)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=out.parent))
    try:
        # mkdtemp makes it drwx------ whatever the umask: the report it becomes would be
        # unreadable by colleagues; give it the mode os.mkdir would (or OUT's own, kept)
        os.chmod(staging, _directory_mode(out))
        (staging / STAGING_MARK).touch()
        yield staging
        (staging / STAGING_MARK).unlink()
        new_files = sorted(_all_files(staging))
        _write_manifest(staging, new_files)
        _publish(staging, out, new_files, key)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by
    setting and restoring it (a moment in which another thread's new file would get 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _directory_mode(out: Path) -> int:
    """The permissions of the directory that becomes ``out``: an existing ``out``'s own
    (its owner may have chosen them), else what ``mkdir`` gives under the umask."""
    with contextlib.suppress(OSError):
        if out.is_dir():
            return stat.S_IMODE(out.stat().st_mode)
    return 0o777 & ~current_umask()


def _write_manifest(directory: Path, files: list[str]) -> None:
    doc = {"format": MANIFEST_FORMAT, "files": [f for f in files if f != MANIFEST],
           "note": "the files mcsim wrote here; it replaces or removes only these"}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


def _publish(staging: Path, out: Path, new_files: list[str], key: str) -> None:
    if not out.exists() and not out.is_symlink():
        os.rename(staging, out)
        return
    old_own = _manifest_files(out)
    if not _is_cwd_or_above(out) and not out.is_symlink() and not foreign_files(out):
        _swap(staging, out)  # staging now holds the old report
        shutil.rmtree(staging, ignore_errors=True)
        return
    # the user's files live in OUT: replace mcsim's files one by one, keep theirs
    for rel in new_files:
        if rel.endswith("/") or rel == MANIFEST:
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            raise ConfigError(key, str(out), f"a directory where mcsim can write "
                              f"{rel}, but {target} is a directory it did not write")
        os.replace(staging / rel, target)
    for rel in sorted((old_own or set()) - set(new_files), reverse=True):
        stale = out / rel.rstrip("/")
        if not _inside(stale.parent, out):  # reached through a link the user put there
            continue
        with contextlib.suppress(OSError):
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
            _remove_empty_parents(stale.parent, out)
    os.replace(staging / MANIFEST, out / MANIFEST)


def _inside(directory: Path, root: Path) -> bool:
    """``directory`` is ``root`` or below it once links are followed."""
    try:
        real, top = directory.resolve(), root.resolve()
    except OSError:
        return False
    return real == top or top in real.parents


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()  # only when empty
        except OSError:
            return
        directory = directory.parent


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap(staging: Path, out: Path) -> None:
    """Exchange ``staging`` (new) and ``out`` (old): afterwards ``out`` is new and
    ``staging`` old."""
    if _renameat2_exchange(staging, out):
        return
    # fallback: two renames; a kill between them leaves OUT missing, and the next write to
    # OUT puts the parked old report back first (_clean_stranded)
    parked = out.parent / f".{out.name}{_STAGING}{os.getpid()}-old"
    os.rename(out, parked)
    os.rename(staging, out)
    os.rename(parked, staging)


def _clean_stranded(out: Path) -> None:
    """Tidy after a writer to ``out`` killed mid-way: delete its staging directories (a
    process no longer alive, and the staging mark or a manifest inside), and put a parked old
    report back where ``out`` went missing."""
    prefix = f".{out.name}{_STAGING}"
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return
    for entry in siblings:
        if not entry.name.startswith(prefix) or not entry.is_dir() or entry.is_symlink():
            continue
        pid_text = entry.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        ours = (entry / STAGING_MARK).exists() or _manifest_files(entry) is not None
        if not ours:
            continue
        if entry.name.endswith("-old") and not out.exists():
            os.rename(entry, out)  # a fallback swap killed between its renames
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
