"""The instant view in Chromium, on a page of its own (tests/instant_page.py) with the demo
model: the mask under the cursor, clicks decoded in the browser equal to the server path's
(:class:`prompts.session.Session`), and no request leaving localhost."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

from prompts.instant import ISOLATION_MIDDLEWARE, RUNTIME
from prompts.session import Session
from sam import Sam, SamPredictor, load_sam
from sam.io.masks import mask_iou
from sam.modeling.sam2 import Sam2, build_sam2
from sam.weights.random_weights import randomize_weights
from tests.instant_page import build_instant_page
from tests.test_app_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (install it with `make browser`)"
    ),
]
EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "shapes_7.png"
# not square and not the encoder's size, so that coordinates and masks are resized both ways
WIDTH, HEIGHT = 240, 180
# (x, y) in the 240x180 image: the blue ellipse, the dotted red shape, the grey background
BLUE, RED, BACKGROUND = (98, 95), (65, 63), (220, 20)
# what Sam.postprocess_masks reads of vit_b: the encoder's side (its low-res masks are 256)
VIT_B_FRAME = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))
HOVER_ALPHA = 110  # what instant.js draws the hovered mask with (points are opaque)
CURRENT_ALPHA = 140  # and the current mask


def example(width: int, height: int) -> np.ndarray:
    picture = Image.open(EXAMPLE).convert("RGB").resize((width, height), Image.BILINEAR)
    return np.array(picture)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return example(WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def model():
    return load_sam("demo", device="cpu")


@contextlib.contextmanager
def serve(model, image: np.ndarray, mask=None, prompts=None, isolated: bool = True):
    """The page (see tests/instant_page.py) served as app.py serves it: cross-origin isolated,
    unless not ``isolated``."""
    page, received = build_instant_page(SamPredictor(model), image, mask, prompts)
    isolation = {"middleware": ISOLATION_MIDDLEWARE} if isolated else {}
    _, url, _ = page.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, app_kwargs=isolation
    )
    try:
        yield url, received
    finally:
        page.close()


@pytest.fixture(scope="module")
def served(model, image):
    with serve(model, image) as url_and_received:
        yield url_and_received


@pytest.fixture
def browser_page(served):
    url, received = served
    yield from browse(url, received)


def browse(url: str, received: list):
    """The page, with every request that would leave this machine refused and recorded."""
    from playwright.sync_api import sync_playwright

    received.clear()
    left = []

    def only_local(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.route("**/*", only_local)
            page.goto(url)
            wait_ready(page, "foreground")
            yield page, received, left
        finally:
            browser.close()


@pytest.fixture
def server_session(model, image):
    """The server path on the same image: what the page does without instant mode."""
    session = Session(SamPredictor(model))
    session.set_image(image)
    return session


def wait_ready(page, mode: str) -> None:
    selector = f".sam-instant[data-state=ready][data-mode={mode}]"
    page.wait_for_selector(selector, state="attached", timeout=60_000)


def at(page, x: int, y: int, size=(WIDTH, HEIGHT)) -> tuple[float, float]:
    """The page position of the centre of pixel (x, y) of an image of ``size`` (W, H)."""
    box = page.locator(".sam-instant canvas").bounding_box()
    width, height = size
    return (
        box["x"] + (x + 0.5) * box["width"] / width,
        box["y"] + (y + 0.5) * box["height"] / height,
    )


def counter(page, name: str) -> int:
    return int(page.evaluate(f"document.querySelector('.sam-instant').dataset.{name} || 0"))


def hover(page, x: int, y: int) -> np.ndarray:
    """Move to pixel (x, y); the canvas's alpha (H, W) once the mask there is drawn."""
    before = counter(page, "hovers")
    page.mouse.move(*at(page, x, y))
    page.wait_for_function(
        f"Number(document.querySelector('.sam-instant').dataset.hovers || 0) > {before}",
        timeout=30_000,
    )
    return canvas_alpha(page)


def canvas_alpha(page) -> np.ndarray:
    alpha = page.evaluate(
        """() => {
            const canvas = document.querySelector('.sam-instant canvas');
            const { width, height } = canvas;
            const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
            return Array.from(data.filter((_, i) => i % 4 === 3));
        }"""
    )
    return np.array(alpha, dtype=np.uint8).reshape(HEIGHT, WIDTH)


