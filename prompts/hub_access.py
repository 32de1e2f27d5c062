"""Is the Hugging Face Hub reachable? Asked once per process, answered in seconds.

Without this, every download on an offline machine waits through huggingface_hub's five
retries (half a minute) before falling back. One short connection attempt decides instead; when
it fails, huggingface_hub is switched to offline mode for the rest of the process, so weights
already in its cache still load and nothing else waits on the network.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import huggingface_hub.constants

from sam.weights.checkpoint import HUB_REPOS

log = logging.getLogger("sam.app")

PROBE_TIMEOUT_S = 3.0


def can_connect(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout_s`` seconds
    (name lookup included: it runs in a thread, since the resolver takes no timeout)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(outcome and outcome[0])


class HubAccess:
    """Whether the Hub can be used, probed on first need and remembered."""

    def __init__(self, probe: Callable[[str], bool] = can_connect) -> None:
        self.probe = probe
        self._online: bool | None = None
        self._lock = threading.Lock()

    @property
    def offline(self) -> bool:
        """True when the Hub is not to be asked: HF_HUB_OFFLINE is set, or it did not answer
        the probe (then offline mode is switched on, once)."""
        with self._lock:
            if self._online is None:
                self._online = self._check()
            return not self._online

    def _check(self) -> bool:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            return False
        endpoint = huggingface_hub.constants.ENDPOINT
        if self.probe(endpoint):
            return True
        log.warning("%s is unreachable: working offline (cached weights only)", endpoint)
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"  # for libraries that read it themselves
        return False


def needs_hub(name: str) -> bool:
    """Whether loading the SAM model ``name`` may download from the Hub (Meta's models and
    repo ids; not the bundled demo model or a local file)."""
    if name in HUB_REPOS:
        return True
    return name.count("/") == 1 and not os.path.exists(name) and not name.startswith((".", "/"))
