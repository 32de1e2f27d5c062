"""Peak memory of a fresh process, as the benchmarks report it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh_process_peak_mb(statement: str) -> float:
    """Peak resident memory (VmHWM, MB) of a fresh Python process that runs ``statement`` from
    the repository root."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
    code = (
        f"import sys; sys.path.insert(0, '.'); {statement}; "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return int(out.stdout.split()[-1]) / 1024
