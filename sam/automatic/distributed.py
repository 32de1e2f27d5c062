"""Segment everything over an image collection on a Ray cluster: the SA-1B data engine's fully
automatic stage, at the data engine's scale.

    from sam.automatic.distributed import EverythingJob, segment_everything_on_ray

    job = EverythingJob(model="vit_h", settings=PRESETS["sa1b"])
    summary = segment_everything_on_ray(
        job, ["s3://bucket/photos/"], "s3://bucket/masks", address="auto", gpus_per_worker=1
    )

A Ray Data pipeline over a table of (image, output) rows, streamed in small blocks to a pool
of actors: each holds one loaded model, reads its images through their filesystem, segments
them into SA-1B JSON, the same as ``python -m sam everything`` with the same settings, and
writes each JSON atomically. Images whose JSON is already in the output folder are
left out before anything starts, so a stopped run started again with the same arguments loses
nothing and redoes nothing. An image that cannot be read or segmented becomes a row with its
reason, never a failed job. The driver streams the rows into a summary and, if asked, a Parquet
manifest of every image (done, skipped or failed).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from sam.io.filesystems import (
    existing_names,
    join,
    list_images,
    make_folder,
    output_names,
    put_atomically,
    read_bytes,
    write_atomically,
)

if TYPE_CHECKING:
    from ray.data import Dataset

    from sam.automatic.generator import AutomaticMaskGenerator

#: Images per Ray Data block: small enough that the last blocks spread over the workers, large
#: enough that per-task overhead stays small beside a segmentation.
MAX_IMAGES_PER_BLOCK = 16
BLOCKS_PER_WORKER = 8
# What a bad image may raise (the single-process command catches the same).
IMAGE_ERRORS = (ValueError, RuntimeError, OSError, MemoryError)
#: One row per image, from the workers to the driver, and in the manifest.
RESULT_SCHEMA = pa.schema(
    [
        ("image", pa.string()),
        ("image_id", pa.int64()),
        ("output", pa.string()),
        ("status", pa.string()),  # done, skipped or failed
        ("error", pa.string()),
        ("masks", pa.int64()),
        ("started", pa.float64()),  # when the worker began the image (seconds since the epoch)
        ("seconds", pa.float64()),
        ("worker", pa.string()),
    ]
)


class WorkerStartError(RuntimeError):
    """A worker could not load the model (a wrong name, no network to fetch it, no memory)."""


@dataclass(frozen=True)
class EverythingJob:
    """What every worker runs: the model (as ``load_sam`` takes it) and the generator's keyword
    arguments; image ids count from ``first_id`` in the order the images are listed."""

    model: str = "vit_b"
    device: str | None = None
    precision: str = "auto"
    settings: dict[str, Any] = field(default_factory=dict)
    first_id: int = 0

    def generator(self) -> AutomaticMaskGenerator:
        from sam.automatic.generator import AutomaticMaskGenerator
        from sam.weights.checkpoint import load_sam

        model = load_sam(self.model, device=self.device, precision=self.precision)
        return AutomaticMaskGenerator(model, output_mode="coco_rle", **self.settings)


@dataclass
class RunSummary:
    """How a run went: images done, skipped (already there) and failed (image, reason), the
    masks written, and the seconds from handing the images to Ray to the last result (the
    workers' start included, the cluster's not)."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    masks: int = 0
    seconds: float = 0.0
    workers: int = 0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def masks_per_second(self) -> float:
        return self.masks / self.seconds if self.seconds else 0.0


# -- the workers (Ray actors, on any node) ------------------------------------------------------


class EverythingWorker:
    """One Ray actor's work: the model is loaded once, when the actor starts; then each image
    of a batch is read from its filesystem, segmented, and its SA-1B JSON written atomically.

    Reading and writing happen here rather than in Ray tasks of their own: a task runs in a
    process of its own, which would import torch only to move a few bytes, and on a GPU node
    fetching one image takes milliseconds beside seconds of segmenting it."""

    def __init__(self, job: EverythingJob, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.generator = job.generator()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.segment(**row) for row in batch.to_pylist()]
        return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)

    def segment(self, image: str, image_id: int, output: str) -> dict[str, Any]:
        """One image -> OUT/NAME.json; the result row (status, error, masks, seconds, worker)."""
        from sam.io.export import to_sa1b
        from sam.io.images import decode_image

        row = {"image": image, "image_id": image_id, "output": output, "worker": self.name}
        row["started"], start = time.time(), time.perf_counter()
        try:
            name = posixpath.basename(image)
            pixels = decode_image(read_bytes(image), name)
            records = self.generator.generate(pixels)
            height, width = pixels.shape[:2]
            sa1b = to_sa1b(records, image_id, name, height, width)
            write_atomically(output, json.dumps(sa1b).encode())
            row.update(status="done", masks=len(records))
        except IMAGE_ERRORS as error:
            row.update(status="failed", error=str(error))
        row["seconds"] = time.perf_counter() - start
        return row


# -- the driver --------------------------------------------------------------------------------


def plan(
    sources: Iterable[str], out: str, overwrite: bool = False, first_id: int = 0
) -> tuple[pa.Table, pa.Table]:
    """(to do, skipped): one row per image (image, image_id, output), split by whether its
    JSON is in ``out`` already (found in one listing of ``out``)."""
    images = list_images(sources)
    outputs = [join(out, name) for name in output_names(images, ".json")]
    ids = pa.array(range(first_id, first_id + len(images)), pa.int64())
    table = pa.table({"image": images, "image_id": ids, "output": outputs})
    there = set() if overwrite else existing_names(out)
    done = pa.array([posixpath.basename(output) in there for output in outputs], pa.bool_())
    return table.filter(pc.invert(done)), table.filter(done)


