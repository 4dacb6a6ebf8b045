"""`python -m grounding` is the `grounding` command; torchrun starts it as `torchrun ... -m grounding train`."""
from .interfaces.cli import app

app(prog_name="grounding")
