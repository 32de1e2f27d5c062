"""The page in Chromium, as a person meets it: which model serves (menu and notice, offline);
one clickable image; three ranked candidates and a toggle that shows each on the image; object
after object, each kept with its colour and label, selectable and exported; text, text plus a
click, the text examples; bad files (and files over the size limit, refused in the browser)
answered once, in the app's words, with nothing lost; segment everything; the downloads; instant
mode, on by default, and the next image uploaded or dropped beside its view. Screenshots go to
artifacts/. Most tests use the server path (pages built with instant masks off)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from prompts.hub_access import HubAccess
from prompts.model_shelf import ModelShelf
from prompts.page_handlers import Handlers
from sam import CheckpointError, load_sam, save_checkpoint
from tests.browser_page import (
    ARTIFACTS,
    THREE_OBJECTS,
    WAIT_MS,
    choose,
    choose_file,
    click_and_wait,
    coco_masks,
    download,
    drop_file,
    expect_one_warning,
    inside,
    iou,
    paste_file,
    picture,
    picture_src,
    ranked_candidates,
    save_screenshot,
    scene_truth,
    segment_objects,
    shown_image,
    upload,
    wait_for_new_picture,
)
from tests.page_fixtures import hub_state_kept

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (install it with `make browser`)"
    ),
]


def serve(demo):
    options = app.launch_options(prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, **options)
    return url


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, tiny_sam):
    """The page with the tiny random SAM (fast; its masks mean nothing), instant masks off."""
    checkpoint = save_checkpoint(tiny_sam, tmp_path_factory.mktemp("browser") / "tiny.safetensors")
    demo = app.build_demo(str(checkpoint), device="cpu", instant_masks=False)
    try:
        yield serve(demo)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def demo_model():
    return load_sam("demo", device="cpu")


def offline_page(demo_model, instant_masks: bool):
    """The page as `make app` shows it offline: vit_b asked for, the Hub unreachable, the
    bundled demo model and its CLIP serving; its URL."""

    def offline(name, **_):
        if name != "demo":
            raise CheckpointError(f"{name} is not in the Hub cache")
        return demo_model

    shelf = ModelShelf(device="cpu", loader=offline)
    shelf.hub = HubAccess(probe=lambda url: False)
    with hub_state_kept():
        demo = app.build_demo(handlers=Handlers(shelf, "vit_b"), instant_masks=instant_masks)
        try:
            yield serve(demo)
        finally:
            demo.close()


@pytest.fixture(scope="module")
def demo_page_url(demo_model):
    """The offline page, instant masks off (`python app.py --no-instant`)."""
    yield from offline_page(demo_model, instant_masks=False)


@pytest.fixture(scope="module")
def instant_page_url(demo_model):
    """The offline page as it starts by default: instant masks on."""
    yield from offline_page(demo_model, instant_masks=True)


def open_page(url: str, height: int = 1100, instant: bool = False):
    """The page in Chromium, checked to start with instant mode on or off (off: clicks go to
    the server's image)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": 1400, "height": height}, accept_downloads=True
            )
            page.goto(url)
            expect(page.locator("#instant-mode input")).to_be_checked(checked=instant)
            yield page
        finally:
            browser.close()


@pytest.fixture
def browser_page(page_url):
    yield from open_page(page_url)


@pytest.fixture
def demo_page(demo_page_url):
    yield from open_page(demo_page_url)


@pytest.fixture
def instant_page(instant_page_url):
    yield from open_page(instant_page_url, instant=True)


# -- tests ---------------------------------------------------------------------------------------


