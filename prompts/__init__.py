"""What a person gives (clicks, boxes, brush strokes) turned into model prompts, and the
page-side session that shows the resulting masks and collects annotations."""
