"""Listing images and writing results on any filesystem: local folders, globs and manifests,
and fsspec's in-memory filesystem standing in for an object store."""

from __future__ import annotations

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sam.io.filesystems import (
    existing_names,
    list_images,
    output_names,
    put_atomically,
    read_bytes,
    write_atomically,
)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "notes.md"):
        (folder / name).write_bytes(b"x")
    (folder / "nested").mkdir()
    (folder / "nested" / "c.png").write_bytes(b"x")
    return folder


@pytest.fixture()
def memory():
    filesystem = fsspec.filesystem("memory")
    yield filesystem
    filesystem.rm("/bucket", recursive=True)


def test_folders_globs_and_files_are_listed_in_order_once(photos):
    a, b, c = str(photos / "a.jpg"), str(photos / "b.png"), str(photos / "nested" / "c.png")
    assert list_images([str(photos)]) == [a, b]  # images only, not recursively
    assert list_images([str(photos / "**" / "*.png"), b]) == [b, c]
    assert list_images([str(photos / "b.png"), str(photos)]) == [b, a]


def test_manifests_list_paths_relative_to_themselves(photos, tmp_path):
    a, b = str(photos / "a.jpg"), str(photos / "b.png")
    text = tmp_path / "list.txt"
    text.write_text(f"# the collection\nphotos/a.jpg\n\n{b}\n")
    assert list_images([str(text)]) == [a, b]
    table = tmp_path / "list.csv"
    table.write_text("path,label\nphotos/b.png,x\n")
    assert list_images([str(table)]) == [b]
    parquet = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": ["photos/a.jpg", b]}), parquet)
    assert list_images([str(parquet)]) == [a, b]
    pq.write_table(pa.table({"file": ["a.jpg"]}), parquet)
    with pytest.raises(ValueError, match="has no 'path' column"):
        list_images([str(parquet)])


def test_nothing_to_list_is_a_clear_error(photos, tmp_path):
    with pytest.raises(ValueError, match=r"no such file, folder, pattern or manifest: .*nope"):
        list_images([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images found in .*empty"):
        list_images([str(tmp_path / "empty")])


def test_output_names_refuse_clashes():
    assert output_names(["/x/a.png", "s3://b/c.jpg"], ".json") == ["a.json", "c.json"]
    with pytest.raises(ValueError, match=r"would both write results named a\.json"):
        output_names(["/x/a.png", "/y/a.jpg"], ".json")


def test_writes_are_whole_and_leave_no_partial_file(tmp_path):
    target = tmp_path / "a.json"
    write_atomically(str(target), b"first")
    write_atomically(str(target), b"second")
    local = tmp_path / "local.bin"
    local.write_bytes(b"table")
    put_atomically(str(local), str(tmp_path / "copy.bin"))
    assert target.read_bytes() == b"second"
    assert (tmp_path / "copy.bin").read_bytes() == b"table"
    assert existing_names(str(tmp_path)) == {"a.json", "local.bin", "copy.bin"}
    assert existing_names(str(tmp_path / "missing")) == set()


def test_another_filesystem_through_its_uri(memory):
    for name in ("a.png", "b.jpg", "readme.txt"):
        memory.pipe_file(f"/bucket/photos/{name}", name.encode())
    memory.pipe_file("/bucket/list.txt", b"photos/b.jpg\n")
    images = list_images(["memory://bucket/photos"])
    assert images == ["memory:///bucket/photos/a.png", "memory:///bucket/photos/b.jpg"]
    assert list_images(["memory://bucket/list.txt"]) == ["memory:///bucket/photos/b.jpg"]
    assert read_bytes(images[0]) == b"a.png"
    write_atomically("memory://bucket/out/a.json", b"{}")
    assert existing_names("memory://bucket/out") == {"a.json"}
    with pytest.raises(ValueError, match=r"could not read 'gone\.png': no such file"):
        read_bytes("memory://bucket/photos/gone.png")
