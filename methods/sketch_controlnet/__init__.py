"""Sketch + ControlNet (Kim & Hong 2025): see the card ``methods/sketch_controlnet/README.md``."""
