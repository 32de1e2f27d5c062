"""What the page says about the model serving it (prompts/model_notice.py)."""

from __future__ import annotations

from prompts.model_notice import fix_for, model_title, serving_notice


def test_the_model_asked_for_is_named_plainly():
    assert serving_notice("vit_b", "vit_b") == "Serving **Meta's vit_b**."
    assert serving_notice("/w/mine.safetensors", "/w/mine.safetensors") == (
        "Serving **mine.safetensors**."
    )
    assert "knows coloured shapes only" in serving_notice("demo", "demo")
    assert model_title("vit_test") == "an untrained test model"


def test_a_fallback_says_what_serves_why_and_one_fix():
    notice = serving_notice("vit_l", "demo", offline=True)
    assert notice.startswith("⚠️ Serving **the bundled demo model**")
    assert "because this machine is offline" in notice
    assert notice.count("https://") == 1 and "facebook/sam-vit-large" in notice
    assert notice.count("python app.py") == 1 and "Error" not in notice
    assert len(notice) < 320
    assert "could not be loaded" in serving_notice("/x.pth", "demo")
    assert "check that the file exists" in fix_for("/x.pth")
    assert "untrained test model" in serving_notice("vit_b", "vit_test")
