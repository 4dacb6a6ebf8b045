"""Run inside the peers' environment (open_clip needs torchvision, which does not import beside
the CPU torch this project uses). `make`: builds seeded random open_clip models, saves their
state dicts and their outputs on the given inputs. `check`: loads what grounding wrote into open_clip
(a model folder through `create_model("local-dir:...")`, or a state dict into a fresh named model)
and saves its outputs. `own`: a model folder with a vocabulary of its own, tokenized by open_clip
from the folder's tokenizer files; saves the ids and the outputs."""
import sys
from pathlib import Path

import open_clip
import torch

mode, inputs_path, out_path = sys.argv[1:4]
names = sys.argv[4:]
inputs = torch.load(inputs_path, weights_only=True)
results = {}
for name in names:
    torch.manual_seed(0)
    if mode == "make":
        model = open_clip.create_model(name, pretrained=None)
    else:
        path = Path(inputs[f"{name}/path"])
        model = open_clip.create_model(f"local-dir:{path}") if path.is_dir() else open_clip.create_model(name)
        if not path.is_dir():
            model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pixels = inputs[f"pixels{size}"]
    ids = inputs["ids"]
    if mode == "own":
        ids = open_clip.get_tokenizer(f"local-dir:{inputs[f'{name}/path']}")(inputs["texts"])
        results[f"{name}/ids"] = ids
    with torch.no_grad():
        image = model.encode_image(pixels)
        text = model.encode_text(ids)
        logits = model.logit_scale.exp() * torch.nn.functional.normalize(image, dim=-1) @ \
            torch.nn.functional.normalize(text, dim=-1).t()
    results[f"{name}/image"], results[f"{name}/text"], results[f"{name}/logits"] = image, text, logits
    if mode == "make":
        torch.save(model.state_dict(), f"{out_path}.{name}.pt")
torch.save(results, out_path)
