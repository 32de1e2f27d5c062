"""SAM's zero-shot transfer tasks (Kirillov et al. 2023, section 7): edge detection, object
proposals and instance segmentation from detector boxes."""
