"""``python -m sam everything --engine ray``: what the command line refuses before Ray starts.
Runs on Ray itself are in tests/test_distributed.py."""

from __future__ import annotations

import sys

import pytest

from sam.cli import main


def test_without_ray_the_engine_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    code = main(["everything", str(tmp_path), "--engine", "ray", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "pip install 'sam-toolkit[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "2"], "--workers: only with --engine ray"),
        (["--gpus-per-worker", "1", "--manifest", "m.parquet"], "--gpus-per-worker, --manifest"),
        (["--engine", "ray", "--save-masks"], "not available with --engine ray"),
        (["--engine", "ray", "--workers", "0"], "workers must be at least 1"),
    ],
)
def test_options_the_engine_cannot_honour_are_refused(tmp_path, capsys, options, message):
    (tmp_path / "a.png").write_bytes(b"x")  # never read: the command stops before
    code = main(["everything", str(tmp_path), "--out", str(tmp_path / "out"), *options])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_fail_before_ray_starts(tmp_path, capsys):
    code = main(["everything", str(tmp_path / "nope"), "--engine", "ray"])
    assert code == 2
    assert "no such file, folder, pattern or manifest" in capsys.readouterr().err
