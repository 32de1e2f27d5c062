"""The page's event handlers, called directly with a tiny random model (no server, no
browser): what each returns for the page, and how errors become warnings that keep the person's
prompts. What a session does with the prompts is tests/test_session.py."""

from __future__ import annotations

import io
import json
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


def upload(handlers, image_file):
    outputs = handlers.image(image_file, None, handlers.default_model)
    session, canvas, gallery, table, _, editor = outputs
    assert canvas.shape == (48, 64, 3) and gallery == [] and table == []
    assert editor.shape == (48, 64, 3)
    return session


def captions(gallery) -> list[str]:
    return [caption for _, caption in gallery]


def scores(gallery) -> list[float]:
    return [float(caption.split()[1]) for caption in captions(gallery)]


def test_a_refused_click_warns_and_keeps_the_prompts(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before = session.prompts
    with pytest.warns(UserWarning, match="outside the 64x48 image"):
        outputs = handlers.click(session, "Foreground point", select([64, 5]))
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and len(session.candidates) == 3


def test_actions_before_an_image_warn(handlers):
    with pytest.warns(UserWarning, match="upload an image first"):
        outputs = [
            handlers.click(None, "Foreground point", select([1, 1])),
            handlers.undo(None),
            handlers.accept(None, "cat"),
        ]
    assert all(is_skip(o) for group in outputs for o in group)


def test_brush_stroke_prompts_a_mask(handlers, image_file):
    session = upload(handlers, image_file)
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[10:30, 20:40] = (30, 144, 255, 255)
    _, _, gallery, _, _ = handlers.brush(session, {"background": None, "layers": [layer]})
    assert len(gallery) == 3 and session.prompts.box == (20, 10, 39, 29)
    assert session.prompts.brush_input.shape == session.candidates[0].low_res_logits.shape
    with pytest.warns(UserWarning, match="nothing is painted"):
        handlers.brush(session, {"background": None, "layers": [np.zeros_like(layer)]})


def test_accept_and_export_coco_and_png(handlers, image_file, tmp_path):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    mask = session.current_mask.copy()
    _, _, gallery, table, _ = handlers.accept(session, "cat")
    assert gallery == [] and session.prompts.is_empty
    assert table == [[1, "cat", int(mask.sum()), round(session.annotations[0].score, 3)]]
    handlers.click(session, "Foreground point", select([50, 40]))
    handlers.accept(session, "  ")
    coco_path, zip_path, sa1b_path = handlers.export(session)
    sa1b = json.loads(Path(sa1b_path).read_text())
    assert Path(sa1b_path).name == "sa1b_image1.json"
    assert sa1b["image"] == {"image_id": 1, "width": 64, "height": 48, "file_name": "photo.png"}
    assert [a["label"] for a in sa1b["annotations"]] == ["cat", "object"]
    assert sa1b["annotations"][0]["point_coords"] == [[10.0, 20.0]]
    assert sa1b["annotations"][0]["stability_score"] is None  # unknown for a clicked mask

    coco = json.loads(Path(coco_path).read_text())
    assert coco["images"] == [{"id": 1, "file_name": "photo.png", "height": 48, "width": 64}]
    assert [c["name"] for c in coco["categories"]] == ["cat", "object"]
    first = coco["annotations"][0]
    rle = {"size": first["segmentation"]["size"], "counts": first["segmentation"]["counts"]}
    decoded = mask_utils.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
    np.testing.assert_array_equal(decoded, mask)
    assert first["area"] == int(mask.sum()) and first["iscrowd"] == 0

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        png = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))))
    assert names == ["0001_cat.png", "0002_object.png"]
    np.testing.assert_array_equal(png > 0, mask)


def test_export_with_nothing_accepted_warns(handlers, image_file):
    session = upload(handlers, image_file)
    with pytest.warns(UserWarning, match="nothing to download"):
        assert is_skip(handlers.export(session))


def test_sessions_are_independent_but_share_the_embedding_cache(handlers, image_file):
    first, second = upload(handlers, image_file), upload(handlers, image_file)
    assert first.predictor is not second.predictor
    assert first.predictor.cache is second.predictor.cache and len(first.predictor.cache) == 1
    handlers.click(first, "Foreground point", select([10, 20]))
    assert second.prompts.is_empty and second.candidates == []


def test_corrupt_image_warns_and_keeps_the_session(handlers, image_file, tmp_path):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.warns(UserWarning, match=r"could not read 'broken\.png'"):
        outputs = handlers.image(str(broken), session, "ignored")
    assert all(is_skip(o) for o in outputs) and len(session.prompts.points) == 1


def test_clearing_the_image(handlers, image_file):
    session = upload(handlers, image_file)
    session, canvas, gallery, _, _, editor = handlers.image(None, session, "ignored")
    assert canvas is None and gallery == [] and editor is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handlers.click(session, "Foreground point", select([1, 1]))
    assert "upload an image first" in str(caught[0].message)


