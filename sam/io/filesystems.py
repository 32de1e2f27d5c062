"""Images and results on any filesystem: local paths, and URIs of the filesystems fsspec or
pyarrow reach (s3://, gs://, abfs://, hdfs://, memory://, ...), for runs over collections that
live in object stores.

Paths are passed around as strings: a local path stays a plain path (so results name the file
as the single-process command does), anything else keeps its scheme. The filesystem behind a
string is found again where it is used, on whichever machine that is.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import posixpath
from collections.abc import Callable, Iterable

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from sam.io.images import IMAGE_SUFFIXES

#: Files read as lists of images rather than as images: one path or URI a line (.txt), or a
#: table with a ``path`` column (.csv, .parquet). Relative entries are relative to the list.
MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet")
# An upload to these stores appears whole or not at all, so results are written in place.
ATOMIC_UPLOAD_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az"}


def filesystem_of(uri: str) -> tuple[AbstractFileSystem, str]:
    """A path or URI -> (its filesystem, the path on it). fsspec's filesystems first; where
    fsspec lacks the package for a scheme (s3fs, gcsfs), pyarrow's built-in one."""
    try:
        return url_to_fs(uri)
    except ImportError as missing:
        scheme, _, rest = uri.partition("://")
        try:
            filesystem = _arrow_filesystem(f"{scheme}://{rest.split('/', 1)[0]}")
        except Exception as error:
            raise ValueError(f"no filesystem for {uri}: {missing}; pyarrow: {error}") from error
        return filesystem, filesystem._strip_protocol(uri)


@functools.lru_cache(maxsize=16)
def _arrow_filesystem(root: str) -> AbstractFileSystem:
    """pyarrow's filesystem for ``scheme://bucket``, made once per process (making an S3 one
    asks the bucket's region over the network)."""
    from fsspec.implementations.arrow import ArrowFSWrapper
    from pyarrow.fs import FileSystem

    return ArrowFSWrapper(FileSystem.from_uri(root)[0])


def _as_uri(filesystem: AbstractFileSystem, path: str) -> str:
    return path if isinstance(filesystem, LocalFileSystem) else filesystem.unstrip_protocol(path)


def join(folder: str, name: str) -> str:
    """``folder``/``name`` for a local path or a URI."""
    return folder.rstrip("/") + "/" + name


# -- listing -----------------------------------------------------------------------------------


def list_images(sources: Iterable[str]) -> list[str]:
    """The images named by ``sources``: image files, folders (their images, not recursively),
    glob patterns and manifests (see MANIFEST_SUFFIXES), in order, once each. Files listed by a
    manifest are not checked here: a missing one fails when it is read, like a corrupt one."""
    found: list[str] = []
    for source in sources:
        filesystem, path = filesystem_of(source)
        if path.lower().endswith(MANIFEST_SUFFIXES) and filesystem.isfile(path):
            matches = read_manifest(source)
        elif filesystem.isdir(path):
            entries = filesystem.ls(path, detail=True)
            matches = sorted(
                _as_uri(filesystem, entry["name"])
                for entry in entries
                if entry["type"] == "file" and entry["name"].lower().endswith(IMAGE_SUFFIXES)
            )
        elif filesystem.isfile(path):
            matches = [_as_uri(filesystem, path)]
        elif glob.has_magic(path):
            matches = sorted(
                _as_uri(filesystem, match)
                for match in filesystem.glob(path)
                if filesystem.isfile(match)
            )
        else:
            raise ValueError(f"no such file, folder, pattern or manifest: {source}")
        if not matches:
            raise ValueError(
                f"no images found in {source} (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        found.extend(matches)
    return list(dict.fromkeys(found))


def read_manifest(uri: str) -> list[str]:
    """The images a manifest lists: a .txt file (one a line; blank lines and lines starting
    with # skipped) or a .csv/.parquet table with a ``path`` column."""
    filesystem, path = filesystem_of(uri)
    suffix = posixpath.splitext(path)[1].lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        with filesystem.open(path, "rb") as file:
            table = pq.read_table(file)
        if "path" not in table.column_names:
            raise ValueError(f"manifest {uri} has no 'path' column: {table.column_names}")
        entries = [str(p) for p in table.column("path").to_pylist() if p]
    else:
        text = filesystem.cat_file(path).decode("utf-8-sig")
        if suffix == ".csv":
            rows = csv.DictReader(io.StringIO(text))
            if "path" not in (rows.fieldnames or []):
                raise ValueError(f"manifest {uri} has no 'path' column: {rows.fieldnames}")
            entries = [row["path"].strip() for row in rows if row["path"]]
        else:
            entries = [line.strip() for line in text.splitlines()]
            entries = [entry for entry in entries if entry and not entry.startswith("#")]
    folder = posixpath.dirname(path)
    return [
        entry
        if "://" in entry or entry.startswith("/")
        else _as_uri(filesystem, join(folder, entry))
        for entry in entries
    ]


def output_names(images: list[str], suffix: str) -> list[str]:
    """One result name per image, its stem + ``suffix``; ValueError where two would clash."""
    names: dict[str, str] = {}
    for image in images:
        name = posixpath.splitext(posixpath.basename(image))[0] + suffix
        if name in names:
            raise ValueError(
                f"{names[name]} and {image} would both write results named {name}; "
                "rename one or run them separately with different output folders"
            )
        names[name] = image
    return list(names)


def existing_names(folder: str) -> set[str]:
    """The names of the files in ``folder`` (none if it does not exist), in one listing."""
    filesystem, path = filesystem_of(folder)
    if not filesystem.isdir(path):
        return set()
    return {posixpath.basename(name.rstrip("/")) for name in filesystem.ls(path, detail=False)}


# -- reading and writing -----------------------------------------------------------------------


def read_bytes(uri: str) -> bytes:
    """A file's contents; ValueError naming the file if it cannot be read."""
    try:
        filesystem, path = filesystem_of(uri)
        return filesystem.cat_file(path)
    except (OSError, ValueError) as error:
        name = posixpath.basename(uri)
        reason = "no such file" if isinstance(error, FileNotFoundError) else error
        raise ValueError(f"could not read {name!r}: {reason}") from error


def make_folder(uri: str) -> None:
    """Create ``uri`` as a folder where the filesystem has folders (object stores have none)."""
    filesystem, path = filesystem_of(uri)
    filesystem.makedirs(path, exist_ok=True)


def write_atomically(uri: str, data: bytes) -> None:
    """Write ``data`` so that the file is whole or absent, never half written."""
    _commit(uri, lambda filesystem, path: filesystem.pipe_file(path, data))


def put_atomically(local_file: str, uri: str) -> None:
    """Copy a local file to ``uri`` (any filesystem), whole or not at all."""
    _commit(uri, lambda filesystem, path: filesystem.put_file(local_file, path))


def _commit(uri: str, write: Callable[[AbstractFileSystem, str], None]) -> None:
    """``write(filesystem, path)`` in place on object stores (an upload appears whole), else to
    NAME.partial, renamed into place."""
    filesystem, path = filesystem_of(uri)
    protocols = filesystem.protocol
    protocols = {protocols} if isinstance(protocols, str) else set(protocols)
    if protocols & ATOMIC_UPLOAD_PROTOCOLS:
        write(filesystem, path)
        return
    partial = path + ".partial"
    write(filesystem, partial)
    filesystem.mv(partial, path)
