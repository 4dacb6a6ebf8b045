"""Saving and loading the task models (VQA, captioning, detection): a folder with config.json (which names
its task), tokenizer.json and model.safetensors, each written atomically, like a CLIP model's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Protocol

import torch

from ..build import attach
from ..config import TaskConfig
from ..data.images import Preprocess
from ..errors import BadInput, NotFound
from ..files import atomic_path, write_json_atomic
from ..models.captioner import Captioner, CaptionerConfig
from ..models.detector import Detector, DetectorConfig
from ..models.vqa import VQAConfig, VQAModel
from ..saved import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, load_weights, save_weights
from ..tokenizer import Tokenizer



class TaskModel(Protocol):
    """What saving and loading need of a task model (VQAModel, Captioner): a config that names
    its task and round-trips through JSON, the tokenizer and preprocessing `attach` gives it,
    and its weights."""

    config: TaskConfig
    tokenizer: Tokenizer
    preprocess: Preprocess

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def eval(self) -> "TaskModel": ...


TASKS: dict[str, tuple[Callable[..., TaskModel], type[TaskConfig]]] = {
    "vqa": (VQAModel, VQAConfig), "caption": (Captioner, CaptionerConfig), "detect": (Detector, DetectorConfig)}


def save_task_model(model: TaskModel, folder: str | Path, weights: bool = True) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TOKENIZER_FILE) as tmp:
        model.tokenizer.save(tmp)
    write_json_atomic(folder / CONFIG_FILE, model.config.to_dict())
    if weights:
        save_weights(model, folder / WEIGHTS_FILE)


def build_task_model(folder: str | Path, task: str) -> TaskModel:
    """The folder's model with fresh weights (what a resumed run starts from)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise NotFound(f"{folder}: no {CONFIG_FILE}; pass a folder written by grounding train-{task}")
    raw = json.loads((folder / CONFIG_FILE).read_text())
    if raw.get("task") != task:
        found = raw.get("task", "a CLIP model")
        raise BadInput(f"{folder} holds {found}, not a {task} model: train one with grounding train-{task}")
    model_class, config_class = TASKS[task]
    config = config_class.from_dict(raw)
    tokenizer = Tokenizer.from_file(folder / TOKENIZER_FILE, config.towers.text.context_length)
    return attach(model_class(config), tokenizer)


def run_model(out: Path, task: str, create: Callable[[], TaskModel], seed: int) -> TaskModel:
    """The model of the run in `out`: rebuilt from its config when the run exists (its newest
    checkpoint then fills in the weights), else `create()`d and its config written. Either way
    the global seed is left as a fresh run leaves it."""
    if (Path(out) / CONFIG_FILE).is_file():
        model = build_task_model(out, task)
        torch.manual_seed(seed)
        return model
    model = create()
    save_task_model(model, out, weights=False)  # checkpoints publish the weights
    return model


def load_task_model(folder: str | Path, task: str) -> TaskModel:
    """A folder written by grounding train-TASK (a detector may also be a Hugging Face OWL-ViT
    folder, or the hub repo that holds one)."""
    from ..formats.owlvit import is_owlvit_folder, load_owlvit_folder
    from ..hub import fetch, repo_of

    if task == "detect" and is_owlvit_folder(folder):
        return load_owlvit_folder(folder)
    if task == "detect" and not Path(folder).exists() and (repo := repo_of(str(folder), "detect")):
        return load_owlvit_folder(fetch(repo))  # an OWL-ViT on the hub: google/owlvit-base-patch32
    model = build_task_model(folder, task)
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise NotFound(f"{folder}: no {WEIGHTS_FILE} yet; a training run writes it at its first checkpoint")
    load_weights(model, path)
    return model.eval()