def test_offline_the_menu_and_the_notice_say_the_demo_model_serves(demo_page):
    from playwright.sync_api import expect

    page = demo_page
    notice = page.locator("#model-notice")
    expect(notice).to_contain_text("Serving the bundled demo model", timeout=WAIT_MS)
    expect(notice).to_contain_text("because this machine is offline")
    assert notice.locator("a").all_inner_texts() == ["https://huggingface.co/facebook/sam-vit-base"]
    assert "Error" not in notice.inner_text()
    menu = page.locator("#model input")
    expect(menu).to_have_value("demo")
    save_screenshot(page, "app_browser_offline.png")
    page.locator("#model input").click()
    page.get_by_role("option", name="vit_l").click()
    expect_one_warning(page, "vit_l could not be loaded")
    expect(notice.locator("a")).to_have_text("https://huggingface.co/facebook/sam-vit-large")
    expect(menu).to_have_value("demo")


def test_one_clickable_image_three_ranked_candidates_and_the_toggle(browser_page, tmp_path):
    page = browser_page
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(
        photo
    )
    upload(page, photo)
    shown_image(page)
    assert page.locator("#image img").count() == 1 and page.locator("#canvas").count() == 0
    limits = page.locator(".prose.limits").inner_text()
    assert "25 MB" in limits and "40 megapixels" in limits
    click_and_wait(page, 80, 60)
    ranked_candidates(page)
    first = picture(page)
    before = picture_src(page)
    page.locator("#candidates label").nth(2).click()
    wait_for_new_picture(page, before)
    assert picture(page).shape == first.shape == (120, 160, 3)
    save_screenshot(page, "app_browser_click.png")


TOO_BIG = "'big.png' is 26 MB; the limit is 25 MB: pick a smaller or resized image."


def over_the_limit(folder: Path) -> Path:
    """A 'PNG' of 26 MB, over the page's 25 MB limit."""
    path = folder / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(26 * 2**20 - 8))
    return path


