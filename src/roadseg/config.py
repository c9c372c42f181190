"""Configuration: dataclasses hold every default; YAML files and `key=value` overrides change them.

Unknown keys, wrong types and out-of-range values raise ConfigError naming the key, with a
close-match suggestion for misspelt keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from roadseg.errors import ConfigError


@dataclass
class ModelConfig:
    num_classes: int = 2
    fc_width: int = 4096  # channels of fc6/fc7 (4096 as in VGG16's classifier)
    fc_kernel: int = 1  # fc6 kernel size (1x1 by default; the paper's is 7)
    dropout: float = 0.5
    skip_init: str = "zero"  # "zero": skip score layers start at 0; "scaled": FCN at-once scaling
    encoder: str = "vgg16"  # architecture: vgg16 | efficientnet_lite0 | efficientnet_lite2
    # pretrained encoder weights: auto (the encoder's default: hed for vgg16, efficientnet-lite0/2 for Lite)
    # | hed | keras | torchvision | efficientnet-lite0 | efficientnet-lite2 | none | path to a file
    weights: str = "auto"
    skips: list[int] = field(default_factory=lambda: [16, 8])  # skip strides: [16, 8] is FCN-8s, [16, 8, 4] FCN-4s, [16, 8, 4, 2] FCN-2s


FAR_ZOOM = 2.0  # the far band's zoom: --far-zoom without a factor (eval, predict, benchmark), data.far_zoom's samples


@dataclass
class DataConfig:
    dataset: str = "kitti"  # kitti | camvid | folder
    root: str = "../shared/data/kitti_road"
    task: str = "road"  # kitti: road | lane
    categories: list[str] = field(default_factory=lambda: ["um", "umm", "uu"])
    val_last_n: int = 10  # kitti: the last N frames of each category are the validation split
    train_list: str | None = None  # optional file of frame names (overrides val_last_n)
    val_list: str | None = None
    # folder dataset: images + masks, road and ignore given as a grey id or an "R,G,B" colour
    image_dir: str = "images"
    mask_dir: str = "masks"
    road_value: str = "1"
    ignore_value: str | None = None
    # geometry: the network sees frames resized by `scale`; training crops at `crop` (h, w)
    scale: float = 1.0
    crop: list[int] | None = None
    scale_jitter: list[float] = field(default_factory=lambda: [1.0, 1.0])
    hflip: bool = True
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter
    # the top fraction of every frame's rows, where the data never has road (sky, trees, buildings above the
    # horizon): cut before the network in training and inference (stored in the model file; 0 = whole frames)
    top_crop: float = 0.0
    # the probability that a training sample is the far band only (the rows from the top crop to 70% of the height)
    # at twice the scale (times the jitter), as inference's far zoom (--far-zoom) shows it; 0 = whole frames only
    far_zoom: float = 0.0
    workers: int = 0
    # more labelled frames for training only (never validation): each a mapping with dataset and root, optionally
    # splits (default [train]), scale (the network scale for those frames, default data.scale), road_value,
    # ignore_value, image_dir, mask_dir; the same crop, jitter, flip and colour jitter as the main frames
    extra: list[dict] = field(default_factory=list)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 4  # global batch (split across ranks under DDP)
    lr: float = 1e-4  # for the global batch
    weight_decay: float = 1e-4
    optimizer: str = "adam"  # adam | adamw (decoupled weight decay) | sgd
    schedule: str = "poly"  # poly | cosine | constant
    warmup_epochs: float = 0.0
    freeze_blocks: int = 0  # freeze VGG blocks 1..N
    init: str | None = None  # start from this checkpoint's weights (path or shipped name); a fresh schedule
    # knowledge distillation: a trained model (path or shipped name) whose road probabilities on the same augmented
    # frames are soft targets; loss = (1 - distill) * the task loss + distill * cross-entropy to the teacher
    teacher: str | None = None
    distill: float | None = None  # default 0.5 with a teacher; (0, 1]
    encoder_lr: float = 1.0  # the encoder's learning rate as a fraction of train.lr (the new layers get lr)
    loss: str = "ce"  # ce (per-pixel cross-entropy) | ce_dice (plus soft Dice of the road class)
    # per-pixel weights of the cross-entropy (and of Dice and distillation): none | bev_area, each pixel weighted by
    # the bird's-eye-view cells that take it (KITTI's server scores in that view, where the far road, a thin band of
    # rows below the horizon, holds most cells), at least 1 (as plain cross-entropy: near road and everything outside
    # the 20 m x 40 m area still learn; the near road, where cells are sparser than pixels, is not aliased into 0/1)
    # and at most pixel_weight_max. Frames without a calibration file weigh 1 everywhere. Weights are relative: the
    # loss is the weighted sum over the weighted count, so no normalisation is needed and its scale stays that of
    # plain cross-entropy
    pixel_weight: str = "none"
    # a pixel counts at most this many times. On the 214 calibrated KITTI frames the farthest pixels take 58-74
    # cells; 32 caps only pixels beyond ~38 m (about a tenth of the cells, under 2% of the summed weight), where a
    # pixel row spans 1.2-1.8 m of road and a one-pixel label or alignment error would cost as much as 70 near pixels
    pixel_weight_max: int = 32
    precision: str = "auto"  # auto (bf16 on CPU with support, amp on CUDA) | fp32 | bf16 | fp16
    grad_clip: float = 10.0
    # exponential moving average of the weights (0: off), e.g. 0.99: validation, last.pt/best.pt's "model" and what
    # `release` ships are the average; the weights being trained are kept beside it for --resume
    ema: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads (0: library default)
    val_every: int = 1
    val_scale: float | None = None  # network input scale at validation (default: data.scale)
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit)
    time_budget_min: float = 0.0  # stop (with a checkpoint) after this many minutes of this invocation
    out_dir: str = "runs"
    name: str = "run"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def inference_scale(self) -> float:
        """The network input scale this model runs at: train.val_scale, else data.scale (the one place of that rule)."""
        return self.train.val_scale or self.data.scale


_RANGES = {
    "model.num_classes": (2, 1000),
    "model.fc_width": (0, 8192),
    "model.fc_kernel": (1, 7),
    "model.dropout": (0.0, 0.99),
    "data.val_last_n": (0, 10_000),
    "data.scale": (0.05, 4.0),
    "data.color_jitter": (0.0, 1.0),
    "data.top_crop": (0.0, 0.9),
    "data.far_zoom": (0.0, 1.0),
    "data.workers": (0, 64),
    "train.epochs": (1, 100_000),
    "train.batch_size": (1, 4096),
    "train.lr": (0.0, 10.0),
    "train.weight_decay": (0.0, 1.0),
    "train.warmup_epochs": (0.0, 1000.0),
    "train.freeze_blocks": (0, 5),
    "train.grad_clip": (0.0, 1e9),
    "train.ema": (0.0, 0.99999),
    "train.encoder_lr": (0.0, 100.0),
    "train.val_every": (1, 1000),
    "train.max_steps": (0, 10**9),
    "train.time_budget_min": (0.0, 10**6),
    "train.threads": (0, 1024),
    "train.pixel_weight_max": (1, 255),  # weight maps are kept as 8-bit counts
}
_CHOICES = {
    "model.skip_init": ("zero", "scaled"),
    "model.encoder": ("vgg16", "efficientnet_lite0", "efficientnet_lite2"),
    "data.dataset": ("kitti", "camvid", "folder"),
    "data.task": ("road", "lane"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("poly", "cosine", "constant"),
    "train.loss": ("ce", "ce_dice"),
    "train.pixel_weight": ("none", "bev_area"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.device": ("auto", "cpu", "cuda"),
}


def _short(value) -> str:
    """A value for an error message, cut short (a YAML alias bomb expands to billions of elements when printed)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlist = r.maxdict = r.maxtuple = 6
    r.maxstring = r.maxother = 80
    r.maxlevel = 3
    return r.repr(value)


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(path: str, value, hint):
    """Check `value` against the dataclass field type `hint`; return the converted value."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(path, value, inner[0])
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}': expected a list, got {_short(value)}")
        return [_coerce(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {_short(value)}")
        return dict(value)
    check = _SCALARS.get(hint)
    return value if check is None else check(path, value)


def _bool(path: str, value):
    if not isinstance(value, bool):
        raise ConfigError(f"config key '{path}': expected true/false, got {_short(value)}")
    return value


def _int(path: str, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config key '{path}': expected an integer, got {_short(value)}")
    return value


def _float(path: str, value):
    if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config key '{path}': expected a number, got {_short(value)}")
    return float(value)


def _str(path: str, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key '{path}': expected a string, got {_short(value)}")
    return value


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}


def _apply(obj, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{path}'{_suggest(key, names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(path, value, hints[key]))


def validate(cfg: Config) -> Config:
    for path, (lo, hi) in _RANGES.items():
        section, key = path.split(".")
        v = getattr(getattr(cfg, section), key)
        if not lo <= v <= hi:
            raise ConfigError(f"config key '{path}': {v} is out of range [{lo}, {hi}]")
    for path, options in _CHOICES.items():
        section, key = path.split(".")
        v = getattr(getattr(cfg, section), key)
        if v not in options:
            raise ConfigError(f"config key '{path}': '{v}' is not one of {', '.join(options)}{_suggest(v, options)}")
    if cfg.data.crop is not None and (len(cfg.data.crop) != 2 or min(cfg.data.crop) < 32):
        raise ConfigError(f"config key 'data.crop': expected [height, width], each >= 32, got {cfg.data.crop}")
    if cfg.model.skips != [16, 8, 4, 2][: len(cfg.model.skips)]:
        raise ConfigError(f"config key 'model.skips': expected a prefix of [16, 8, 4, 2], got {cfg.model.skips}")
    if cfg.model.encoder == "vgg16" and 4 in cfg.model.skips:
        raise ConfigError("config key 'model.skips': vgg16 provides skips at strides 16 and 8 only")
    _check_extra(cfg.data)
    t = cfg.train
    if t.distill is not None and not t.teacher:
        raise ConfigError("config key 'train.distill': weighs a teacher's soft targets; set train.teacher too")
    if t.teacher and t.distill is None:
        t.distill = 0.5
    if t.distill is not None and not 0.0 < t.distill <= 1.0:
        raise ConfigError(f"config key 'train.distill': {t.distill} is out of range (0, 1]")
    if t.pixel_weight == "bev_area" and cfg.data.dataset != "kitti":
        raise ConfigError("config key 'train.pixel_weight': bev_area weighs pixels by KITTI's bird's-eye view, from "
                          "the frames' calibration files; it needs data.dataset: kitti")
    sj = cfg.data.scale_jitter
    if len(sj) != 2 or not 0 < sj[0] <= sj[1]:
        raise ConfigError(f"config key 'data.scale_jitter': expected [min, max] with 0 < min <= max, got {sj}")
    return cfg


EXTRA_KEYS = ("dataset", "root", "splits", "scale", "road_value", "ignore_value", "image_dir", "mask_dir")


def _check_extra(d: DataConfig) -> None:
    seen = set()
    for i, e in enumerate(d.extra):
        where = f"config key 'data.extra[{i}]'"
        unknown = [k for k in e if k not in EXTRA_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}' (keys: {', '.join(EXTRA_KEYS)})")
        if e.get("dataset") not in _CHOICES["data.dataset"] or not isinstance(e.get("root"), str):
            raise ConfigError(f"{where}: needs dataset ({', '.join(_CHOICES['data.dataset'])}) and root")
        for k in ("road_value", "ignore_value", "image_dir", "mask_dir"):
            if k in e and (e["dataset"] != "folder" or isinstance(e[k], bool) or not isinstance(e[k], (str, int))):
                raise ConfigError(f"{where}.{k}: " + ("a string (folder datasets only)" if e["dataset"] == "folder"
                                                        else f"applies to folder datasets, not {e['dataset']}"))
        if "splits" in e:  # CamVid's frames come in folders per split; KITTI and folder extras give every frame
            splits = e["splits"]
            if e["dataset"] != "camvid":
                raise ConfigError(f"{where}.splits: applies to camvid; a {e['dataset']} extra gives every frame")
            if (not isinstance(splits, list) or not splits or len(set(map(str, splits))) != len(splits)
                    or not all(x in ("train", "val", "test") for x in splits)):
                raise ConfigError(f"{where}.splits: a list of distinct train / val / test, got {_short(splits)}")
        scale, (lo, hi) = e.get("scale", d.scale), _RANGES["data.scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not lo <= scale <= hi:
            raise ConfigError(f"{where}.scale: a number in [{lo}, {hi}], got {_short(scale)}")
        key = (e["dataset"], os.path.normpath(e["root"]), tuple(e.get("splits", ["train"])))
        if key in seen:
            raise ConfigError(f"{where}: the same frames are listed twice")
        seen.add(key)
    if d.extra and d.crop is None:
        raise ConfigError("config key 'data.extra': frames of several datasets are batched together; set data.crop")


def parse_override(text: str) -> dict:
    """'train.lr=3e-4' -> {'train': {'lr': 0.0003}} (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc.__class__.__name__})") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


