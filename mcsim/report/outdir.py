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
``OUT`` being the working directory) are in :func:`check_output_dir`, so a bad ``--out``
fails in a second, not after an hour of simulation.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError

MANIFEST = ".mcsim-output.json"
MANIFEST_FORMAT = "mcsim.output/1"
#: written first into every staging directory: what :func:`_clean_stranded` may delete
STAGING_MARK = ".mcsim-staging"
_STAGING = ".mcsim-staging-"


def _manifest_files(directory: Path) -> set[str] | None:
    """The files mcsim wrote into ``directory`` (relative paths), or None without a
    readable manifest."""
    try:
        doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        return None
    files = doc.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


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
            elif not any(full.iterdir()):
                out.add((rel / name).as_posix() + "/")
    return out


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


def check_output_dir(path: str | Path, *, key: str = "out_dir", force: bool = False) -> Path:
    """Check before a run that ``path`` can take mcsim's files; returns it as a Path.

    Raises ConfigError (naming ``key``: the Python argument ``out_dir`` unless told, which
    the command line renames to its flag) for: an empty path; a path whose parent is a file;
    a path that exists and is not a directory; a directory (or nearest existing parent)
    that is not writable; a non-empty directory mcsim did not write, unless ``force``.
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
        foreign = foreign_files(out)
        if foreign and _manifest_files(out) is None and not force:
            foreign = sorted({f.split("/")[0] for f in foreign})  # top-level names
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more"
                                              if len(foreign) > 3 else "")
            raise ConfigError(key, text, f"a new or empty directory, or one mcsim wrote; it "
                              f"holds {shown}, which mcsim did not write (choose another "
                              f"directory, or pass --force to add mcsim's files beside them)")
    return out


@contextlib.contextmanager
def output_directory(path: str | Path, *, force: bool = False,
                     key: str = "out_dir") -> Iterator[Path]:
    """Yield an empty staging directory to write into; on success its files become ``path``
    (see the module docstring), on any failure the staging directory is deleted and
    ``path`` is left as it was."""
    out = check_output_dir(path, key=key, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stranded(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}{os.getpid()}-",
                                    dir=out.parent))
    try:
        (staging / STAGING_MARK).touch()
        yield staging
        (staging / STAGING_MARK).unlink()
        new_files = sorted(_all_files(staging))
        _write_manifest(staging, new_files)
        _publish(staging, out, new_files, key)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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
        with contextlib.suppress(OSError):
            if stale.is_file() or stale.is_symlink():
                stale.unlink()
            _remove_empty_parents(stale.parent, out)
    os.replace(staging / MANIFEST, out / MANIFEST)


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