def test_switching_model_keeps_image_and_prompts(handlers, image_file, tiny_checkpoint):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    old = session.predictor
    *views, banner = handlers.model("vit_h_offline_here", session)
    assert "Could not load `vit_h_offline_here`" in banner  # unknown name: a fallback
    assert session.predictor is not old and len(session.prompts.points) == 1
    assert len(views[2]) == 3


def test_segment_endpoint_function(handlers, image_file):
    masks, values, message = handlers.segment(image_file, [[10, 20]], [1], [2, 2, 40, 40])
    assert len(masks) == 3 and values == sorted(values, reverse=True) and message == ""
    assert np.asarray(Image.open(masks[0][0])).shape == (48, 64)
    with pytest.raises(gr.Error, match="point_labels"):
        handlers.segment(image_file, [[10, 20]], [1, 1], None)


def test_segment_endpoint_refuses_labels_without_points(handlers, image_file):
    with pytest.raises(gr.Error, match="point_coords must be supplied"):
        handlers.segment(image_file, [], [1], None)
    with pytest.raises(gr.Error, match="list of numbers"):
        handlers.segment(image_file, [["a", 1]], [1], None)


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


# -- text prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_text_warns_and_keeps_the_prompts(handlers, image_file, text):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before = session.prompts
    with pytest.warns(UserWarning, match="the text is empty"):
        outputs = handlers.text(session, text)
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and len(session.candidates) == 3


def test_clip_is_loaded_lazily_once_and_shared(handlers, image_file, clip_loads):
    first = upload(handlers, image_file)
    handlers.click(first, "Foreground point", select([10, 20]))
    assert clip_loads.loads == []  # no text yet: no CLIP
    handlers.text(first, "red circle")
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
        with pytest.warns(UserWarning, match="Text prompts need the CLIP model"):
            outputs = handlers.text(session, "red circle")
        assert all(is_skip(o) for o in outputs)
    assert calls == ["demo"]  # the failure is remembered, not retried on every request
    assert session.prompts.text is None and len(session.candidates) == 3
    _, _, gallery, _, _ = handlers.click(session, "Background point", select([50, 40]))
    assert len(gallery) == 3


def test_segment_endpoint_function_with_text(handlers, image_file):
    # With a positive click there are masks either way: the text's, or the click's if the
    # (random) CLIP does not find the text.
    masks, values, message = handlers.segment(image_file, [[10, 20]], [1], None, "red circle")
    assert message.startswith(("Found", "Not found"))
    assert len(masks) == len(values) == 3 and values == sorted(values, reverse=True)
    assert all(" · CLIP " in caption for _, caption in masks)
    with pytest.raises(gr.Error, match="text is empty"):
        handlers.segment(image_file, None, None, None, "   ")


# -- segment everything and semi-automatic annotation -------------------------------------------


def test_segment_everything_before_an_image_warns(handlers):
    with pytest.warns(UserWarning, match="upload an image first"):
        assert all(is_skip(o) for o in handlers.everything(None))
    with pytest.warns(UserWarning, match="upload an image first"):
        assert all(is_skip(o) for o in handlers.prefill(None, ""))


def test_prefill_adds_confident_masks_once_and_exports_them(handlers, image_file):
    from pycocotools.coco import COCO

    session = upload(handlers, image_file)
    session.everything_settings = KEEP_ALL
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.accept(session, "by hand")
    *views, picture = handlers.prefill(session, "shape")  # runs segment everything first
    automatic = [a for a in session.annotations if a.source == "automatic"]
    assert picture.shape == (48, 64, 3) and len(automatic) >= 1
    assert views[4].startswith(f"Pre-filled {len(automatic)} confident masks")
    assert all(a.label == "shape" and a.stability_score is not None for a in automatic)
    assert len(views[3]) == len(session.annotations)
    before = len(session.annotations)
    handlers.prefill(session, "shape")
    assert len(session.annotations) == before  # duplicates of masks already there are skipped

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
        _, _, gallery, _, _ = handlers.click(session, "Foreground point", select([0, 0]))
        assert len(gallery) == 3
    thin = saved(tmp_path, "thin.png", Image.new("RGB", (2000, 3)))
    with pytest.warns(UserWarning, match=r"2000x3 is too thin \(at most 100:1"):
        assert all(is_skip(o) for o in handlers.image(thin, session, handlers.default_model))
    dot = saved(tmp_path, "dot.png", Image.new("RGB", (1, 1)))  # below the model's 2-pixel side
    with pytest.warns(UserWarning, match=r"1x1 is too small"):
        assert all(is_skip(o) for o in handlers.image(dot, session, handlers.default_model))


def test_truncated_files_and_bombs_are_refused_with_a_message(handlers, image_file, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(bomb)
    session = upload(handlers, image_file)
    for path, message in ((truncated, "could not read 'truncated.jpg'"), (bomb, "image refused")):
        with pytest.warns(UserWarning, match=message):
            outputs = handlers.image(str(path), session, handlers.default_model)
        assert all(is_skip(o) for o in outputs) and session.image.shape == (48, 64, 3)
