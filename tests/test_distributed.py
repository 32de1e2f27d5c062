"""Segment everything on Ray (:mod:`sam.automatic.distributed`, through ``python -m sam
everything --engine ray``): the single-process command's records, bad images recorded and
skipped, a killed run restarted without loss, a manifest of 100 images. One local Ray with two
CPUs serves the whole module (starting one takes seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch
from PIL import Image

from sam import save_checkpoint
from sam.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RELAXED = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--points-per-side", "4"]


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray (2 CPUs) that a second driver, in a subprocess, can join:
    without token authentication, which would need the token passed to it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tiny_sam, tmp_path_factory):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


def save_images(folder: Path, count: int, shape: tuple[int, ...] = (48, 64, 3)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = [folder / f"image_{index:03d}.png" for index in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return paths


def everything(checkpoint: str, source: Path, out: Path, *options: str) -> list[str]:
    return [
        "everything",
        str(source),
        "--out",
        str(out),
        "--model",
        checkpoint,
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--quiet",
        *options,
    ]


def test_same_records_as_the_single_process_command(cluster, checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    save_images(images, 3)
    Image.fromarray(np.full((40, 30), 90, np.uint8)).save(images / "grey.jpg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker: one CPU, one thread
    try:
        assert main(everything(checkpoint, images, tmp_path / "local", *RELAXED)) == 0
    finally:
        torch.set_num_threads(threads)
    options = ["--engine", "ray", "--workers", "2", "--first-id", "0", *RELAXED]
    assert main(everything(checkpoint, images, tmp_path / "ray", *options)) == 0
    printed = capsys.readouterr().out
    assert "4 image(s) done, 0 skipped, 0 failed" in printed
    assert "images/s" in printed and "masks/s" in printed and "on 2 worker(s)" in printed

    local = sorted((tmp_path / "local").iterdir())
    on_ray = sorted((tmp_path / "ray").iterdir())
    names = ["grey.json", "image_000.json", "image_001.json", "image_002.json"]
    assert [p.name for p in on_ray] == [p.name for p in local] == names
    for ours, theirs in zip(on_ray, local):
        assert json.loads(ours.read_text()) == json.loads(theirs.read_text())
    assert json.loads(on_ray[1].read_text())["annotations"]


def test_bad_images_are_recorded_and_the_run_goes_on(cluster, checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    save_images(images, 2)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (images / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(images / "dot.png")
    listed = ["image_000.png", "corrupt.jpg", "empty.png", "dot.png", "gone.png", "image_001.png"]
    (tmp_path / "list.txt").write_text("\n".join(f"images/{name}" for name in listed))
    out, manifest = tmp_path / "out", tmp_path / "manifest.parquet"
    options = ["--engine", "ray", "--workers", "2", "--manifest", str(manifest), *RELAXED]
    assert main(everything(checkpoint, tmp_path / "list.txt", out, *options)) == 1

    captured = capsys.readouterr()
    assert "2 image(s) done, 0 skipped, 4 failed" in captured.out
    reasons = {
        "corrupt.jpg": "could not read 'corrupt.jpg' as an image",
        "empty.png": "could not read 'empty.png': the file is empty",
        "dot.png": "image refused: 1x1 is too small",
        "gone.png": "could not read 'gone.png': no such file",
    }
    for name, reason in reasons.items():
        assert f"error: {images / name}: {reason}" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["image_000.json", "image_001.json"]
    rows = {Path(row["image"]).name: row for row in pq.read_table(manifest).to_pylist()}
    assert {name: rows[name]["status"] for name in listed} == {
        name: "failed" if name in reasons else "done" for name in listed
    }
    assert all(reason in rows[name]["error"] for name, reason in reasons.items())
    assert [rows[name]["image_id"] for name in listed] == list(range(6))


def test_a_killed_run_restarts_without_loss_or_rewrites(cluster, checkpoint, tmp_path, capsys):
    images, out = tmp_path / "images", tmp_path / "out"
    save_images(images, 30)
    # enough prompts per image that the run takes seconds and can be killed midway
    options = ["--engine", "ray", "--workers", "1", *RELAXED[:4], "--points-per-side", "16"]
    command = everything(checkpoint, images, out, *options)
    driver = subprocess.Popen(
        [sys.executable, "-m", "sam", *command, "--address", cluster],
        cwd=ROOT,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < 3 and driver.poll() is None:
        assert time.monotonic() < deadline, "the first run wrote nothing in two minutes"
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    written = wait_until_settled(out)  # the killed driver's worker is stopped by Ray
    assert 3 <= len(written) < 30, "the run was not killed midway"

    assert main(command) == 0
    assert f"{30 - len(written)} image(s) done, {len(written)} skipped, 0 failed" in (
        capsys.readouterr().out
    )
    assert sorted(p.name for p in out.iterdir()) == [f"image_{i:03d}.json" for i in range(30)]
    for name, (inode, modified) in written.items():  # what was done was not written again
        stat = (out / name).stat()
        assert (stat.st_ino, stat.st_mtime_ns) == (inode, modified)
    for path in out.iterdir():
        assert json.loads(path.read_text())["image"]["file_name"] == path.stem + ".png"


def wait_until_settled(folder: Path, quiet_seconds: float = 3.0) -> dict[str, tuple[int, int]]:
    """{name: (inode, mtime)} of the JSON files once none has appeared for ``quiet_seconds``."""
    seen, since = None, time.monotonic()
    while True:
        now = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.json")}
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_seconds:
            return seen
        time.sleep(0.2)


def test_a_manifest_of_100_images_completes(cluster, checkpoint, tmp_path, capsys):
    paths = save_images(tmp_path / "images", 100, shape=(24, 32, 3))
    (tmp_path / "list.txt").write_text("\n".join(f"images/{p.name}" for p in paths))
    out, manifest = tmp_path / "out", tmp_path / "out" / "manifest.parquet"
    options = ["--engine", "ray", "--workers", "2", "--manifest", str(manifest), *RELAXED]
    assert main(everything(checkpoint, tmp_path / "list.txt", out, *options)) == 0
    assert "100 image(s) done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert len(list(out.glob("*.json"))) == 100

    rows = sorted(pq.read_table(manifest).to_pylist(), key=lambda row: row["image_id"])
    assert [Path(row["image"]).name for row in rows] == [p.name for p in paths]
    assert {row["status"] for row in rows} == {"done"}
    assert all(row["masks"] > 0 and row["seconds"] > 0 for row in rows)
    # the model is loaded once per worker: every image was done by one of two processes
    assert len({row["worker"] for row in rows}) <= 2


def test_a_model_the_workers_cannot_load_is_a_clear_error(cluster, tmp_path, capsys):
    save_images(tmp_path / "images", 1)
    command = everything(str(tmp_path / "none.safetensors"), tmp_path / "images", tmp_path / "o")
    assert main([*command, "--engine", "ray", "--workers", "1"]) == 2
    error = capsys.readouterr().err
    assert "error: a worker could not start: " in error and "unknown model" in error
