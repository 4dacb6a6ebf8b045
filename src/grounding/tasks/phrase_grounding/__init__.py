"""Phrase grounding: where in an image a phrase is (locate.py), and the pointing game (evaluate.py)."""
