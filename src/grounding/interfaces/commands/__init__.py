"""The command groups of `grounding`, one module each; interfaces/cli.py joins them into one app."""
