"""The page in Chromium: upload an image, click on it, see three ranked candidates; describe an
object in words; segment everything; pre-fill the annotation list and download it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import app
from prompts.clip_model import create_random_clip
from prompts.text_models import TextModel
from sam import save_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
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


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, tiny_sam):
    checkpoint = save_checkpoint(tiny_sam, tmp_path_factory.mktemp("browser") / "tiny.safetensors")
    demo = app.build_demo(str(checkpoint), device="cpu")
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def demo_page_url():
    """The page with the bundled demo model, and a random tiny CLIP that always 'finds' the
    text (its quality is not what these tests check)."""
    always_found = {"existence_threshold": -np.inf, "verify_threshold": -np.inf}

    def clip_loader(kind):
        return TextModel(create_random_clip(seed=0), "untrained CLIP (test)", always_found)

    shelf = app.ModelShelf(device="cpu", clip_loader=clip_loader)
    demo = app.build_demo(handlers=app.Handlers(shelf, "demo"))
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


def open_page(url: str):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture
def browser_page(page_url):
    yield from open_page(page_url)


@pytest.fixture
def demo_browser_page(demo_page_url):
    yield from open_page(demo_page_url)


def upload(page, path: Path) -> None:
    field = page.locator("#image-input input[type=file]")
    field.wait_for(state="attached", timeout=30_000)
    field.set_input_files(str(path))


def ranked_captions(page) -> list[str]:
    from playwright.sync_api import expect

    labels = page.locator("#candidates .caption-label")
    expect(labels).to_have_count(3, timeout=30_000)
    captions = labels.all_inner_texts()
    assert all(re.fullmatch(r"IoU -?\d\.\d\d", c) for c in captions), captions
    scores = [float(c.split()[1]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    return captions


def save_screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def photo(tmp_path) -> Path:
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_upload_click_and_see_three_ranked_candidates(browser_page, photo):
    upload(browser_page, photo)
    canvas = browser_page.locator("#canvas img").first
    canvas.wait_for(timeout=30_000)
    canvas.click()  # the centre of the picture
    ranked_captions(browser_page)
    save_screenshot(browser_page, "app_browser.png")


def test_brush_stroke_gives_three_ranked_candidates(browser_page, photo):
    upload(browser_page, photo)
    browser_page.locator("#canvas img").first.wait_for(timeout=30_000)
    browser_page.get_by_role("tab", name="Brush").click()
    drawing = browser_page.locator("#brush canvas").first
    drawing.wait_for(timeout=30_000)
    labels = browser_page.locator("#candidates .caption-label")
    # The editor receives the uploaded image asynchronously and a stroke drawn before it
    # arrives is replaced with it (the page then says to draw first): draw again, as a person
    # would, at most three times.
    for _ in range(3):
        box = drawing.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        browser_page.mouse.move(x - 20, y - 10)
        browser_page.mouse.down()
        for step in range(20):
            browser_page.mouse.move(x - 20 + 2 * step, y - 10 + step)
        browser_page.mouse.up()
        browser_page.get_by_role("button", name="Segment from brush").click()
        try:
            labels.first.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    ranked_captions(browser_page)
    save_screenshot(browser_page, "app_browser_brush.png")


def test_corrupt_upload_shows_a_warning(browser_page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    upload(browser_page, broken)
    warning = browser_page.get_by_text("could not read 'broken.png'")
    warning.first.wait_for(timeout=30_000)


def test_example_click_accept_and_download(browser_page):
    from playwright.sync_api import expect

    examples = browser_page.locator("#examples button.gallery-item")
    examples.first.wait_for(timeout=30_000)
    examples.last.click()
    canvas = browser_page.locator("#canvas img").first
    canvas.wait_for(timeout=30_000)
    canvas.click()
    ranked_captions(browser_page)
    browser_page.get_by_label("Label").fill("thing")
    browser_page.get_by_role("button", name="Accept mask").click()
    expect(browser_page.locator("#candidates .caption-label")).to_have_count(0, timeout=30_000)
    browser_page.get_by_role("button", name="Download SA-1B JSON, COCO JSON, PNG masks").click()
    downloads = browser_page.locator("#downloads")
    expect(downloads).to_contain_text("annotations_coco", timeout=30_000)
    expect(downloads).to_contain_text("masks", timeout=30_000)
    save_screenshot(browser_page, "app_browser_annotations.png")


SCENE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "shapes_3.png"


def test_text_prompt_gives_three_ranked_candidates(demo_browser_page):
    from playwright.sync_api import expect

    page = demo_browser_page
    upload(page, SCENE)
    page.locator("#canvas img").first.wait_for(timeout=30_000)
    page.locator("#text-prompt textarea").fill("red star")
    page.locator("#text-prompt textarea").press("Enter")
    labels = page.locator("#candidates .caption-label")
    expect(labels).to_have_count(3, timeout=30_000)
    captions = labels.all_inner_texts()
    assert all(re.fullmatch(r"IoU -?\d\.\d\d · CLIP \d\.\d\d", c) for c in captions), captions
    scores = [float(c.split()[1]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    expect(page.locator("#status")).to_contain_text('Found "red star"', timeout=30_000)
    save_screenshot(page, "app_browser_text.png")


def test_segment_everything_colours_the_masks(demo_browser_page):
    from playwright.sync_api import expect

    page = demo_browser_page
    upload(page, SCENE)
    page.locator("#canvas img").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Segment everything").click()
    expect(page.locator("#status")).to_contain_text(
        re.compile(r"Segment everything found [1-9]\d* masks"), timeout=30_000
    )
    expect(page.locator("#everything img").first).to_be_visible(timeout=30_000)
    save_screenshot(page, "app_browser_everything.png")


def test_prefilled_annotations_download_as_coco_and_sa1b(demo_browser_page, tmp_path):
    from playwright.sync_api import expect
    from pycocotools.coco import COCO

    page = demo_browser_page
    upload(page, SCENE)
    page.locator("#canvas img").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Pre-fill confident masks").click()
    expect(page.locator("#status")).to_contain_text(
        re.compile(r"Pre-filled [1-9]\d* confident masks"), timeout=30_000
    )
    page.get_by_role("button", name="Download SA-1B JSON, COCO JSON, PNG masks").click()
    files = {}
    for name in ("annotations_coco.json", "sa1b_image1.json"):
        link = page.locator(f'#downloads a[download="{name}"]').first
        link.wait_for(timeout=30_000)
        with page.expect_download(timeout=30_000) as download:
            link.click()
        files[name] = tmp_path / name
        download.value.save_as(files[name])
    coco = COCO(str(files["annotations_coco.json"]))
    annotations = coco.loadAnns(coco.getAnnIds())
    assert annotations and all(coco.annToMask(a).shape == (320, 320) for a in annotations)
    sa1b = json.loads(files["sa1b_image1.json"].read_text())
    assert len(sa1b["annotations"]) == len(annotations)
    assert all(a["source"] == "automatic" for a in sa1b["annotations"])
    save_screenshot(page, "app_browser_prefill.png")
