"""Instant prompts in Chromium: the time from a click (and from a hover move) to the mask drawn,
the page's server path against the decoder in the browser, same model, image and clicks.

    python benchmarks/bench_instant.py [--model demo|vit_b|sam2.1_tiny|PATH] [--image FILE]
                                       [--clicks 15] [--hovers 30] [--one-thread]

- server path: the page (app.py), an image uploaded, then foreground clicks; from the click
  event to the page's picture replaced and decoded (the round trip, the server's decoding and
  rendering, the image's encoding and loading);
- instant mode: the instant view (prompts/instant.py) on its page (tests/instant_page.py);
  from the mouse move, or the click, to the mask painted on its canvas; clicks both right
  after moving there (waiting for the hover's decoding, which the click then reuses) and
  where the hover mask is already drawn (a person resting the cursor before clicking).

vit_b and sam2.1_tiny run with random weights (no checkpoint is downloaded): they cost what
trained ones do.
The instant page is served cross-origin isolated as app.py serves it (COOP and COEP headers:
prompts.instant.ISOLATION_MIDDLEWARE), where onnxruntime-web runs on as many threads as the
browser has cores (up to 4); with --one-thread it is not, and runs on one (a page embedded in a
site that is not isolated).
Times are medians over the clicks, measured inside the page (event time stamp to the next
animation frame after the drawing). Target: instant mode at most 50 ms, at least 4x faster than
the server path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from prompts.instant import ISOLATION_MIDDLEWARE  # noqa: E402
from sam import SamPredictor, build_sam, build_sam2, load_sam, save_checkpoint  # noqa: E402
from sam.weights.random_weights import randomize_weights  # noqa: E402
from tests.instant_page import build_instant_page  # noqa: E402
from tests.test_app_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# In-page stopwatch: the latest click/mousemove's time stamp, and a list of "drawn" times, each
# pushed on the animation frame after the watched element changed.
STOPWATCH = """([selector, attribute]) => {
    window.benchTimes = [];
    for (const kind of ['click', 'mousemove']) {
        document.addEventListener(kind, (e) => { window.benchStart = e.timeStamp; }, true);
    }
    const target = document.querySelector(selector);
    new MutationObserver(async (changes) => {
        const start = window.benchStart;
        const img = changes[0].target;
        if (img.tagName === 'IMG') await img.decode().catch(() => {});
        requestAnimationFrame(() => window.benchTimes.push(performance.now() - start));
    }).observe(target, { subtree: true, attributes: true, attributeFilter: [attribute] });
}"""


RUN_MS = "Number(document.querySelector('.sam-instant').dataset.runMs)"


RANDOM_MODELS = {"vit_b": build_sam, "sam2.1_tiny": build_sam2}


def model_path(name: str, folder: Path) -> str:
    if name not in RANDOM_MODELS:
        return name
    model = randomize_weights(RANDOM_MODELS[name](name), seed=0)
    return str(save_checkpoint(model, folder / f"{name}_random.safetensors"))


def positions(count: int, width: int, height: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    xs = rng.integers(width // 8, width - width // 8, count)
    ys = rng.integers(height // 8, height - height // 8, count)
    return list(zip(xs.tolist(), ys.tolist()))


def page_point(page, selector: str, x: int, y: int, size: tuple[int, int]) -> tuple[float, float]:
    box = page.locator(selector).first.bounding_box()
    width, height = size
    return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box[
        "height"
    ] / height


def timed_actions(page, act, points, runs: list | None = None, settle: float = 0.05) -> list:
    """Do ``act(x, y)`` at each point, waiting for its drawing; the milliseconds of each, and
    in ``runs`` those of the decoder's run the instant view reports (NaN if it reports none)."""
    times = []
    for x, y in points:
        before = page.evaluate("window.benchTimes.length")
        act(x, y)
        page.wait_for_function(f"window.benchTimes.length > {before}", timeout=60_000)
        times.append(page.evaluate("window.benchTimes[window.benchTimes.length - 1]"))
        if runs is not None:
            runs.append(page.evaluate(RUN_MS))
        time.sleep(settle)  # let the page go idle between actions
    return times


def server_path(browser, url: str, image_file: Path, size, points) -> list[float]:
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    page.locator("#image input[type=file]").set_input_files(str(image_file))
    page.locator("#image img").first.wait_for(timeout=120_000)
    time.sleep(2)  # the image encoded and shown
    page.evaluate(STOPWATCH, ["#image", "src"])

    def click(x, y):
        page.mouse.click(*page_point(page, "#image img", x, y, size))

    times = timed_actions(page, click, points)
    page.close()
    return times