def segment_everything_on_ray(
    job: EverythingJob,
    sources: Iterable[str],
    out: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    gpus_per_worker: float = 0.0,
    overwrite: bool = False,
    manifest: str | None = None,
    progress: bool = True,
    on_failure: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Segment everything in the images named by ``sources`` (files, folders, glob patterns,
    manifests; local or on any filesystem fsspec or pyarrow reaches) into OUT/NAME.json.

    Runs on the Ray cluster this process is connected to, else the one at ``address`` (None: the
    one in RAY_ADDRESS, else a new one on this machine; "auto": the one started on this machine
    with ``ray start``; "ray://host:10001": through Ray Client). ``workers`` actors (default: as
    many as the cluster's CPUs, or GPUs, allow) each reserve ``cpus_per_worker`` CPUs, which
    torch uses as threads, and ``gpus_per_worker`` GPUs (fractions share a GPU). ``manifest``:
    also write a Parquet file there with one row per image (RESULT_SCHEMA: status done, skipped
    or failed, the error, masks, timing, worker). ``on_failure(image, reason)`` is called as
    failures come in."""
    import ray

    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if cpus_per_worker < 1 or gpus_per_worker < 0:
        raise ValueError("each worker needs at least one CPU and zero or more GPUs")
    todo, skipped = plan(sources, out, overwrite, job.first_id)
    make_folder(out)
    summary = RunSummary(skipped=skipped.num_rows)
    if job.device is None:  # a worker without a GPU of its own must not take one it sees
        job = replace(job, device="cuda" if gpus_per_worker else "cpu")
    started_here = not ray.is_initialized()
    if started_here and todo.num_rows:
        ray.init(address=address)
    try:
        with _ManifestWriter(manifest) as record:
            record(_skipped_rows(skipped))
            if todo.num_rows:
                ray.data.DataContext.get_current().enable_progress_bars = progress
                summary.workers = _worker_count(
                    workers, cpus_per_worker, gpus_per_worker, todo.num_rows
                )
                dataset = _pipeline(todo, job, summary.workers, cpus_per_worker, gpus_per_worker)
                start = time.perf_counter()
                try:
                    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                        _count(summary, batch, on_failure)
                        record(batch)
                except ray.exceptions.ActorDiedError as error:
                    if "creation task" not in str(error):
                        raise
                    # the message ends with the exception the worker's constructor raised
                    reason = str(error).strip().splitlines()[-1]
                    raise WorkerStartError(f"a worker could not start: {reason}") from error
                summary.seconds = time.perf_counter() - start
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()
    return summary


def _worker_count(workers: int | None, cpus: int, gpus: float, images: int) -> int:
    import ray

    if workers is None:
        resources = ray.cluster_resources()
        kind, each = ("GPU", gpus) if gpus else ("CPU", cpus)
        workers = int(resources.get(kind, 0) // each)
        if workers < 1:
            raise ValueError(
                f"the Ray cluster has {resources.get(kind, 0):g} {kind}(s), fewer than one "
                f"worker needs ({each:g}); give --workers to wait for an autoscaler"
            )
    return min(workers, images)


def _pipeline(todo: pa.Table, job: EverythingJob, workers: int, cpus: int, gpus: float) -> Dataset:
    import ray
    from ray.data import ActorPoolStrategy

    blocks = max(workers * BLOCKS_PER_WORKER, math.ceil(todo.num_rows / MAX_IMAGES_PER_BLOCK))
    rows = math.ceil(todo.num_rows / min(blocks, todo.num_rows))
    dataset = ray.data.from_arrow([todo.slice(at, rows) for at in range(0, todo.num_rows, rows)])
    return dataset.map_batches(
        EverythingWorker,
        fn_constructor_args=(job, cpus),
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus,
        batch_size=1,
        batch_format="pyarrow",
    )


def _count(
    summary: RunSummary, batch: pa.Table, on_failure: Callable[[str, str], None] | None
) -> None:
    for row in batch.select(["image", "status", "error", "masks"]).to_pylist():
        if row["status"] == "done":
            summary.done += 1
            summary.masks += row["masks"]
        else:
            summary.failed.append((row["image"], row["error"]))
            if on_failure is not None:
                on_failure(row["image"], row["error"])


def _skipped_rows(plan: pa.Table) -> pa.Table:
    """Rows of the plan (image, image_id, output) as result rows with status "skipped"."""
    columns = {
        name: plan.column(name) if name in plan.column_names else pa.nulls(plan.num_rows, kind)
        for name, kind in zip(RESULT_SCHEMA.names, RESULT_SCHEMA.types)
    }
    columns["status"] = pa.array(["skipped"] * plan.num_rows, pa.string())
    return pa.table(columns, schema=RESULT_SCHEMA)


class _ManifestWriter:
    """Result rows -> one Parquet file at ``uri`` (nothing if None), written to a local
    temporary file and put in place, whole, when the run has finished."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self.writer = None

    def __enter__(self) -> Callable[[pa.Table], None]:
        if self.uri is None:
            return lambda batch: None
        import pyarrow.parquet as pq

        handle, self.local = tempfile.mkstemp(suffix=".parquet")
        os.close(handle)
        self.writer = pq.ParquetWriter(self.local, RESULT_SCHEMA)
        return self.writer.write_table

    def __exit__(self, kind: type | None, *_: object) -> None:
        if self.writer is None:
            return
        self.writer.close()
        try:
            if kind is None:
                put_atomically(self.local, self.uri)
        finally:
            os.remove(self.local)