def test_bad_files_get_one_message_each_and_lose_nothing(browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(photo)
    upload(page, photo)
    click_and_wait(page, 40, 40)
    ranked_candidates(page)
    kept = picture(page)
    (tmp_path / "notanimage.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")
    bad = [
        ("notanimage.png", "Could not read 'notanimage.png' as an image: use a PNG, JPEG or WebP"),
        ("dot.png", "1x1 is too small (at least 2 pixels a side)"),
        ("bomb.png", "'bomb.png' has more than 40,000,000 pixels: scale it down first"),
    ]
    for name, message in bad:
        upload(page, tmp_path / name, ready=False)
        shot = "app_browser_bad_file.png" if name == "notanimage.png" else None
        expect_one_warning(page, message, shot)
        page.wait_for_function(
            "el => el.complete && el.naturalWidth === 160", arg=shown_image(page).element_handle()
        )
        np.testing.assert_allclose(picture(page), kept, atol=12)  # the same picture (JPEG)
        ranked_candidates(page)
    big = over_the_limit(tmp_path)
    shown = picture_src(page)
    upload(page, big, ready=False)  # stopped in the browser: the app's message, not Gradio's
    expect_one_warning(page, TOO_BIG, "app_browser_too_big.png")
    drop_file(page, "#image img", big.name, size=big.stat().st_size)  # or dragged onto it
    expect_one_warning(page, TOO_BIG)
    assert page.get_by_text("exceed the maximum allowed size").count() == 0
    assert picture_src(page) == shown  # the picture was never emptied
    ranked_candidates(page)
    expect(page.locator("#object-list li")).to_have_count(1)
    # Should Gradio refuse one itself (here: the page's check switched off), the image it empties
    # is put back.
    page.evaluate("window.samUploadGuard.props = { value: { limit: Infinity, drops: {} } }")
    upload(page, big, ready=False)
    expect(page.get_by_text("exceed the maximum allowed size")).to_be_visible(timeout=WAIT_MS)
    shown_image(page)
    np.testing.assert_allclose(picture(page), kept, atol=12)
    ranked_candidates(page)
    expect(page.locator("#object-list li")).to_have_count(1)


def test_object_after_object_each_kept_selectable_and_exported(demo_page, tmp_path):
    from playwright.sync_api import expect

    page = demo_page
    _, truths = scene_truth(7)
    upload(page, EXAMPLES / "shapes_7.png")
    shown_image(page)
    segment_objects(page, truths, THREE_OBJECTS)
    listing = page.locator("#object-list li")
    expect(listing).to_have_count(3, timeout=WAIT_MS)
    swatches = [
        s.evaluate("el => getComputedStyle(el).backgroundColor")
        for s in page.locator("#object-list .swatch").all()
    ]
    assert len(set(swatches)) == 3
    save_screenshot(page, "app_browser_objects.png")
    page.get_by_label("#1 red ellipse", exact=True).check()  # refine the first one again
    expect(page.locator("#object-list li.active")).to_contain_text("red ellipse")
    expect(page.get_by_label("Label")).to_have_value("red ellipse")
    masks = coco_masks(download(page, tmp_path, "annotations_coco.json"))
    assert set(masks) == set(THREE_OBJECTS)
    for caption, mask in masks.items():
        assert iou(mask, truths[caption]) > 0.7, caption
    files = page.locator("#downloads a[download]")
    expect(files).to_have_count(3)  # COCO, PNG masks, SA-1B: every one visible
    box = page.locator("#downloads").bounding_box()
    for link in files.all():
        link.scroll_into_view_if_needed()
        assert link.is_visible()
        inner = link.bounding_box()
        assert (
            box["y"] - 1 <= inner["y"]
            and inner["y"] + inner["height"] <= box["y"] + box["height"] + 1
        )


def test_text_then_a_click_on_a_second_object_extends_the_mask(demo_page, tmp_path):
    from playwright.sync_api import expect

    page = demo_page
    _, truths = scene_truth(7)
    page.locator("#text-examples tr", has_text=re.compile(r"^\s*red ellipse\s*$")).click()
    expect(page.locator("#status")).to_contain_text('Found "red ellipse"', timeout=WAIT_MS)
    ranked_candidates(page, clip=True)
    click_and_wait(page, *inside(truths["purple striped ellipse"]))
    expect(page.locator("#status")).to_contain_text('Found "red ellipse"')
    ranked_candidates(page, clip=True)
    save_screenshot(page, "app_browser_text_click.png")
    (mask,) = coco_masks(download(page, tmp_path, "annotations_coco.json")).values()
    assert iou(mask, truths["red ellipse"] | truths["purple striped ellipse"]) > 0.8


def test_a_long_text_is_quoted_short(demo_page):
    from playwright.sync_api import expect

    page = demo_page
    upload(page, EXAMPLES / "shapes_3.png")
    shown_image(page)
    placeholder = page.locator("#text-prompt textarea").get_attribute("placeholder")
    assert '"purple striped ellipse"' in placeholder
    page.locator("#text-prompt textarea").fill("blue dotted diamond " * 500)
    page.locator("#text-prompt textarea").press("Enter")
    status = page.locator("#status")
    expect(status).to_contain_text("…", timeout=WAIT_MS)
    assert len(status.inner_text()) < 200


def test_segment_everything_leaves_the_image_visible(demo_page):
    from playwright.sync_api import expect

    page = demo_page
    image, _ = scene_truth(3)
    upload(page, EXAMPLES / "shapes_3.png")
    shown_image(page)
    page.get_by_role("button", name="Segment everything").click()
    expect(page.locator("#status")).to_contain_text(
        re.compile(r"Segment everything found [1-9]\d* masks"), timeout=WAIT_MS
    )
    overlay = page.locator("#everything img").first
    expect(overlay).to_be_visible(timeout=WAIT_MS)
    src = overlay.get_attribute("src")
    shown = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))
    # translucent: the scene's own pattern (its edges) still shows under the masks
    edges = np.abs(np.diff(image.astype(float).mean(axis=2), axis=1)) > 40
    shown_edges = np.abs(np.diff(shown.astype(float).mean(axis=2), axis=1)) > 20
    assert (edges & shown_edges).sum() / edges.sum() > 0.6
    save_screenshot(page, "app_browser_everything.png")