def click(page, received: list, x: int, y: int, shift: bool = False, size=(WIDTH, HEIGHT)):
    """Click pixel (x, y); what the browser sent the server for it."""
    count = len(received)
    page.mouse.move(*at(page, x, y, size))
    modifiers = ["Shift"] if shift else []
    position = _local(page, x, y, size)
    page.locator(".sam-instant canvas").click(position=position, modifiers=modifiers)
    deadline = time.monotonic() + 30
    while len(received) == count:
        assert time.monotonic() < deadline, "the browser's mask never reached the server"
        page.wait_for_timeout(50)  # lets Playwright answer the routed requests meanwhile
    return received[-1]


def _local(page, x: int, y: int, size) -> dict:
    box = page.locator(".sam-instant canvas").bounding_box()
    page_x, page_y = at(page, x, y, size)
    return {"x": page_x - box["x"], "y": page_y - box["y"]}


def assert_same_candidates(browser_click, session: Session, min_iou: float = 0.99) -> None:
    assert len(browser_click.candidates) == len(session.candidates) == 3
    assert session.candidates[0].mask.any()  # the comparison is not of empty masks
    for ours, server in zip(browser_click.candidates, session.candidates):
        assert ours.output_index == server.output_index
        assert abs(ours.score - server.score) < 1e-4
        assert mask_iou(ours.mask, server.mask) >= min_iou


def test_hover_shows_the_mask_under_the_cursor(browser_page, server_session):
    page, _, _ = browser_page
    for x, y in (BLUE, RED):
        alpha = hover(page, x, y)
        drawn = alpha == HOVER_ALPHA
        server_session.clear()
        server_session.click(x, y, "foreground")
        expected = server_session.candidates[0].mask
        assert expected.sum() > 50
        unmarked = (alpha == 0) | drawn  # the point's marker hides what is under it
        assert mask_iou(drawn[unmarked], expected[unmarked]) >= 0.99


def threads(page) -> tuple[bool, int, int]:
    """Whether the page is cross-origin isolated, the threads the decoder runs on, and the
    browser's cores."""
    return page.evaluate(
        """() => [self.crossOriginIsolated,
                  Number(document.querySelector('.sam-instant').dataset.threads),
                  navigator.hardwareConcurrency]"""
    )


def test_clicks_give_the_servers_masks_offline(browser_page, server_session):
    page, received, left = browser_page
    isolated, count, cores = threads(page)
    assert isolated and count == min(cores, 4)
    for (x, y), shift, mode in (
        (BLUE, False, "foreground"),
        (RED, False, "foreground"),
        (BACKGROUND, True, "background"),
    ):
        sent = click(page, received, x, y, shift)
        server_session.click(x, y, mode)
        assert (sent.x, sent.y, sent.mode) == (x, y, mode)
        assert_same_candidates(sent, server_session)
    np.testing.assert_array_equal(sent.labels, [1, 1, 0])
    assert left == []  # nothing was asked of any other machine


def test_on_one_thread_where_the_page_is_not_isolated(model, image, server_session):
    """Served without the isolation headers (a page inside a site's frame that is not isolated),
    the decoder runs on one thread and gives the same masks."""
    with serve(model, image, isolated=False) as (url, received):
        for page, _, _ in browse(url, received):
            assert threads(page)[:2] == [False, 1]
            sent = click(page, received, *BLUE)
            server_session.click(*BLUE, "foreground")
            assert_same_candidates(sent, server_session)


def test_box_from_two_corners(browser_page, server_session):
    page, received, _ = browser_page
    page.get_by_label("box").check()
    wait_ready(page, "box")
    first = click(page, received, 60, 50)
    server_session.click(60, 50, "box")
    assert first.candidates == [] and server_session.candidates == []  # one corner: no prompt
    alpha = hover(page, 140, 140)  # the box so far, from the first corner to the cursor
    assert (alpha == HOVER_ALPHA).any()
    second = click(page, received, 140, 140)
    server_session.click(140, 140, "box")
    assert second.corners == [(60.0, 50.0), (140.0, 140.0)]
    assert_same_candidates(second, server_session)


def test_sam2_clicks_and_a_box_give_the_servers_masks(image):
    """SAM 2 (the test size, random weights) in the view: its three features loaded, prompts
    in its square frame (a box's corners ahead of the points), masks resized straight to the
    image; each click's candidates are the server path's."""
    model = randomize_weights(build_sam2("sam2_test"), seed=0).eval()
    session = Session(SamPredictor(model))
    session.set_image(image)
    with serve(model, image) as (url, received):
        for page, _, left in browse(url, received):
            for x, y in (BLUE, RED):
                sent = click(page, received, x, y)
                session.click(x, y, "foreground")
                assert_same_candidates(sent, session)
            assert left == []
    # the same object goes on with a box: the page starts from the server's prompts
    with serve(model, image, prompts=session.prompts) as (url, received):
        for page, _, _ in browse(url, received):
            page.get_by_label("box").check()
            wait_ready(page, "box")
            for corner in ((60, 50), (140, 140)):
                sent = click(page, received, *corner)
                session.click(*corner, "box")
            assert len(sent.points) == 2 and len(sent.corners) == 2
            assert_same_candidates(sent, session)


