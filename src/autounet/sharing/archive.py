"""Checks on a shared-model zip before anything of it lands on disk, and verified extraction.

The checks reject, naming the archive and the member: names that are absolute, carry a drive letter or a
backslash, or contain ``..``/``.``/empty components; symbolic links and other non-regular entries (from the
zip's Unix mode bits); encrypted members and unusual compression methods; duplicate names (also when they
differ only in case, which would collide on macOS and Windows); too many members or too many uncompressed
bytes (zip bombs); a missing or malformed manifest, members the manifest does not list and listed members
that are missing. Extraction then checks every member's SHA-256 against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
import zlib
from pathlib import Path

from autounet.errors import AutounetError, CheckpointError
from autounet.io.serialization import from_dict
from autounet.sharing.manifest import FIND_BEST_FOLDER, MANIFEST_NAME, ModelManifest, is_safe_component

__all__ = ["MAX_MEMBERS", "archive_error", "extract_verified", "inspect_archive", "open_archive"]

MAX_MEMBERS = 10_000
_MAX_MANIFEST_BYTES = 16 << 20
_CHUNK_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_ALLOWED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)

Label = str | Path
"""How errors name the archive: its path, or the URL it was downloaded from."""


def archive_error(label: Label, problem: str) -> CheckpointError:
    """A one-line error naming the archive (a path, or a URL kept verbatim rather than mangled into a path)."""
    if isinstance(label, Path):
        return CheckpointError(problem, label)
    return CheckpointError(f"{label}: {problem}")


def open_archive(path: Path, label: Label) -> zipfile.ZipFile:
    """Open a zip file for reading.

    Raises:
        CheckpointError: Missing, unreadable or not a zip file.
    """
    if not path.is_file():
        raise archive_error(label, "model archive not found")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise archive_error(label, f"not a zip archive ({exc})") from None


def inspect_archive(archive: zipfile.ZipFile, label: Label, max_total_bytes: int) -> ModelManifest:
    """Validate every member's name, type and size, read the manifest and match it against the members.

    Nothing is extracted; only the manifest is read into memory.

    Args:
        archive: The open zip file.
        label: How error messages name the archive.
        max_total_bytes: Upper bound on the sum of the members' uncompressed sizes.

    Returns:
        The validated manifest.

    Raises:
        CheckpointError: The first problem found, naming the member.
    """
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise archive_error(label, f"has {len(infos)} members, more than a model archive can hold ({MAX_MEMBERS})")
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = _member_problem(info)
        if problem is not None:
            raise archive_error(label, f"member {info.orig_filename!r} {problem}")
        key = info.filename.rstrip("/").casefold()
        if key in seen:
            raise archive_error(label, f"member {info.filename!r} appears twice (names are compared "
                                       "ignoring case)")
        seen.add(key)
        total += info.file_size
        if total > max_total_bytes:
            raise archive_error(label, f"unpacks to more than {max_total_bytes} bytes; refusing it as a possible "
                                       "zip bomb (raise the limit if the model really is that large)")
    manifest = _read_manifest(archive, label)
    _match_members(archive, manifest, label)
    return manifest


def extract_verified(archive: zipfile.ZipFile, manifest: ModelManifest, destination: Path, label: Label) -> None:
    """Extract every member the manifest lists into ``destination``, checking each SHA-256 on the way.

    Args:
        archive: The open zip file, already checked by :func:`inspect_archive`.
        manifest: Its manifest.
        destination: An empty folder; members land at ``destination/<member name>``.
        label: How error messages name the archive.

    Raises:
        CheckpointError: A member is corrupt, longer than declared, or does not match its hash.
    """
    root = destination.resolve()
    for name, expected in manifest.files.items():
        info = archive.getinfo(name)
        target = destination.joinpath(*name.split("/"))
        # Names were validated already; this is the last line of defence should that ever change.
        if not target.resolve().is_relative_to(root):
            raise archive_error(label, f"member {name!r} escapes the archive")
        digest = hashlib.sha256()
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "xb") as sink:
                while chunk := source.read(_CHUNK_BYTES):
                    written += len(chunk)
                    if written > info.file_size:
                        raise archive_error(label, f"member {name!r} is longer than its declared size")
                    digest.update(chunk)
                    sink.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise archive_error(label, f"member {name!r} is corrupt ({exc})") from None
        except OSError as exc:
            # E.g. a file and a folder of the same name ("a" and "a/b"), or a full disk.
            raise archive_error(label, f"member {name!r} cannot be extracted ({exc.strerror or exc})") from None
        if digest.hexdigest() != expected:
            raise archive_error(label, f"member {name!r} does not match its SHA-256 in {MANIFEST_NAME}; the "
                                       "archive was altered or damaged")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """What is wrong with one member's name or type, or ``None``."""
    name = info.orig_filename
    if not name or "\x00" in name:
        return "has an empty name or a NUL character"
    if "\\" in name:
        return "contains a backslash (a Windows path separator)"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if ".." in parts:
        return "escapes the archive ('..' component)"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    if not all(is_safe_component(part) for part in parts):
        return "has characters other than letters, digits, '_', '.', '+', '-'"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is not a regular file or folder"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in _ALLOWED_COMPRESSION:
        return f"uses an unsupported compression method ({info.compress_type}); only stored and deflate"
    return None


def _read_manifest(archive: zipfile.ZipFile, label: Label) -> ModelManifest:
    try:
        info = archive.getinfo(MANIFEST_NAME)
    except KeyError:
        raise archive_error(label, f"has no {MANIFEST_NAME}; not a model exported by 'autounet export-model'") \
            from None
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise archive_error(label, f"{MANIFEST_NAME} is implausibly large ({info.file_size} bytes)")
    try:
        data = json.loads(archive.read(info).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile, zlib.error, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise archive_error(label, f"{MANIFEST_NAME} is not valid JSON ({detail})") from None
    try:
        return from_dict(ModelManifest, data)
    except AutounetError as exc:
        raise archive_error(label, f"{MANIFEST_NAME}: {exc.problem}") from None


def _match_members(archive: zipfile.ZipFile, manifest: ModelManifest, label: Label) -> None:
    """Every file member is listed in the manifest and vice versa, and the model is complete."""
    present = {info.filename for info in archive.infolist() if not info.is_dir()} - {MANIFEST_NAME}
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise archive_error(label, f"member {unlisted[0]!r} is not listed in {MANIFEST_NAME}")
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise archive_error(label, f"member {missing[0]!r} is listed in {MANIFEST_NAME} but missing")
    folders = {*manifest.configurations, FIND_BEST_FOLDER}
    for name in manifest.files:
        parts = name.split("/")
        if len(parts) < 3 or parts[0] != manifest.dataset_name or parts[1] not in folders:
            raise archive_error(label, f"member {name!r} lies outside {manifest.dataset_name}/<configuration>/")
    required = [f"{manifest.dataset_name}/{configuration}/{file}" for configuration in manifest.configurations
                for file in ("plans.json", "dataset.json")]
    for name in (*required, *manifest.checkpoint_members()):
        if name not in manifest.files:
            raise archive_error(label, f"the model is incomplete: {name!r} is missing")