def test_box_by_two_clicks_and_a_brush_stroke(demo_page, tmp_path):
    from playwright.sync_api import expect

    page = demo_page
    _, truths = scene_truth(7)
    ellipse = truths["purple striped ellipse"]
    upload(page, EXAMPLES / "shapes_7.png")
    shown_image(page)
    choose(page, "Box (two clicks)")
    ys, xs = np.nonzero(ellipse)
    click_and_wait(page, xs.min() - 4, ys.min() - 4)  # the first corner is drawn
    expect(page.locator("#candidates label")).to_have_count(0)
    click_and_wait(page, xs.max() + 4, ys.max() + 4)
    ranked_candidates(page)
    (mask,) = coco_masks(download(page, tmp_path, "annotations_coco.json")).values()
    assert iou(mask, ellipse) > 0.8
    page.get_by_role("button", name="New object").click()
    page.get_by_role("tab", name="Brush").click()
    drawing = page.locator("#brush canvas").first
    drawing.wait_for(timeout=WAIT_MS)
    for _ in range(3):  # the editor may receive its picture after a first stroke: draw again
        box = drawing.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 20, y - 10)
        page.mouse.down()
        for step in range(20):
            page.mouse.move(x - 20 + 2 * step, y - 10 + step)
        page.mouse.up()
        page.get_by_role("button", name="Segment from brush").click()
        try:
            expect(page.locator("#candidates label")).to_have_count(3, timeout=10_000)
            break
        except AssertionError:
            continue
    ranked_candidates(page)
    save_screenshot(page, "app_browser_brush.png")