LEGACY_WEIGHTS = ("hed", "keras", "torchvision", "none")


def _migrate(data: dict) -> dict:
    """Configs written before encoders were pluggable named the VGG16 weights source `model.encoder`."""
    m = data.get("model") if isinstance(data, dict) else None
    if isinstance(m, dict) and "weights" not in m and isinstance(m.get("encoder"), str) and (
            m["encoder"] in LEGACY_WEIGHTS or "/" in m["encoder"] or m["encoder"].endswith((".h5", ".pth"))):
        data = {**data, "model": {**m, "encoder": "vgg16", "weights": m["encoder"]}}
    return data


def from_dict(data: dict | None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    _apply(cfg, _migrate(data or {}))
    for text in overrides or []:
        _apply(cfg, parse_override(text))
    return validate(cfg)


# config keys that name files or folders; model.weights and train.init only when the value looks like a path
# (not a source or shipped-model name such as "hed" or "kitti-lite0")
PATH_KEYS = ("data.root", "data.train_list", "data.val_list", "train.out_dir", "train.init", "train.teacher",
             "model.weights")


def _is_path(key: str, value) -> bool:
    if not isinstance(value, str) or not value:
        return False
    if key in ("train.init", "train.teacher", "model.weights"):
        return "/" in value or "\\" in value or Path(value).suffix.lower() in (".pt", ".pth", ".h5")
    return True


def map_paths(cfg: dict, fn) -> dict:
    """A copy of a config dict (sections of keys) with fn(value) applied to each path-valued key."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for key in PATH_KEYS:
        section, name = key.split(".")
        if isinstance(out.get(section), dict) and _is_path(key, out[section].get(name)):
            out[section][name] = fn(out[section][name])
    data = out.get("data")
    if isinstance(data, dict) and isinstance(data.get("extra"), list):  # data.extra[i].root
        data["extra"] = [{**e, "root": fn(e["root"])} if isinstance(e, dict) and _is_path("data.root", e.get("root"))
                         else e for e in data["extra"]]
    return out


def resolve_paths(cfg: dict, base: str | Path) -> dict:
    """Relative paths in `cfg` taken as relative to the folder `base`, made absolute (and normalised)."""
    return map_paths(cfg, lambda v: os.path.normpath(os.path.join(os.path.abspath(base), os.path.expanduser(v))))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A config file plus key=value overrides. Paths in the file resolve against the file's folder, paths given
    as overrides against the working directory; both are stored absolute, so a run's config means one thing."""
    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of sections (model, data, train)")
        data = resolve_paths(data, p.parent)
    cfg = from_dict(data, overrides)
    if overrides:
        named = {k.split("=", 1)[0].strip() for k in overrides}
        fixed = resolve_paths({s: {k: v for k, v in vars(getattr(cfg, s)).items() if f"{s}.{k}" in named}
                               for s in ("model", "data", "train")}, Path.cwd())
        for section, values in fixed.items():
            for k, v in values.items():
                setattr(getattr(cfg, section), k, v)
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
