"""What the page says about the model serving it: one plain sentence, plus one fix when it is
not the model that was asked for. Markdown, shown in the page's notice near the results."""

from __future__ import annotations

from sam.weights.checkpoint import HUB_REPOS

DEMO_MODEL = "demo"
FALLBACK_MODEL = "vit_test"


def model_title(name: str) -> str:
    """How a model is named to a person: Meta's by name, a file by its file name."""
    if name == DEMO_MODEL:
        return "the bundled demo model"
    if name == FALLBACK_MODEL:
        return "an untrained test model"
    if name in HUB_REPOS:
        return f"Meta's {name}"
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or name


def serving_notice(requested: str, used: str, offline: bool = False) -> str:
    """The notice for ``used`` serving when ``requested`` was asked for (``offline``: the Hub
    could not be reached)."""
    if used == requested:
        if used == DEMO_MODEL:
            return (
                "Serving **the bundled demo model**, a toy that knows coloured shapes only: try "
                "the shape examples, or choose vit_b in the Model menu for photos."
            )
        return f"Serving **{model_title(used)}**."
    if used == DEMO_MODEL:
        serving = "**the bundled demo model**, a toy that knows coloured shapes only"
    else:
        serving = "**an untrained test model** whose masks are meaningless"
    why = "this machine is offline" if offline else f"{requested} could not be loaded"
    return f"⚠️ Serving {serving}, because {why}. {fix_for(requested)}"


def fix_for(requested: str) -> str:
    """The one thing to do to get ``requested`` served."""
    command = "`python app.py --model /path/to/model.safetensors`"
    if requested in HUB_REPOS:
        url = f"https://huggingface.co/{HUB_REPOS[requested]}"
        return f"To use {requested}, download model.safetensors from {url} and run {command}."
    if requested == DEMO_MODEL:
        return "To use it, restore assets/demo/sam_demo.safetensors from the repository."
    return f"To use it, check that the file exists and holds SAM weights, then run {command}."