def test_docs_screenshot(demo_page):
    """The README's picture: three objects on a shapes scene, the last being refined."""
    from playwright.sync_api import expect

    page = demo_page
    _, truths = scene_truth(7)
    upload(page, EXAMPLES / "shapes_7.png")
    shown_image(page)
    segment_objects(page, truths, THREE_OBJECTS)
    expect(page.locator("#object-list li")).to_have_count(3, timeout=WAIT_MS)
    ranked_candidates(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app_browser_docs.png"), full_page=False)


def instant_view(page):
    """The instant view, once ready."""
    view = page.locator("#instant .sam-instant[data-state=ready]")
    view.wait_for(timeout=WAIT_MS)
    return view


def click_view(page, mask: np.ndarray) -> None:
    """Click on the instant view inside ``mask`` (H, W) and wait for the server's candidates."""
    canvas = instant_view(page).locator("canvas")
    box = canvas.bounding_box()
    height, width = mask.shape
    x, y = inside(mask)
    canvas.click(
        position={"x": (x + 0.5) * box["width"] / width, "y": (y + 0.5) * box["height"] / height}
    )
    ranked_candidates(page)


def view_picture(page) -> np.ndarray:
    """What the instant view shows, as (H, W, 3) uint8."""
    src = instant_view(page).locator("img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def view_pixels(page) -> list[int]:
    """The instant view's canvas (the prompts and the mask drawn), as RGBA bytes."""
    return page.evaluate(
        """() => {
            const canvas = document.querySelector('#instant canvas');
            const { width, height } = canvas;
            return Array.from(canvas.getContext('2d').getImageData(0, 0, width, height).data);
        }"""
    )


def test_instant_mode_is_on_by_default_and_clicks_are_decoded_in_the_browser(
    instant_page, tmp_path
):
    """Instant mode (on when the page opens): the view replaces the server's image, a click on
    a shape is decoded in the browser and replayed on the server, whose mask is downloaded."""
    from playwright.sync_api import expect

    page = instant_page
    _, truths = scene_truth(7)
    ellipse = truths["purple striped ellipse"]
    expect(page.locator("#upload-another")).to_be_hidden()  # gr.Image's upload box serves
    upload(page, EXAMPLES / "shapes_7.png")
    view = instant_view(page)
    expect(page.locator("#image")).to_be_hidden()
    expect(page.get_by_role("button", name="Upload another image")).to_be_visible()
    # app.launch_options' headers isolate the page: the decoder runs on the browser's cores
    cores = page.evaluate("self.crossOriginIsolated && Math.min(navigator.hardwareConcurrency, 4)")
    assert cores and view.get_attribute("data-threads") == str(cores)
    click_view(page, ellipse)
    save_screenshot(page, "app_browser_instant.png")
    (mask,) = coco_masks(download(page, tmp_path, "annotations_coco.json")).values()
    assert iou(mask, ellipse) >= 0.8


def test_instant_mode_takes_the_next_image_from_its_button_a_drop_or_a_paste(instant_page):
    """With the view shown, "Upload another image" (or a file dropped on the view, or pasted)
    brings the next image into it, ready for clicks; the objects of the first stay listed."""
    from playwright.sync_api import expect

    page = instant_page
    first, truths = scene_truth(7)
    second, second_truths = scene_truth(3)
    upload(page, EXAMPLES / "shapes_7.png")
    click_view(page, truths["purple striped ellipse"])
    assert np.abs(view_picture(page).astype(float) - first).mean() < 8  # the first image (JPEG)
    shown = instant_view(page).locator("img").get_attribute("src")
    choose_file(page, "upload-another", EXAMPLES / "shapes_3.png")
    expect(page.locator("#instant img")).not_to_have_attribute("src", shown, timeout=WAIT_MS)
    expect(page.locator("#candidates label")).to_have_count(0)
    assert np.abs(view_picture(page).astype(float) - second).mean() < 8  # the new image (JPEG)
    expect(page.locator("#image")).to_be_hidden()
    expect(page.locator(".objects-elsewhere")).to_contain_text("1 on earlier images")
    click_view(page, second_truths["blue dotted diamond"])
    save_screenshot(page, "app_browser_instant_another.png")
    shown = instant_view(page).locator("img").get_attribute("src")
    drop_file(page, "#instant canvas", "shapes_7.png", EXAMPLES / "shapes_7.png")
    expect(page.locator("#instant img")).not_to_have_attribute("src", shown, timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("Ready: ", timeout=WAIT_MS)
    instant_view(page)
    expect(page.locator(".objects-elsewhere")).to_contain_text("2 on earlier images")
    shown = instant_view(page).locator("img").get_attribute("src")
    paste_file(page, "pasted.png", EXAMPLES / "shapes_3.png")
    expect(page.locator("#instant img")).not_to_have_attribute("src", shown, timeout=WAIT_MS)
    assert np.abs(view_picture(page).astype(float) - second).mean() < 8
    assert page.locator(".toast-body").count() == 0


def test_instant_mode_a_file_over_the_limit_gets_one_message_and_loses_nothing(
    instant_page, tmp_path
):
    """A file over 25 MB, through the upload button, dropped on the view or pasted, is stopped
    in the browser: one message in the app's words; the picture, the prompts, the object
    stay."""
    from playwright.sync_api import expect

    page = instant_page
    _, truths = scene_truth(7)
    upload(page, EXAMPLES / "shapes_7.png")
    page.get_by_label("Label").fill("ellipse")
    page.get_by_label("Label").press("Enter")
    click_view(page, truths["purple striped ellipse"])
    shown = instant_view(page).locator("img").get_attribute("src")
    drawn = view_pixels(page)
    candidates = ranked_candidates(page)
    big = over_the_limit(tmp_path)
    choose_file(page, "upload-another", big)
    expect_one_warning(page, TOO_BIG, "app_browser_instant_too_big.png")
    drop_file(page, "#instant canvas", big.name, size=big.stat().st_size)
    expect_one_warning(page, TOO_BIG)
    paste_file(page, big.name, size=big.stat().st_size)
    expect_one_warning(page, TOO_BIG)
    assert page.get_by_text("exceed the maximum allowed size").count() == 0
    assert instant_view(page).locator("img").get_attribute("src") == shown
    assert view_pixels(page) == drawn  # the point and the mask, as they were
    assert ranked_candidates(page) == candidates
    expect(page.locator("#object-list li")).to_have_count(1)
    expect(page.locator("#object-list li")).to_contain_text("ellipse")
    expect(page.get_by_label("Label")).to_have_value("ellipse")
