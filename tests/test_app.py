from __future__ import annotations

import gradio as gr

import app


def test_page_builds():
    assert isinstance(app.build_demo(), gr.Blocks)
