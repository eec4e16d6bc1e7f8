"""Project bundles: the archive `dockyard deploy` uploads, and the server's safe unpacking of it.

Both sides live here because they must agree on one thing: the *content hash*. It is computed
from the unpacked entries (path, type, executable bit, content or link target; sorted by path),
never from the archive bytes, so the same code gives the same hash whatever gzip or tar wrote it.
The client also writes deterministic archives (sorted entries, mtime 0, uid/gid 0, no names),
so the upload of unchanged code is byte-identical too.

Unpacking refuses, with the reason: absolute paths, ``..`` components, links that point outside
the bundle, device files and FIFOs, duplicate paths, more than ``max_files`` entries, and more
than ``max_bytes`` once decompressed (counted while streaming, so a gzip bomb stops early).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pathspec

from dockyard.errors import InvalidInput

# Never bundled, whatever the ignore files say: VCS data, virtualenvs, bytecode, local state.
ALWAYS_EXCLUDED = frozenset({".git", ".venv", "__pycache__", ".dockyard"})
IGNORE_FILES = (".gitignore", ".dockyardignore")
CHUNK = 1 << 16


class UnsafeArchive(InvalidInput):
    """An uploaded archive that is refused before any of its code runs (422)."""

    code = "unsafe_archive"


# ---- bundling (client side) --------------------------------------------------------------

def _ignore_spec(root: Path) -> pathspec.PathSpec:
    lines: list[str] = []
    for name in IGNORE_FILES:
        f = root / name
        if f.is_file():
            lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def collect_files(root: Path) -> list[str]:
    """The project's files to bundle, as sorted POSIX paths relative to ``root``.

    Honours ``.gitignore`` and ``.dockyardignore`` (gitignore syntax) at the project root and,
    as git does, in its subdirectories, for the paths below them (a nested file can exclude,
    not re-include what a parent's excludes), and always leaves out ``ALWAYS_EXCLUDED``.
    Symbolic links are kept as links when they point inside the project; a link pointing
    outside is an error (the server would refuse it).
    """
    root = root.resolve()
    specs: dict[str, pathspec.PathSpec] = {"": _ignore_spec(root)}

    def ignored(rel: str) -> bool:
        return any(rel.startswith(base) and spec.match_file(rel[len(base):])
                   for base, spec in specs.items())

    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if prefix and any(name in filenames for name in IGNORE_FILES):
            specs[prefix] = _ignore_spec(Path(dirpath))
        keep = []
        for d in sorted(dirnames):
            rel = prefix + d
            if d in ALWAYS_EXCLUDED or ignored(rel + "/"):
                continue
            if (Path(dirpath) / d).is_symlink():  # os.walk does not descend into it
                out.append(rel)
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = prefix + f
            if f in ALWAYS_EXCLUDED or ignored(rel):
                continue
            out.append(rel)
    for rel in out:
        path = root / rel
        if path.is_symlink():
            target = os.readlink(path)
            if os.path.isabs(target) or _escapes(posixpath.join(posixpath.dirname(rel), target)):
                raise InvalidInput(f"{rel}: symbolic link to {target!r} points outside the "
                                   "project; remove it or add it to .dockyardignore")
    return sorted(out)


def build_archive(root: Path) -> bytes:
    """A deterministic tar.gz of the project: the same files give the same bytes."""
    root = root.resolve()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in collect_files(root):
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                info.mode = 0o777
                tar.addfile(info)
                continue
            mode = path.stat().st_mode
            info.mode = 0o755 if mode & stat.S_IXUSR else 0o644
            info.size = path.stat().st_size
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


# ---- unpacking (server side) -------------------------------------------------------------

@dataclass(frozen=True)
class Unpacked:
    content_hash: str
    files: int
    size: int  # bytes once decompressed


class _Limited(io.RawIOBase):
    """A reader that fails once more than ``limit`` bytes came through (the gzip bomb guard)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.seen = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size is not None and size >= 0 else CHUNK)
        self.seen += len(data)
        if self.seen > self.limit:
            raise UnsafeArchive(f"archive is larger than {self.limit} bytes once decompressed "
                                "(DOCKYARD_MAX_REVISION_BYTES)")
        return data


def _escapes(path: str) -> bool:
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith("../") or norm.startswith("/")


def _member_path(name: str) -> str:
    """The member's normalised relative path; refuses absolute paths and ``..``."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive entry {name!r} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"archive entry {name!r} has a '..' component")
    return "/".join(parts)


def unpack(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> Unpacked:
    """Unpack the tar.gz ``archive`` into the empty directory ``dest``, safely (see the module
    docstring); raises ``UnsafeArchive`` with the reason. Returns the content hash."""
    dest = dest.resolve()
    entries: dict[str, bytes] = {}  # path -> the entry's line in the content hash
    try:
        with gzip.open(archive, "rb") as gz:
            limited = _Limited(gz, max_bytes)  # type: ignore[arg-type]
            with tarfile.open(fileobj=limited, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                        continue
                    rel = _member_path(member.name)
                    if not rel:
                        continue
                    if rel in entries:
                        raise UnsafeArchive(f"archive entry {rel!r} appears twice")
                    if len(entries) >= max_files:
                        raise UnsafeArchive(f"archive has more than {max_files} entries "
                                            "(DOCKYARD_MAX_REVISION_FILES)")
                    entries[rel] = _extract(tar, member, rel, dest, entries)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise UnsafeArchive(f"not a valid gzip-compressed tar archive: {exc}") from None
    digest = hashlib.sha256()
    for rel in sorted(entries):
        digest.update(rel.encode() + b"\0" + entries[rel] + b"\n")
    return Unpacked(digest.hexdigest(), len(entries), limited.seen)


def _target(dest: Path, rel: str) -> Path:
    """``dest/rel``, checked to stay inside ``dest`` after resolving links unpacked so far."""
    path = dest / rel
    if not path.parent.resolve().is_relative_to(dest):
        raise UnsafeArchive(f"archive entry {rel!r} would be written outside the bundle "
                            "(through a link)")
    return path


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, dest: Path,
             entries: dict[str, bytes]) -> bytes:
    if member.isdir():
        path = _target(dest, rel)
        path.mkdir(parents=True, exist_ok=True)
        return b"d"
    if member.issym():
        link = member.linkname
        if link.startswith("/") or _escapes(posixpath.join(posixpath.dirname(rel), link)):
            raise UnsafeArchive(f"archive entry {rel!r} is a link to {link!r}, outside the bundle")
        path = _target(dest, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, path)
        return b"l" + link.encode()
    if member.islnk():  # a hard link names another member: copied, never linked
        source = _member_path(member.linkname)
        if entries.get(source, b"")[:1] != b"f":
            raise UnsafeArchive(f"archive entry {rel!r} is a hard link to {member.linkname!r}, "
                                "which is not a file of the bundle")
        path = _target(dest, rel)
        shutil.copyfile(_target(dest, source), path)
        return entries[source]
    if not member.isfile():
        raise UnsafeArchive(f"archive entry {rel!r} is a device, FIFO or other special file")
    path = _target(dest, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    _target(dest, rel)  # parents just created: check again
    fh = tar.extractfile(member)
    assert fh is not None
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    executable = bool(member.mode & 0o100)
    os.chmod(path, 0o700 if executable else 0o600)
    return b"f" + (b"x" if executable else b"-") + digest.hexdigest().encode()
