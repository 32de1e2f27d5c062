"""The page's event handlers, called directly with a tiny random model (no server, no
browser): what each returns for the page, and how bad input becomes one short warning that keeps
the person's image, prompts and objects. What a session does with the prompts is
tests/test_session.py; the API endpoints are tests/test_page_api.py."""

from __future__ import annotations

import io
import json
import re
import sys
import types
import warnings
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from prompts import page_handlers
from prompts.clip_model import ClipLoadError, create_random_clip
from prompts.model_shelf import ModelShelf
from prompts.page_handlers import Handlers
from prompts.text_prompter import TextModel
from sam import save_checkpoint
from tests.page_fixtures import KEEP_ALL


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.fixture(scope="session")
def random_clip():
    return create_random_clip(seed=0)


@pytest.fixture
def clip_loads(random_clip):
    """The kinds of CLIP loaded, in order; the loader gives the tiny random CLIP."""
    loads = []

    def loader(kind):
        loads.append(kind)
        return TextModel(random_clip, "untrained CLIP")

    loader.loads = loads
    return loader


@pytest.fixture
def handlers(tiny_checkpoint, clip_loads):
    return Handlers(ModelShelf(device="cpu", clip_loader=clip_loads), tiny_checkpoint)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    return str(path)


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None})


def is_skip(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def upload(handlers, image_file, session=None):
    outputs = handlers.image(image_file, session, handlers.default_model)
    session, canvas, candidates, *_, editor, everything = outputs
    assert canvas.shape == (48, 64, 3) and candidates.choices == [] and everything is None
    assert editor.shape == (48, 64, 3)
    return session


def captions(candidates: gr.Radio) -> list[str]:
    return [caption for caption, _ in candidates.choices]


def scores(candidates: gr.Radio) -> list[float]:
    return [float(caption.split()[3]) for caption in captions(candidates)]


def warned(call, match: str):
    """Run ``call``; exactly one warning, matching ``match``; the call's outputs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = call()
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and re.search(match, messages[0]), messages
    return outputs


def test_a_click_gives_ranked_candidates_an_object_and_its_listing(handlers, image_file):
    session = upload(handlers, image_file)
    _, canvas, candidates, objects, listing, _, label = handlers.click(
        session, "Foreground point", select([10, 20])
    )
    assert len(candidates.choices) == 3 and candidates.value == 0
    assert scores(candidates) == sorted(scores(candidates), reverse=True)
    assert objects.choices == [("#1 object", 1)] and objects.value == 1
    assert "#1 object" in listing and "(refining)" in listing and label == "object"
    assert canvas.shape == (48, 64, 3)


def test_the_candidate_toggle_shows_the_picked_mask(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    first = handlers.pick(session, 0)[1]
    _, third, candidates, *_ = handlers.pick(session, 2)
    assert candidates.value == 2 and session.current == 2
    np.testing.assert_array_equal(session.objects.get(1).mask, session.candidates[2].mask)
    if not np.array_equal(session.candidates[0].mask, session.candidates[2].mask):
        assert not np.array_equal(first, third)  # the image shows the picked candidate


def test_objects_new_rename_select_and_delete(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    _, image, candidates, objects, _, status, label = handlers.rename(session, "cat")
    assert all(is_skip(view) for view in (image, candidates, status))  # a click's, if beside it
    assert objects.choices == [("#1 cat", 1)] and label == "cat"
    # the label's blur with the label unchanged: nothing sent, so no object list from before a
    # click beside it can arrive after the click's
    assert all(is_skip(view) for view in handlers.rename(session, " cat "))
    handlers.new_object(session, "dog")
    _, _, _, objects, listing, _, label = handlers.click(
        session, "Foreground point", select([50, 40])
    )
    assert objects.choices == [("#1 cat", 1), ("#2 dog", 2)] and objects.value == 2
    assert label == "dog" and listing.count("<li") == 2
    _, _, candidates, objects, _, status, label = handlers.select_object(session, 1)
    assert objects.value == 1 and label == "cat" and len(candidates.choices) == 1
    assert status.startswith("Refining #1 cat")
    _, _, _, objects, _, _, _ = handlers.delete_object(session)
    assert objects.choices == [("#2 dog", 2)] and objects.value is None


def test_a_refused_click_warns_once_and_keeps_everything(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before, kept = session.prompts, session.objects.items[:]
    outputs = warned(
        lambda: handlers.click(session, "Foreground point", select([64, 5])),
        r"^Click \(64, 5\) is outside the 64x48 image",
    )
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and session.objects.items == kept


def test_actions_before_an_image_warn(handlers):
    for call in (
        lambda: handlers.click(None, "Foreground point", select([1, 1])),
        lambda: handlers.undo(None),
        lambda: handlers.new_object(None, "cat"),
        lambda: handlers.everything(None),
        lambda: handlers.prefill(None, ""),
    ):
        assert all(is_skip(o) for o in warned(call, "^Upload an image first.$"))


def test_brush_stroke_prompts_a_mask(handlers, image_file):
    session = upload(handlers, image_file)
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[10:30, 20:40] = (30, 144, 255, 255)
    candidates = handlers.brush(session, {"background": None, "layers": [layer]})[2]
    assert len(candidates.choices) == 3 and session.prompts.box == (20, 10, 39, 29)
    assert session.prompts.brush_input.shape == session.candidates[0].low_res_logits.shape
    warned(
        lambda: handlers.brush(session, {"background": None, "layers": [np.zeros_like(layer)]}),
        "^Nothing is painted",
    )


def test_export_carries_every_object_as_coco_sa1b_and_png(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.rename(session, "cat")
    mask = session.current_mask.copy()
    handlers.new_object(session, "")
    handlers.click(session, "Foreground point", select([50, 40]))
    upload(handlers, image_file, session)  # a second image: the first's objects stay
    handlers.click(session, "Foreground point", select([30, 30]))
    coco_path, zip_path, *sa1b_paths = handlers.export(session)
    assert [Path(p).name for p in sa1b_paths] == ["sa1b_image1.json", "sa1b_image2.json"]
    sa1b = json.loads(Path(sa1b_paths[0]).read_text())
    assert sa1b["image"] == {"image_id": 1, "width": 64, "height": 48, "file_name": "photo.png"}
    assert [a["label"] for a in sa1b["annotations"]] == ["cat", "object"]
    assert sa1b["annotations"][0]["point_coords"] == [[10.0, 20.0]]
    assert sa1b["annotations"][0]["stability_score"] is None  # unknown for a clicked mask

    coco = json.loads(Path(coco_path).read_text())
    assert [i["id"] for i in coco["images"]] == [1, 2] and len(coco["annotations"]) == 3
    assert [c["name"] for c in coco["categories"]] == ["cat", "object"]
    first = coco["annotations"][0]
    rle = {"size": first["segmentation"]["size"], "counts": first["segmentation"]["counts"]}
    decoded = mask_utils.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
    np.testing.assert_array_equal(decoded, mask)

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        png = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))))
    assert names == ["0001_cat.png", "0002_object.png", "0003_object.png"]
    np.testing.assert_array_equal(png > 0, mask)


def test_export_with_no_object_warns(handlers, image_file):
    session = upload(handlers, image_file)
    assert is_skip(warned(lambda: handlers.export(session), "^Nothing to download yet"))


def test_sessions_are_independent_but_share_the_embedding_cache(handlers, image_file):
    first, second = upload(handlers, image_file), upload(handlers, image_file)
    assert first.predictor is not second.predictor
    assert first.predictor.cache is second.predictor.cache and len(first.predictor.cache) == 1
    handlers.click(first, "Foreground point", select([10, 20]))
    assert second.prompts.is_empty and second.candidates == [] and not second.objects.items


def test_a_refused_upload_warns_once_and_shows_the_session_again(handlers, image_file, tmp_path):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    outputs = warned(
        lambda: handlers.image(str(broken), session, "ignored"),
        r"^Could not read 'broken\.png' as an image: use a PNG, JPEG or WebP file\.$",
    )
    _, canvas, candidates, *_ = outputs
    assert canvas.shape == (48, 64, 3) and len(candidates.choices) == 3  # shown again
    assert len(session.prompts.points) == 1 and len(session.objects.items) == 1


def test_an_emptied_image_comes_back(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    _, canvas, candidates, *_ = handlers.restore(None, session)  # e.g. a file over 25 MB
    assert canvas.shape == (48, 64, 3) and len(candidates.choices) == 3
    assert all(is_skip(o) for o in handlers.restore("/tmp/shown.jpg", session))
    assert all(is_skip(o) for o in handlers.restore(None, None))


def test_switching_model_keeps_image_prompts_and_objects(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.menu = ("vit_b", "demo")
    handlers.click(session, "Foreground point", select([10, 20]))
    old = session.predictor
    outputs = warned(
        lambda: handlers.model("unknown_model", session),
        "^unknown_model could not be loaded: see the notice",
    )
    *views, menu, notice, everything = outputs
    assert menu.value in ("demo", "vit_test") and (menu.value, menu.value) in menu.choices
    assert "because unknown_model could not be loaded" in notice and everything is None
    assert session.predictor is not old and len(session.prompts.points) == 1
    assert len(views[2].choices) == 3 and len(session.objects.items) == 1


def test_gpu_task_wraps_with_spaces_gpu_only_on_zero_gpu(monkeypatch):
    def handler(x):
        return x

    fake_spaces = types.ModuleType("spaces")
    fake_spaces.GPU = lambda fn: ("on a ZeroGPU", fn)
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert page_handlers.gpu_task(handler) is handler  # spaces installed, but not on ZeroGPU
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert page_handlers.gpu_task(handler) == ("on a ZeroGPU", handler)
    monkeypatch.setitem(sys.modules, "spaces", None)  # ZeroGPU said, but no `spaces` package
    assert page_handlers.gpu_task(handler) is handler


def test_unexpected_errors_are_logged_and_reported_plainly(handlers, image_file, caplog):
    session = upload(handlers, image_file)
    session.predictor.predict_ranked = lambda **_: 1 / 0
    outputs = warned(
        lambda: handlers.click(session, "Foreground point", select([1, 1])),
        "^Something went wrong on the server; your work is kept",
    )
    assert all(is_skip(o) for o in outputs) and "ZeroDivisionError" in caplog.text


# -- text prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_text_warns_and_keeps_the_prompts(handlers, image_file, text):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before = session.prompts
    outputs = warned(lambda: handlers.text(session, text), "^The text is empty")
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and len(session.candidates) == 3


def test_clip_is_loaded_lazily_once_and_shared(handlers, image_file, clip_loads):
    first = upload(handlers, image_file)
    handlers.click(first, "Foreground point", select([10, 20]))
    assert clip_loads.loads == []  # no text yet: no CLIP
    handlers.text(first, "red ellipse")
    second = upload(handlers, image_file)
    handlers.text(second, "blue square")
    handlers.text(first, "green triangle")
    assert clip_loads.loads == ["demo"]  # the tiny CLIP for a small checkpoint, loaded once


def test_text_without_clip_warns_and_the_rest_keeps_working(tiny_checkpoint, image_file):
    calls = []

    def offline(kind):
        calls.append(kind)
        raise ClipLoadError("Text prompts need the CLIP model ViT-B-16 ... offline")

    handlers = Handlers(ModelShelf(device="cpu", clip_loader=offline), tiny_checkpoint)
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    for _ in range(2):
        outputs = warned(lambda: handlers.text(session, "red ellipse"), "^Text prompts need")
        assert all(is_skip(o) for o in outputs)
    assert calls == ["demo"]  # the failure is remembered, not retried on every request
    assert session.prompts.text is None and len(session.candidates) == 3
    candidates = handlers.click(session, "Background point", select([50, 40]))[2]
    assert len(candidates.choices) == 3


# -- segment everything and semi-automatic annotation -------------------------------------------


def test_prefill_adds_confident_masks_once_and_exports_them(handlers, image_file):
    from pycocotools.coco import COCO

    session = upload(handlers, image_file)
    session.everything_settings = KEEP_ALL
    handlers.click(session, "Foreground point", select([10, 20]))
    *views, picture = handlers.prefill(session, "shape")  # runs segment everything first
    automatic = [o for o in session.objects.items if o.source == "automatic"]
    assert picture.shape == (48, 64, 3) and len(automatic) >= 1
    assert views[5].startswith(f"Pre-filled {len(automatic)} confident masks")
    assert all(o.label == "shape" and o.stability_score is not None for o in automatic)
    assert len(views[3].choices) == len(session.objects.items)
    before = len(session.objects.items)
    handlers.prefill(session, "shape")
    assert len(session.objects.items) == before  # duplicates of masks already there are skipped

    coco_path, _, sa1b_path = handlers.export(session)
    coco = COCO(coco_path)
    assert len(coco.getAnnIds()) == before
    for annotation in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(annotation).shape == (48, 64)
    sa1b = json.loads(Path(sa1b_path).read_text())
    auto = [a for a in sa1b["annotations"] if a["source"] == "automatic"]
    assert len(auto) == len(automatic)
    assert all(0 <= a["stability_score"] <= 1 and a["point_coords"] for a in auto)


# -- awkward images -----------------------------------------------------------------------------


def saved(tmp_path, name: str, image: Image.Image, **options) -> str:
    image.save(tmp_path / name, **options)
    return str(tmp_path / name)


def test_tiny_and_extreme_images_can_be_prompted(handlers, tmp_path):
    for size in ((2, 2), (500, 5), (5, 500), (3000, 2000)):
        path = saved(tmp_path, f"{size[0]}x{size[1]}.png", Image.new("RGB", size, (9, 9, 9)))
        session, canvas, *_ = handlers.image(path, None, handlers.default_model)
        assert canvas.shape[:2] == (size[1], size[0])
        candidates = handlers.click(session, "Foreground point", select([0, 0]))[2]
        assert len(candidates.choices) == 3


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("thin.png", lambda p: Image.new("RGB", (2000, 3)).save(p), r"2000x3 is too thin"),
        ("dot.png", lambda p: Image.new("RGB", (1, 1)).save(p), r"1x1 is too small"),
        (
            "bomb.png",
            lambda p: Image.new("1", (8000, 8000)).save(p),
            r"^Image refused: 'bomb\.png' has more than 40,000,000 pixels: scale it down first\.$",
        ),
        (
            "huge.png",
            lambda p: Image.new("1", (10000, 9000)).save(p),  # over Pillow's own 80M limit too
            r"has more than 40,000,000 pixels",
        ),
        (
            "truncated.jpg",
            lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100),
            r"^Could not read 'truncated\.jpg' as an image",
        ),
        ("empty.png", lambda p: p.write_bytes(b""), r"the file is empty"),
    ],
)
def test_bad_images_are_refused_once_in_the_app_s_words(
    handlers, image_file, tmp_path, name, make, message
):
    make(tmp_path / name)
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    outputs = warned(lambda: handlers.image(str(tmp_path / name), session, "ignored"), message)
    assert outputs[1].shape == (48, 64, 3)  # the session's picture, shown again
    assert session.image.shape == (48, 64, 3) and len(session.objects.items) == 1


def test_one_persons_events_run_one_at_a_time(handlers, image_file, monkeypatch):
    """Two events of one session (from two worker threads) never run at once; another
    person's session runs beside them."""
    import threading
    import time

    first = upload(handlers, image_file)
    other = upload(handlers, image_file)
    running: list[int] = []  # ids of the sessions whose click is running
    seen: list[tuple[int, ...]] = []  # what ran together, at each click's start
    original = type(first).click

    def slow_click(session, *args, **kwargs):
        running.append(id(session))
        seen.append(tuple(running))
        time.sleep(0.2)
        try:
            return original(session, *args, **kwargs)
        finally:
            running.remove(id(session))

    monkeypatch.setattr(type(first), "click", slow_click)
    clicks = [(first, 10, 10), (first, 20, 20), (other, 30, 30)]
    threads = [
        threading.Thread(target=handlers.click_at, args=(session, x, y, "Foreground point"))
        for session, x, y in clicks
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(together.count(id(first)) <= 1 for together in seen)
    assert any(set(together) == {id(first), id(other)} for together in seen)
    assert len(first.prompts.points) == 2 and len(other.prompts.points) == 1
