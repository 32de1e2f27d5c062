"""The page's handlers, called directly with a tiny random model (no server, no browser)."""

from __future__ import annotations

import io
import json
import re
import shlex
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

import app
from prompts import text_models
from prompts.clip_model import ClipLoadError, create_random_clip
from prompts.everything import EverythingSettings
from prompts.text_models import TextModel
from sam import CheckpointError, build_sam, save_checkpoint
from sam.io.images import MAX_IMAGE_PIXELS, read_image

# Keep every mask segment everything finds, and call all of them confident (random weights).
KEEP_ALL = EverythingSettings(
    points_per_side=4,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.0,
    min_mask_region_area=0,
    confident_iou=0.0,
    confident_stability=0.0,
)


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
    return app.Handlers(app.ModelShelf(device="cpu", clip_loader=clip_loads), tiny_checkpoint)


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


def test_page_builds(tiny_checkpoint):
    page = app.build_demo(tiny_checkpoint, device="cpu")
    assert isinstance(page, gr.Blocks)
    # per-person state expires: gradio drops it after this long without activity
    states = [b for b in page.blocks.values() if isinstance(b, gr.State)]
    assert states and all(s.time_to_live == app.SESSION_TTL_S for s in states)


def test_falls_back_to_a_random_model_with_a_banner():
    def offline(name, **_):
        raise CheckpointError(f"could not get {name}: offline")

    loaded = app.load_with_fallback("vit_b", loader=offline)
    assert loaded.used == "vit_test" and loaded.requested == "vit_b"
    assert "randomly initialised" in loaded.banner and "meaningless" in loaded.banner
    assert "--model /path/to/model.safetensors" in loaded.banner
    assert "could not get vit_b: offline" in loaded.banner
    demo = app.build_demo("vit_b", loader=offline)
    assert isinstance(demo, gr.Blocks)


def test_falls_back_to_the_demo_model_when_it_exists(tiny_sam):
    def only_demo(name, **_):
        if name != "demo":
            raise CheckpointError("offline")
        return tiny_sam

    loaded = app.load_with_fallback("vit_h", loader=only_demo)
    assert loaded.used == "demo" and "bundled `demo`" in loaded.banner
    assert app.load_with_fallback("demo", loader=only_demo).banner == ""


def test_shelf_loads_each_model_once():
    calls = []

    def loader(name, **_):
        calls.append(name)
        return build_sam("vit_test")

    shelf = app.ModelShelf(loader=loader, capacity=1)
    assert shelf.get("a") is shelf.get("a") and calls == ["a"]
    shelf.get("b")
    shelf.get("a")
    assert calls == ["a", "b", "a"]  # capacity 1: "a" was dropped for "b"


def test_clicks_give_three_ranked_candidates_and_refine_the_current_one(handlers, image_file):
    session = upload(handlers, image_file)
    session, canvas, gallery, _, _ = handlers.click(session, "Foreground point", select([10, 20]))
    assert len(gallery) == 3 and all(c.startswith("IoU ") for c in captions(gallery))
    assert scores(gallery) == sorted(scores(gallery), reverse=True)
    assert canvas.shape == (48, 64, 3)

    session, *_ = handlers.pick(session, select(2))
    picked = session.candidates[2].low_res_logits
    assert session.current == 2 and session.prompts.logits is picked
    args_seen = []
    predict = session.predictor.predict_ranked
    session.predictor.predict_ranked = lambda **kw: args_seen.append(kw) or predict(**kw)
    handlers.click(session, "Background point", select([50, 40]))
    assert args_seen[0]["mask_input"] is picked
    np.testing.assert_array_equal(args_seen[0]["point_labels"], [1, 0])