def test_large_image_is_decoded_at_a_view(model):
    """Beyond VIEW_MAX_SIDE the browser decodes at a smaller view; the masks it sends back,
    resized to the image, stay close to the server's full-size ones."""
    size = (1600, 1200)
    image = example(*size)
    session = Session(SamPredictor(model))
    session.set_image(image)
    scale = size[0] / WIDTH
    with serve(model, image) as (url, received):
        for page, _, left in browse(url, received):
            assert page.evaluate("document.querySelector('.sam-instant canvas').width") == 1024
            for (x, y), mode in ((BLUE, "foreground"), (RED, "foreground")):
                x, y = round(x * scale), round(y * scale)
                sent = click(page, received, x, y, size=size)
                # a page pixel covers several image pixels here: the same click is where it fell
                assert abs(sent.x - x) <= 3 and abs(sent.y - y) <= 3
                session.click(sent.x, sent.y, mode)
                assert sent.candidates[0].mask.shape == image.shape[:2]
                assert_same_candidates(sent, session, min_iou=0.97)
            assert left == []


def test_the_current_mask_is_drawn_from_the_server(model, image):
    """An object being refined arrives with its mask (RLE), drawn before any hover."""
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[30:120, 50:200] = True
    mask[60:90, 100:150] = False
    with serve(model, image, mask) as (url, received):
        for page, _, _ in browse(url, received):
            np.testing.assert_array_equal(canvas_alpha(page) == CURRENT_ALPHA, mask)


@pytest.mark.parametrize("kind", ["sam", "sam2"])
@pytest.mark.parametrize(
    ("image_size", "view"),
    [((180, 240), (180, 240)), ((1200, 1600), (768, 1024)), ((333, 517), (333, 517))],
)
def test_low_res_masks_resize_as_the_servers(kind, image_size, view):
    """masks.js's lowResMask equals the model's postprocess_masks thresholded, bit for bit, on
    logits with an object's edge and with noise everywhere: SAM's (up to its square frame, the
    padding cropped, down to the view) and SAM 2's (straight to the view: at 180 x 240 a
    downscale)."""
    from playwright.sync_api import sync_playwright

    from sam.modeling.transforms import ResizeLongestSide

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:256, :256]
    edge = 8 - 8 * (((rows - 100) / 60) ** 2 + ((cols - 130) / 80) ** 2)
    noise = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 256, 256), 5, 1, 2)[0, 0]
    if kind == "sam":  # as prompts.instant.instant_value describes them
        frame, resized = (1024, 1024), ResizeLongestSide.get_preprocess_shape(*image_size, 1024)
    else:
        frame = resized = view
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_script_tag(content=(RUNTIME / "masks.js").read_text())
            for logits in (edge + rng.normal(0, 0.5, edge.shape), 3 * noise.numpy()):
                logits = torch.tensor(logits, dtype=torch.float32)
                bits = page.evaluate(
                    """([logits, frame, resized, view]) => Array.from(lowResMask(
                        Float32Array.from(logits), maskResizer(256, frame, resized, view)))""",
                    [logits.flatten().tolist(), list(frame), list(resized), list(view)],
                )
                if kind == "sam":
                    expected = Sam.postprocess_masks(VIT_B_FRAME, logits[None, None], resized, view)
                else:
                    expected = Sam2.postprocess_masks(None, logits[None, None], view, view)
                expected = expected[0, 0].numpy() > 0
                assert 0 < expected.sum() < expected.size
                np.testing.assert_array_equal(np.array(bits, bool).reshape(view), expected)
        finally:
            browser.close()


def test_a_browser_that_cannot_run_it_says_so(served):
    """Without the runtime (here: its WebAssembly refused) the view says why and is off; the
    page then uses the server path."""
    from playwright.sync_api import sync_playwright

    url, _ = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*.wasm.gz", lambda route: route.abort())
            page.goto(url)
            page.wait_for_selector(".sam-instant[data-state=failed]", state="attached")
            note = page.locator(".sam-instant-note").inner_text()
            assert note.startswith("Instant mode is off:")
        finally:
            browser.close()
