"""The page's command line (prompts/page_args.py); app.main with it: tests/test_app.py."""

from __future__ import annotations

import shlex

import pytest

from prompts.page_args import parse_args


def test_command_line():
    args = parse_args([])
    assert (args.model, args.device, args.precision, args.share) == (None, None, "auto", False)
    assert not args.mcp and parse_args(["--mcp"]).mcp
    assert args.instant_masks and not parse_args(["--no-instant"]).instant_masks
    command = "--model m.safetensors --device cpu --precision fp32 --host 0.0.0.0 --port 9 --share"
    args = parse_args(shlex.split(command))
    assert (args.model, args.device, args.precision) == ("m.safetensors", "cpu", "fp32")
    assert (args.host, args.port, args.share) == ("0.0.0.0", 9, True)
    with pytest.raises(SystemExit):
        parse_args(["--precision", "int4"])