def test_a_refused_click_warns_and_keeps_the_prompts(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before = session.prompts
    with pytest.warns(UserWarning, match="outside the 64x48 image"):
        outputs = handlers.click(session, "Foreground point", select([64, 5]))
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and len(session.candidates) == 3


def test_box_mode_takes_two_corners_and_refuses_zero_area(handlers, image_file):
    session = upload(handlers, image_file)
    _, _, gallery, _, _ = handlers.click(session, "Box (two clicks)", select([5, 5]))
    assert gallery == [] and session.prompts.pending_corner == (5, 5)
    with pytest.warns(UserWarning, match="zero area"):
        handlers.click(session, "Box (two clicks)", select([5, 30]))
    assert session.prompts.pending_corner == (5, 5)
    _, _, gallery, _, _ = handlers.click(session, "Box (two clicks)", select([40, 30]))
    assert session.prompts.box == (5, 5, 40, 30) and len(gallery) == 3


def test_undo_and_clear(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.click(session, "Background point", select([30, 20]))
    _, _, gallery, _, _ = handlers.undo(session)
    assert len(session.prompts.points) == 1 and len(gallery) == 3
    _, _, gallery, _, _ = handlers.clear(session)
    assert session.prompts.is_empty and gallery == [] and session.current is None


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


def test_annotations_are_capped(handlers, image_file):
    session = upload(handlers, image_file)
    session.max_annotations = 1
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.accept(session, "a")
    handlers.click(session, "Foreground point", select([10, 20]))
    with pytest.warns(UserWarning, match="at most 1 annotations"):
        handlers.accept(session, "b")
    assert len(session.annotations) == 1 and session.current is not None


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


def test_decompression_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(bomb)  # tiny file, 64 megapixels
    assert MAX_IMAGE_PIXELS < 8000 * 8000
    with pytest.raises(ValueError, match="image refused"):
        read_image(bomb)


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


def test_unreadable_uploads_reach_the_handler(tmp_path, image_file):
    from gradio.data_classes import FileData

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    component = app.tolerate_unreadable(gr.Image(type="filepath", image_mode=None))
    assert component.preprocess(FileData(path=str(broken), orig_name="broken.png")) == str(broken)
    assert component.preprocess(FileData(path=image_file, orig_name="photo.png")) == image_file
    assert component.preprocess(None) is None


def test_segment_endpoint_refuses_labels_without_points(handlers, image_file):
    with pytest.raises(gr.Error, match="point_coords must be supplied"):
        handlers.segment(image_file, [], [1], None)
    with pytest.raises(gr.Error, match="list of numbers"):
        handlers.segment(image_file, [["a", 1]], [1], None)


def test_only_annotated_images_are_remembered(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.accept(session, "a")
    for _ in range(3):
        handlers.image(image_file, session, handlers.default_model)
    assert [i.image_id for i in session.images] == [1, 4]
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.accept(session, "b")
    assert [a.image_id for a in session.annotations] == [1, 4]


def test_command_line():
    args = app.parse_args([])
    assert (args.model, args.device, args.precision, args.share) == ("vit_b", None, "auto", False)
    command = "--model m.safetensors --device cpu --precision fp32 --host 0.0.0.0 --port 9 --share"
    args = app.parse_args(shlex.split(command))
    assert (args.model, args.device, args.precision) == ("m.safetensors", "cpu", "fp32")
    assert (args.host, args.port, args.share) == ("0.0.0.0", 9, True)
    with pytest.raises(SystemExit):
        app.parse_args(["--precision", "int4"])


def test_gpu_task_wraps_with_spaces_gpu_only_on_zero_gpu(monkeypatch):
    def handler(x):
        return x

    fake_spaces = types.ModuleType("spaces")
    fake_spaces.GPU = lambda fn: ("on a ZeroGPU", fn)
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert app.gpu_task(handler) is handler  # spaces installed, but not on ZeroGPU
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert app.gpu_task(handler) == ("on a ZeroGPU", handler)
    monkeypatch.setitem(sys.modules, "spaces", None)  # ZeroGPU said, but no `spaces` package
    assert app.gpu_task(handler) is handler


# -- text prompts -------------------------------------------------------------------------------


def force_text(session, found: bool) -> None:
    """Make the (random) CLIP always find, or never find, the text."""
    prompter = session.text_prompter()
    threshold = -np.inf if found else np.inf
    prompter.existence_threshold = prompter.verify_threshold = threshold


def test_text_prompt_gives_three_ranked_candidates_with_clip_scores(handlers, image_file):
    session = upload(handlers, image_file)
    force_text(session, found=True)
    session, canvas, gallery, _, status = handlers.text(session, "red circle")
    assert len(gallery) == 3 and canvas.shape == (48, 64, 3)
    assert all(re.fullmatch(r"IoU -?\d\.\d\d · CLIP \d\.\d\d", c) for c in captions(gallery))
    assert scores(gallery) == sorted(scores(gallery), reverse=True)
    assert status.startswith('Found "red circle"') and "untrained CLIP" in status
    assert session.prompts.text == "red circle" and session.current == 0
    assert session.candidates[0].mask.shape == (48, 64)


def test_text_not_found_is_a_message_not_a_mask(handlers, image_file):
    session = upload(handlers, image_file)
    force_text(session, found=False)
    _, _, gallery, _, status = handlers.text(session, "  purple   elephant ")
    assert gallery == [] and session.current is None
    assert status.startswith('Not found: "purple elephant" does not appear in the image')


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_text_warns_and_keeps_the_prompts(handlers, image_file, text):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    before = session.prompts
    with pytest.warns(UserWarning, match="the text is empty"):
        outputs = handlers.text(session, text)
    assert all(is_skip(o) for o in outputs)
    assert session.prompts is before and len(session.candidates) == 3


def test_clicks_extend_or_cut_the_text_result(handlers, image_file):
    session = upload(handlers, image_file)
    force_text(session, found=True)
    prompter = session.text_prompter()
    calls = []
    segment = prompter.segment
    prompter.segment = lambda *a, **kw: calls.append(kw) or segment(*a, **kw)
    handlers.text(session, "red circle")
    assert calls[-1]["points"] is None and calls[-1]["box"] is None
    handlers.click(session, "Foreground point", select([10, 20]))
    _, _, gallery, _, status = handlers.click(session, "Background point", select([50, 40]))
    np.testing.assert_array_equal(calls[-1]["points"], [[10, 20], [50, 40]])
    np.testing.assert_array_equal(calls[-1]["labels"], [1, 0])
    assert len(gallery) == 3 and "CLIP" in captions(gallery)[0] and status.startswith("Found")
    handlers.click(session, "Box (two clicks)", select([2, 2]))
    handlers.click(session, "Box (two clicks)", select([40, 30]))
    np.testing.assert_array_equal(calls[-1]["box"], [2, 2, 40, 30])


def test_undo_removes_the_text_and_clear_forgets_it(handlers, image_file):
    session = upload(handlers, image_file)
    force_text(session, found=True)
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.text(session, "red circle")
    handlers.text(session, "blue square")
    assert session.prompts.text == "blue square"
    handlers.undo(session)
    assert session.prompts.text == "red circle"
    _, _, gallery, _, status = handlers.undo(session)
    assert session.prompts.text is None and status == "" and "CLIP" not in captions(gallery)[0]
    handlers.text(session, "red circle")
    _, _, gallery, _, status = handlers.clear(session)
    assert session.prompts.text is None and gallery == [] and status == ""


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

    handlers = app.Handlers(app.ModelShelf(device="cpu", clip_loader=offline), tiny_checkpoint)
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


def test_which_clip_serves_which_model(monkeypatch, tmp_path, random_clip):
    assert text_models.clip_kind("demo") == text_models.clip_kind("x.safetensors") == "demo"
    assert {text_models.clip_kind(m) for m in ("vit_b", "vit_l", "vit_h")} == {"default"}
    monkeypatch.setattr(text_models, "DEMO_CLIP_CHECKPOINT", tmp_path / "absent.safetensors")
    monkeypatch.setattr(text_models, "create_random_clip", lambda *_: random_clip)
    model = text_models.load_text_model("demo")
    assert model.clip is random_clip and "untrained" in model.note

    def offline(*_, **__):
        raise ClipLoadError("could not load CLIP model: offline")

    monkeypatch.setattr(text_models, "load_clip", offline)
    with pytest.raises(ClipLoadError, match="Text prompts need the CLIP model ViT-B-16") as info:
        text_models.load_text_model("default")
    assert "keep working" in str(info.value) and "offline" in str(info.value)


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


def encoder_runs(session) -> list:
    runs = []
    session.predictor.model.image_encoder.register_forward_hook(lambda *_: runs.append(1))
    return runs


def test_segment_everything_colours_every_mask_without_re_encoding(handlers, image_file):
    session = upload(handlers, image_file)
    session.everything_settings = KEEP_ALL
    runs = encoder_runs(session)
    handlers.click(session, "Foreground point", select([10, 20]))
    *views, picture = handlers.everything(session)
    assert runs == []  # the image embedding cached at upload is reused
    assert picture.shape == (48, 64, 3) and picture.dtype == np.uint8
    assert views[4] == f"Segment everything found {len(session.everything)} masks."
    assert len(session.everything) > 0
    areas = [r["area"] for r in session.everything]
    assert areas == sorted(areas, reverse=True)
    assert len(session.prompts.points) == 1 and len(session.candidates) == 3  # prompts kept


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


def test_prefill_respects_the_annotation_cap(handlers, image_file):
    from sam.io.masks import coco_encode_rle, masks_to_rle

    session = upload(handlers, image_file)
    session.everything_settings = KEEP_ALL
    session.max_annotations = 1
    masks = np.zeros((3, 48, 64), bool)
    masks[0, :10], masks[1, 20:30], masks[2, 40:] = True, True, True
    session.everything = [
        {
            "segmentation": coco_encode_rle(rle),
            "area": int(mask.sum()),
            "predicted_iou": 0.9,
            "stability_score": 0.97,
            "point_coords": [[1.0, 1.0]],
        }
        for mask, rle in zip(masks, masks_to_rle(masks), strict=True)
    ]
    handlers.prefill(session, "")
    assert len(session.annotations) == 1
    np.testing.assert_array_equal(session.annotations[0].mask, masks[0])
    assert "2 more did not fit: at most 1 annotations" in session.status


# -- awkward images -----------------------------------------------------------------------------


def saved(tmp_path, name: str, image: Image.Image, **options) -> str:
    image.save(tmp_path / name, **options)
    return str(tmp_path / name)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    grey = read_image(saved(tmp_path, "deep.png", Image.fromarray(ramp)))
    assert grey.shape == (48, 64, 3) and grey.dtype == np.uint8
    np.testing.assert_allclose(grey[..., 0], ramp / 257, atol=1)
    unit = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    floats = read_image(saved(tmp_path, "float.tiff", Image.fromarray(unit, mode="F")))
    np.testing.assert_allclose(floats[..., 0], unit * 255, atol=1)


def test_cmyk_grayscale_palette_and_alpha_images_become_rgb(tmp_path):
    cases = {
        "cmyk.jpg": Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
        "grey.png": Image.new("L", (30, 20), 77),
        "palette.png": Image.new("P", (30, 20)),
        "alpha.png": Image.new("RGBA", (30, 20), (255, 0, 0, 0)),
        "one_bit.png": Image.new("1", (30, 20)),
    }
    for name, image in cases.items():
        pixels = read_image(saved(tmp_path, name, image))
        assert pixels.shape == (20, 30, 3) and pixels.dtype == np.uint8, name
    assert tuple(read_image(tmp_path / "cmyk.jpg")[0, 0]) == pytest.approx((255, 0, 0), abs=3)
    assert tuple(read_image(tmp_path / "grey.png")[0, 0]) == (77, 77, 77)


def test_exif_rotation_and_animations(tmp_path):
    upright = Image.new("RGB", (30, 20), (0, 255, 0))
    exif = upright.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    assert read_image(saved(tmp_path, "rotated.jpg", upright, exif=exif)).shape == (30, 20, 3)
    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = saved(tmp_path, "animated.gif", frames[0], save_all=True, append_images=frames[1:])
    first = read_image(path)
    assert first.shape == (20, 30, 3) and tuple(first[0, 0]) == (255, 0, 0)


def test_tiny_and_extreme_images_can_be_prompted(handlers, tmp_path):
    for size in ((1, 1), (500, 5), (5, 500), (3000, 2000)):
        path = saved(tmp_path, f"{size[0]}x{size[1]}.png", Image.new("RGB", size, (9, 9, 9)))
        session, canvas, *_ = handlers.image(path, None, handlers.default_model)
        assert canvas.shape[:2] == (size[1], size[0])
        _, _, gallery, _, _ = handlers.click(session, "Foreground point", select([0, 0]))
        assert len(gallery) == 3
    thin = saved(tmp_path, "thin.png", Image.new("RGB", (2000, 3)))
    with pytest.warns(UserWarning, match=r"2000x3 is too thin \(at most 100:1"):
        assert all(is_skip(o) for o in handlers.image(thin, session, handlers.default_model))


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


def test_the_server_limits_upload_size(monkeypatch):
    launched = {}

    class Page:
        def launch(self, **options):
            launched.update(options)

    monkeypatch.setattr(app, "build_demo", lambda *_, **__: Page())
    app.main(["--model", "demo"])
    assert launched["max_file_size"] == app.MAX_FILE_SIZE == "25mb"
