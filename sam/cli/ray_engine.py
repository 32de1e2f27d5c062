"""``python -m sam everything --engine ray``: the same command on a Ray cluster (see
:mod:`sam.automatic.distributed` and docs/ray.md). Ray is an optional extra."""

from __future__ import annotations

import argparse
import sys

from sam.cli.common import EXIT_FAILED, EXIT_OK, UsageError, generator_settings

INSTALL_HINT = "pip install 'sam-toolkit[ray]', or pip install -r requirements-ray.txt"
# options that mean something only on Ray, with their defaults
RAY_OPTIONS = {
    "address": None,
    "workers": None,
    "cpus_per_worker": 1,
    "gpus_per_worker": 0.0,
    "manifest": None,
}


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the options of the Ray engine, on the ``everything`` parser."""
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: a Ray cluster, with the model loaded once per "
        f"worker; inputs may then be manifests and URIs such as s3://... (needs {INSTALL_HINT})",
    )
    ray = parser.add_argument_group("--engine ray")
    ray.add_argument(
        "--address",
        help="the Ray cluster: auto (started here with `ray start`), ray://HOST:10001 (Ray "
        "Client) or HOST:6379 (default: RAY_ADDRESS, else a new Ray on this machine)",
    )
    ray.add_argument(
        "--workers", type=int, help="model-holding workers (default: as many as fit the cluster)"
    )
    ray.add_argument(
        "--cpus-per-worker",
        type=int,
        default=1,
        help="CPUs each worker reserves, and its torch threads (default 1)",
    )
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="GPUs each worker reserves; 0.5 puts two workers on a GPU (default 0: CPU)",
    )
    ray.add_argument(
        "--manifest",
        help="also write a Parquet file of every image: status (done, skipped, failed), error, "
        "masks, started, seconds, worker",
    )


def check_engine_options(args: argparse.Namespace) -> None:
    """UsageError for options the chosen engine cannot honour."""
    if args.engine == "ray":
        if args.save_masks or args.save_overlay:
            raise UsageError("--save-masks and --save-overlay are not available with --engine ray")
        return
    given = [name for name, default in RAY_OPTIONS.items() if getattr(args, name) != default]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{options}: only with --engine ray")


def everything_on_ray(args: argparse.Namespace) -> int:
    """``everything`` on Ray: one SA-1B JSON per image in --out, a summary, a throughput line."""
    try:
        import ray  # noqa: F401

        from sam.automatic.distributed import (
            EverythingJob,
            WorkerStartError,
            segment_everything_on_ray,
        )
    except ImportError as error:
        raise UsageError(f"--engine ray needs Ray ({error}): {INSTALL_HINT}") from error

    job = EverythingJob(
        model=args.model,
        device=args.device,
        precision=args.precision,
        settings=generator_settings(args),
        first_id=args.first_id,
    )
    try:
        summary = segment_everything_on_ray(
            job,
            args.inputs,
            args.out,
            address=args.address,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            gpus_per_worker=args.gpus_per_worker,
            overwrite=args.overwrite,
            manifest=args.manifest,
            progress=not args.quiet,
            on_failure=lambda image, reason: print(f"error: {image}: {reason}", file=sys.stderr),
        )
    except (ValueError, WorkerStartError) as error:
        raise UsageError(str(error)) from error
    failed = len(summary.failed)
    print(f"{summary.done} image(s) done, {summary.skipped} skipped, {failed} failed; ", end="")
    print(f"results in {args.out}")
    if summary.workers:
        print(
            f"throughput: {summary.images_per_second:.2f} images/s, "
            f"{summary.masks_per_second:.1f} masks/s ({summary.masks} masks in "
            f"{summary.seconds:.1f} s on {summary.workers} worker(s))"
        )
    return EXIT_FAILED if failed else EXIT_OK
