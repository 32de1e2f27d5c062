"""What a person gives (clicks, boxes, brush strokes, text through CLIP) turned into model
prompts; the page-side session that shows the resulting masks and collects annotations, the
page's event handlers and model shelf; ``python -m prompts segment-text``; and the tiny demo
CLIP's trainer. Imports ``sam``, never the other way round."""
