"""Segment everything: the automatic mask generator behind SA-1B and its mask operations."""

from sam.automatic.generator import PRESETS, AutomaticMaskGenerator

__all__ = ["PRESETS", "AutomaticMaskGenerator"]
