"""What the page's browser tests do to it (tests/test_app_browser.py): upload, click on a pixel,
read the candidates, the warnings and the downloads, and a bundled scene's known objects."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WAIT_MS = 30_000


def save_screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# -- the page's parts ----------------------------------------------------------------------------


def upload(page, path: Path, ready: bool = True) -> None:
    """Choose a file for the image; with ``ready``, wait until the page has encoded it."""
    from playwright.sync_api import expect

    field = page.locator("#image input[type=file]")
    field.wait_for(state="attached", timeout=WAIT_MS)
    field.set_input_files(str(path))
    if ready:
        expect(page.locator("#status")).to_contain_text("Ready: ", timeout=WAIT_MS)


def choose_file(page, button: str, path: Path) -> None:
    """Click the upload button of id ``button`` and pick ``path`` in the file chooser."""
    with page.expect_file_chooser(timeout=WAIT_MS) as chooser:
        page.locator(f"#{button}").click()
    chooser.value.set_files(str(path))


def drop_file(page, selector: str, name: str, path: Path | None = None, size: int = 0) -> None:
    """Drag a file onto the element at ``selector`` and drop it: ``path``'s bytes, or else
    ``size`` zero bytes (made in the page), named ``name``."""
    transfer = file_transfer(page, name, path, size)
    target = page.locator(selector).first
    for kind in ("dragenter", "dragover", "drop"):
        target.dispatch_event(kind, {"dataTransfer": transfer})


def paste_file(page, name: str, path: Path | None = None, size: int = 0) -> None:
    """Paste a file into the page (Ctrl+V with no text field focused), as :func:`drop_file`
    makes it."""
    transfer = file_transfer(page, name, path, size)
    page.evaluate(
        """(transfer) => {
            document.activeElement && document.activeElement.blur();
            const paste = new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true });
            document.body.dispatchEvent(paste);
        }""",
        transfer,
    )


def file_transfer(page, name: str, path: Path | None, size: int):
    """A DataTransfer in the page holding one PNG file named ``name``: ``path``'s bytes, or
    ``size`` zero bytes."""
    data = base64.b64encode(path.read_bytes()).decode() if path else None
    return page.evaluate_handle(
        """([data, name, size]) => {
            const bytes = data ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0))
                : new Uint8Array(size);
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [data, name, size],
    )


def shown_image(page):
    """The image element, once its picture has loaded."""
    image = page.locator("#image img").first
    image.wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=WAIT_MS
    )
    return image


def wait_for_new_picture(page, before: str | None) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#image img").first).not_to_have_attribute(
        "src", before or "", timeout=WAIT_MS
    )


def picture_src(page) -> str | None:
    return shown_image(page).get_attribute("src")


def click_pixel(page, x: float, y: float) -> None:
    """Click over image pixel (x, y): Gradio shows the picture centred, scaled down to fit
    (never enlarged), and maps a click back the same way."""
    image = shown_image(page)
    width, height, natural_w, natural_h = image.evaluate(
        "el => [el.getBoundingClientRect().width, el.getBoundingClientRect().height,"
        " el.naturalWidth, el.naturalHeight]"
    )
    scale = min(width / natural_w, height / natural_h, 1.0)
    left = (width - natural_w * scale) / 2
    top = (height - natural_h * scale) / 2
    image.click(position={"x": left + (x + 0.5) * scale, "y": top + (y + 0.5) * scale})


def click_and_wait(page, x: float, y: float) -> None:
    before = picture_src(page)
    click_pixel(page, x, y)
    wait_for_new_picture(page, before)


def picture(page) -> np.ndarray:
    """What the image shows now, as (H, W, 3) uint8."""
    src = picture_src(page)
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def ranked_candidates(page, clip: bool = False) -> list[str]:
    """The candidate toggle's three captions, checked to be ranked best first."""
    from playwright.sync_api import expect

    labels = page.locator("#candidates label")
    expect(labels).to_have_count(3, timeout=WAIT_MS)
    captions = [c.strip() for c in labels.all_inner_texts()]
    pattern = r"\d · IoU -?\d\.\d\d" + (r" · CLIP \d\.\d\d" if clip else "")
    assert all(re.fullmatch(pattern, c) for c in captions), captions
    scores = [float(c.split()[3]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    return captions


def warnings_shown(page) -> list[str]:
    return [t.strip() for t in page.locator(".toast-body").all_inner_texts()]


def expect_one_warning(page, text: str, screenshot: str | None = None) -> None:
    """Exactly one warning, containing ``text`` (no "Warning (2)"), then closed (after a
    screenshot named ``screenshot``, if given)."""
    from playwright.sync_api import expect

    toast = page.locator(".toast-body", has_text=text)
    expect(toast).to_have_count(1, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # a second copy would arrive by now
    assert page.locator(".toast-count").count() == 0, warnings_shown(page)
    assert len(page.locator(".toast-body").all()) == 1, warnings_shown(page)
    if screenshot:
        save_screenshot(page, screenshot)
    page.locator(".toast-close").first.click()
    expect(page.locator(".toast-body")).to_have_count(0, timeout=WAIT_MS)


def choose(page, label: str) -> None:
    from playwright.sync_api import expect

    choice = page.get_by_label(label, exact=True)
    choice.check()
    expect(choice).to_be_checked()


def download(page, tmp_path, name: str) -> Path:
    page.get_by_role("button", name="Download SA-1B JSON, COCO JSON, PNG masks").click()
    link = page.locator(f'#downloads a[download="{name}"]').first
    link.wait_for(timeout=WAIT_MS)
    with page.expect_download(timeout=WAIT_MS) as done:
        link.click()
    path = tmp_path / name
    done.value.save_as(path)
    return path


def coco_masks(path: Path) -> dict[str, np.ndarray]:
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    return {
        names[a["category_id"]]: coco.annToMask(a).astype(bool)
        for a in coco.loadAnns(coco.getAnnIds())
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# -- a generated scene with known masks ----------------------------------------------------------


def scene_truth(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A bundled example scene's image and its objects' visible masks by caption."""
    from sam.train.scenes import generate_scene, whole_masks

    scene = generate_scene(np.random.default_rng(seed), 320)
    return scene.image, dict(zip([o.caption for o in scene.objects], whole_masks(scene)))


def inside(mask: np.ndarray) -> tuple[int, int]:
    """The point of ``mask`` farthest from its boundary (where the demo model does best)."""
    from scipy import ndimage

    y, x = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)
    return int(x), int(y)


THREE_OBJECTS = ("red ellipse", "purple striped ellipse", "red dotted diamond")  # in shapes_7


def segment_objects(page, truths: dict[str, np.ndarray], captions: tuple[str, ...]) -> None:
    """Object after object: name it, click inside it, then New object for the next."""
    from playwright.sync_api import expect

    for index, caption in enumerate(captions):
        if index:
            page.get_by_role("button", name="New object").click()
            expect(page.locator("#candidates label")).to_have_count(0, timeout=WAIT_MS)
        label = page.get_by_label("Label")
        label.fill(caption)
        label.press("Enter")
        click_and_wait(page, *inside(truths[caption]))
        ranked_candidates(page)