def open_instant(browser, url: str):
    """The instant page, loaded; and the seconds from navigation to ready."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(".sam-instant[data-state=ready]", state="attached", timeout=120_000)
    return page, time.perf_counter() - started


def threads(page) -> str:
    """How many threads the page's onnxruntime-web runs on, and whether the page is isolated."""
    count = page.evaluate("document.querySelector('.sam-instant').dataset.threads || '1'")
    isolated = page.evaluate("self.crossOriginIsolated")
    return f"{count} thread(s), {'' if isolated else 'not '}cross-origin isolated"


def instant_mode(browser, url: str, size, points, hovers) -> dict[str, list[float]]:
    """Milliseconds to the mask drawn: for hover moves, for clicks right after the move there
    (the hover's decoding is still running), and for clicks where the hover mask is already
    drawn (the click reuses that decoding)."""
    canvas = ".sam-instant canvas"
    times = {}
    page, load_s = open_instant(browser, url)
    times["load"] = [1000 * load_s]
    print(f"instant mode: {threads(page)}")
    page.evaluate(STOPWATCH, [".sam-instant", "data-hovers"])

    def move(x, y):
        page.mouse.move(*page_point(page, canvas, x, y, size))

    times["hover decoder"], times["click decoder"] = [], []
    times["hover"] = timed_actions(page, move, hovers, times["hover decoder"])
    page.evaluate(STOPWATCH, [".sam-instant", "data-clicks"])

    def click(x, y):
        page.mouse.click(*page_point(page, canvas, x, y, size))

    times["click"] = timed_actions(page, click, points, times["click decoder"])
    page.close()

    page, _ = open_instant(browser, url)  # the same clicks again from a fresh start
    page.evaluate(STOPWATCH, [".sam-instant", "data-clicks"])

    def rest_then_click(x, y):
        hovers_before = int(
            page.evaluate("document.querySelector('.sam-instant').dataset.hovers || 0")
        )
        move(x, y)
        page.wait_for_function(
            f"Number(document.querySelector('.sam-instant').dataset.hovers || 0) > {hovers_before}",
            timeout=60_000,
        )
        page.mouse.down()
        page.mouse.up()

    times["rested click"] = timed_actions(page, rest_then_click, points)
    page.close()
    return times


def summary(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(
        f"{name}: median {median:.1f} ms "
        f"(min {min(times):.1f}, max {max(times):.1f}, n={len(times)})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="demo", help="demo, vit_b, sam2.1_tiny (random weights) or a path"
    )
    parser.add_argument("--image", default=str(ROOT / "assets" / "examples" / "coffee.jpg"))
    parser.add_argument("--clicks", type=int, default=15)
    parser.add_argument("--hovers", type=int, default=30)
    parser.add_argument(
        "--one-thread",
        action="store_true",
        help="serve the instant page without the COOP and COEP headers (one thread)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench_instant_"))
    model = model_path(args.model, folder)
    image = np.array(Image.open(args.image).convert("RGB"))
    size = (image.shape[1], image.shape[0])
    points = positions(args.clicks, *size)
    hovers = positions(args.hovers + args.clicks, *size)[args.clicks :]

    server_page = app.build_demo(model, device="cpu", instant_masks=False)  # the server path
    _, server_url, _ = server_page.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True
    )
    instant_page, _ = build_instant_page(SamPredictor(load_sam(model, device="cpu")), image)
    isolation = {} if args.one_thread else {"middleware": ISOLATION_MIDDLEWARE}
    _, instant_url, _ = instant_page.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, app_kwargs=isolation
    )
    print(f"model {args.model}, image {Path(args.image).name} {size[0]}x{size[1]}")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            server = server_path(browser, server_url, Path(args.image), size, points)
            instant = instant_mode(browser, instant_url, size, points, hovers)
            browser.close()
    finally:
        server_page.close()
        instant_page.close()
    print(f"instant mode loaded (runtime, decoder, embedding) in {instant['load'][0] / 1000:.2f} s")
    server_median = summary("server path, click to picture", server)
    for name in ("hover", "click"):
        if not np.isnan(instant[f"{name} decoder"]).any():  # the view reports its runs
            label = f"instant mode, the decoder's run alone (onnxruntime-web), per {name}"
            summary(label, instant[f"{name} decoder"])
    for name, label in (
        ("hover", "hover move to mask"),
        ("click", "click right after moving there, to mask"),
        ("rested click", "click where the hover mask is drawn, to mask"),
    ):
        median = summary(f"instant mode, {label}", instant[name])
        ratio = server_median / median
        met = median <= 50 and ratio >= 4
        print(
            f"  {ratio:.1f}x faster than the server path; target (<= 50 ms, >= 4x) "
            f"{'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
