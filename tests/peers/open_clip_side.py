"""Run inside the peers' environment (open_clip needs torchvision, which does not import beside
the CPU torch this project uses). `make`: builds seeded random open_clip models, saves their
state dicts and their outputs on the given inputs. `check`: loads state dicts written by
grounding into fresh open_clip models and saves their outputs."""
import sys

import open_clip
import torch

mode, inputs_path, out_path = sys.argv[1:4]
names = sys.argv[4:]
inputs = torch.load(inputs_path, weights_only=True)
results = {}
for name in names:
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    if mode == "check":
        model.load_state_dict(torch.load(inputs[f"{name}/path"], weights_only=True))
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pixels = inputs[f"pixels{size}"]
    with torch.no_grad():
        image = model.encode_image(pixels)
        text = model.encode_text(inputs["ids"])
        logits = model.logit_scale.exp() * torch.nn.functional.normalize(image, dim=-1) @ \
            torch.nn.functional.normalize(text, dim=-1).t()
    results[f"{name}/image"], results[f"{name}/text"], results[f"{name}/logits"] = image, text, logits
    if mode == "make":
        torch.save(model.state_dict(), f"{out_path}.{name}.pt")
torch.save(results, out_path)
