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
from prompts.model_shelf import ModelShelf
from prompts.page_handlers import Handlers
from prompts.text_prompter import TextModel
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

    shelf = ModelShelf(device="cpu", clip_loader=clip_loader)
    demo = app.build_demo(handlers=Handlers(shelf, "demo"))
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


# -- a generated scene with known masks ----------------------------------------------------------

# Scene 5 at 320 pixels: a green striped star, a red striped ellipse, a purple square and a cyan
# star (object 3, the largest). The bundled demo SAM segments every object of it well from one
# click at the object's point farthest from its boundary (scipy's distance transform), so the
# asserted IoU of 0.8 leaves room for a click a few pixels off and for a box with a margin. The
# star's click (160, 143) lies inside it, the background click (160, 300) on no object.
SCENE_SEED, SCENE_SIZE, STAR = 5, 320, 3
STAR_CLICK = (160, 143)
BACKGROUND_CLICK = (160, 300)


@pytest.fixture(scope="module")
def generated_scene(tmp_path_factory):
    from sam.train.scenes import generate_scene, whole_masks

    scene = generate_scene(np.random.default_rng(SCENE_SEED), SCENE_SIZE)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(scene.image).save(path)
    star = whole_masks(scene)[STAR]
    assert scene.objects[STAR].caption == "cyan star"
    assert star[STAR_CLICK[1], STAR_CLICK[0]] and not whole_masks(scene)[:, 300, 160].any()
    return path, star


def loaded_canvas(page):
    """The canvas picture, once uploaded and decoded."""
    canvas = page.locator("#canvas img").first
    canvas.wait_for(timeout=30_000)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=canvas.element_handle(), timeout=30_000
    )
    return canvas


def click_pixel(page, x: int, y: int) -> None:
    """Click the canvas over image pixel (x, y): Gradio shows the picture centred, scaled to fit
    (never enlarged), and maps a click back the same way."""
    canvas = loaded_canvas(page)
    width, height, natural_w, natural_h = canvas.evaluate(
        "el => [el.getBoundingClientRect().width, el.getBoundingClientRect().height,"
        " el.naturalWidth, el.naturalHeight]"
    )
    scale = min(width / natural_w, height / natural_h, 1.0)
    left = (width - natural_w * scale) / 2
    top = (height - natural_h * scale) / 2
    canvas.click(position={"x": left + (x + 0.5) * scale, "y": top + (y + 0.5) * scale})


def canvas_picture(page) -> np.ndarray:
    """What the canvas shows now, as (H, W, 3) uint8."""
    import io

    src = page.locator("#canvas img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def wait_for_new_canvas(page, before: str | None) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#canvas img").first).not_to_have_attribute(
        "src", before or "", timeout=30_000
    )


def choose_mode(page, mode: str) -> None:
    from playwright.sync_api import expect

    choice = page.get_by_label(mode, exact=True)
    choice.check()
    expect(choice).to_be_checked()


def accept_and_download_mask(page, tmp_path) -> np.ndarray:
    """Accept the current (best) candidate, download the COCO JSON, and read its mask back."""
    from playwright.sync_api import expect
    from pycocotools.coco import COCO

    page.get_by_label("Label").fill("star")
    page.get_by_role("button", name="Accept mask").click()
    expect(page.locator("#candidates .caption-label")).to_have_count(0, timeout=30_000)
    page.get_by_role("button", name="Download SA-1B JSON, COCO JSON, PNG masks").click()
    link = page.locator('#downloads a[download="annotations_coco.json"]').first
    link.wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as download:
        link.click()
    path = tmp_path / "annotations_coco.json"
    download.value.save_as(path)
    coco = COCO(str(path))
    (annotation,) = coco.loadAnns(coco.getAnnIds())
    assert annotation["category_id"] == coco.getCatIds(catNms=["star"])[0]
    return coco.annToMask(annotation).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_click_on_a_known_shape_gives_a_best_candidate_that_covers_it(
    demo_browser_page, generated_scene, tmp_path
):
    page = demo_browser_page
    path, star = generated_scene
    upload(page, path)
    click_pixel(page, *STAR_CLICK)
    ranked_captions(page)
    save_screenshot(page, "app_browser_scene_click.png")
    mask = accept_and_download_mask(page, tmp_path)
    assert mask.shape == star.shape
    assert iou(mask, star) >= 0.8


def test_box_by_two_clicks_gives_ranked_candidates(demo_browser_page, generated_scene, tmp_path):
    from playwright.sync_api import expect

    page = demo_browser_page
    path, star = generated_scene
    upload(page, path)
    before = loaded_canvas(page).get_attribute("src")
    choose_mode(page, "Box (two clicks)")
    ys, xs = np.nonzero(star)
    x0, y0, x1, y1 = xs.min() - 5, ys.min() - 5, xs.max() + 5, ys.max() + 5
    click_pixel(page, x0, y0)
    wait_for_new_canvas(page, before)  # the first corner is drawn; a lone corner is no prompt
    expect(page.locator("#candidates .caption-label")).to_have_count(0)
    click_pixel(page, x1, y1)
    ranked_captions(page)
    picture = canvas_picture(page)
    outline = picture[(y0 + y1) // 2, x0 - 1 : x0 + 3].astype(int)  # the box's left side
    yellow = (outline[:, 0] > 180) & (outline[:, 1] > 140) & (outline[:, 2] < 100)
    assert yellow.any(), outline  # drawn over the scene's grey-green stripes
    save_screenshot(page, "app_browser_box.png")
    assert iou(accept_and_download_mask(page, tmp_path), star) >= 0.8


def test_negative_click_refines_the_candidates(demo_browser_page, generated_scene):
    from playwright.sync_api import expect

    page = demo_browser_page
    path, _ = generated_scene
    upload(page, path)
    click_pixel(page, *STAR_CLICK)
    first = ranked_captions(page)
    before = page.locator("#canvas img").first.get_attribute("src")
    choose_mode(page, "Background point")
    click_pixel(page, *BACKGROUND_CLICK)
    wait_for_new_canvas(page, before)
    expect(page.locator("#candidates .caption-label")).not_to_have_text(first, timeout=30_000)
    assert ranked_captions(page) != first
    x, y = BACKGROUND_CLICK
    red, green, blue = canvas_picture(page)[y, x].astype(int)
    assert red > 150 and green < 110 and blue < 110, (red, green, blue)  # a red dot
    x, y = STAR_CLICK
    red, green, blue = canvas_picture(page)[y, x].astype(int)
    assert green > 150 and red < 110 and blue < 120, (red, green, blue)  # the green dot stays
    save_screenshot(page, "app_browser_negative_click.png")
