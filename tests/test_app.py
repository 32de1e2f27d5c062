"""The page's handlers, called directly with a tiny random model (no server, no browser)."""

from __future__ import annotations

import io
import json
import shlex
import warnings
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import app
from prompts.images import MAX_IMAGE_PIXELS, open_image
from sam import CheckpointError, build_sam, save_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.fixture
def handlers(tiny_checkpoint):
    return app.Handlers(app.ModelShelf(device="cpu"), tiny_checkpoint)


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
    session, canvas, gallery, table, editor = outputs
    assert canvas.shape == (48, 64, 3) and gallery == [] and table == []
    assert editor.shape == (48, 64, 3)
    return session


def captions(gallery) -> list[str]:
    return [caption for _, caption in gallery]


def scores(gallery) -> list[float]:
    return [float(caption.split()[1]) for caption in captions(gallery)]


def test_page_builds(tiny_checkpoint):
    assert isinstance(app.build_demo(tiny_checkpoint, device="cpu"), gr.Blocks)


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
    session, canvas, gallery, _ = handlers.click(session, "Foreground point", select([10, 20]))
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
    _, _, gallery, _ = handlers.click(session, "Box (two clicks)", select([5, 5]))
    assert gallery == [] and session.prompts.pending_corner == (5, 5)
    with pytest.warns(UserWarning, match="zero area"):
        handlers.click(session, "Box (two clicks)", select([5, 30]))
    assert session.prompts.pending_corner == (5, 5)
    _, _, gallery, _ = handlers.click(session, "Box (two clicks)", select([40, 30]))
    assert session.prompts.box == (5, 5, 40, 30) and len(gallery) == 3


def test_undo_and_clear(handlers, image_file):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    handlers.click(session, "Background point", select([30, 20]))
    _, _, gallery, _ = handlers.undo(session)
    assert len(session.prompts.points) == 1 and len(gallery) == 3
    _, _, gallery, _ = handlers.clear(session)
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
    _, _, gallery, _ = handlers.brush(session, {"background": None, "layers": [layer]})
    assert len(gallery) == 3 and session.prompts.box == (20, 10, 39, 29)
    assert session.prompts.brush_input.shape == session.candidates[0].low_res_logits.shape
    with pytest.warns(UserWarning, match="nothing is painted"):
        handlers.brush(session, {"background": None, "layers": [np.zeros_like(layer)]})


def test_accept_and_export_coco_and_png(handlers, image_file, tmp_path):
    session = upload(handlers, image_file)
    handlers.click(session, "Foreground point", select([10, 20]))
    mask = session.current_mask.copy()
    _, _, gallery, table = handlers.accept(session, "cat")
    assert gallery == [] and session.prompts.is_empty
    assert table == [[1, "cat", int(mask.sum()), round(session.annotations[0].score, 3)]]
    handlers.click(session, "Foreground point", select([50, 40]))
    handlers.accept(session, "  ")
    coco_path, zip_path = handlers.export(session)

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
        open_image(bomb)


def test_clearing_the_image(handlers, image_file):
    session = upload(handlers, image_file)
    session, canvas, gallery, _, editor = handlers.image(None, session, "ignored")
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
    masks, values = handlers.segment(image_file, [[10, 20]], [1], [2, 2, 40, 40])
    assert len(masks) == 3 and values == sorted(values, reverse=True)
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
