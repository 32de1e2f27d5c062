"""Is the Hub reachable: one short probe per process, then offline mode (prompts/hub_access.py)."""

from __future__ import annotations

import socket
import time

import huggingface_hub.constants
import pytest

from prompts.hub_access import HubAccess, can_connect, needs_hub
from tests.page_fixtures import hub_state_kept


@pytest.fixture
def hub_constants(monkeypatch):
    """huggingface_hub's constants, online to begin with; restored after the test."""
    with hub_state_kept():
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield huggingface_hub.constants


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_hub_is_found_in_well_under_a_second(hub_constants, monkeypatch):
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    access = HubAccess()
    assert access.offline and access.offline
    assert time.monotonic() - start < 1.0
    assert hub_constants.HF_HUB_OFFLINE  # weights already cached still load; nothing waits


def test_the_probe_gives_up_after_its_timeout():
    start = time.monotonic()
    # 192.0.2.0/24 is reserved for documentation: packets to it go nowhere
    assert not can_connect("https://192.0.2.1", timeout_s=0.3)
    assert time.monotonic() - start < 1.5


def test_a_reachable_hub_is_asked_once(hub_constants):
    probes = []
    access = HubAccess(probe=lambda url: probes.append(url) or True)
    assert not access.offline and not access.offline
    assert probes == [hub_constants.ENDPOINT] and not hub_constants.HF_HUB_OFFLINE


def test_hf_hub_offline_means_no_probe(hub_constants, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    access = HubAccess(probe=lambda url: pytest.fail("probed"))
    assert access.offline


def test_which_models_need_the_hub(tmp_path):
    assert needs_hub("vit_b") and needs_hub("facebook/sam-vit-base")
    assert not needs_hub("demo") and not needs_hub(str(tmp_path / "model.safetensors"))
    assert not needs_hub("./weights/model.safetensors")
    assert needs_hub("sam2.1_tiny") and needs_hub("vit_h")
