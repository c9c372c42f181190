"""The training loop: fit(config) -> run directory.

Per-pixel cross-entropy (ignore index 255), Adam or SGD with warmup + poly/cosine schedule, optional frozen
early VGG blocks, bf16 autocast on CPU / AMP on CUDA, gradient clipping, deterministic seeding, validation with
the KITTI measures every `val_every` epochs, `last.pt` + `best.pt` (by validation MaxF) written atomically,
exact `resume`, metrics.csv and PNG curves. Under torchrun it runs DistributedDataParallel; rank 0 writes.

train.pixel_weight bev_area weights each pixel's cross-entropy by the bird's-eye-view cells that take it (KITTI's
server scores in that view, where about 60% of the cells come from a thin band of rows below the horizon): weight =
clip(cells, 1, train.pixel_weight_max), 1 for frames without a calibration file. The loss is then the weighted sum
over the summed weight of the evaluated pixels, pooled over the global batch as the unweighted mean is: near road
and everything off the grid still count as in plain cross-entropy, the far road up to pixel_weight_max (32) times
more.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from roadseg import __version__
from roadseg.config import Config, from_dict, to_dict
from roadseg.data import TrainTransform, build_dataset, build_training_set, collate
from roadseg.data.datasets import IGNORE, trained_frame_height, use_bev_weights
from roadseg.data.io import atomic_write, check_writable
from roadseg.device import cpu_arch, cpu_name, cpu_supports_bf16, key_flags
from roadseg.engine import distributed as dist
from roadseg.engine.evaluate import evaluate
from roadseg.errors import ConfigError, RoadsegError
from roadseg.inference.predictor import Predictor
from roadseg.models import build_model
from roadseg.models.checkpoint import atomic_save, load_checkpoint, load_weights, make_checkpoint, model_from_checkpoint
from roadseg.models.shipped import locate
from roadseg.models.weights import Preprocess
from roadseg.plots import plot_curves

log = logging.getLogger(__name__)


class TrainingError(RoadsegError):
    """Training cannot go on (e.g. a non-finite loss)."""


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device):
    """None for fp32, else the autocast dtype. 'auto': bf16 on CPUs that support it, bf16/fp16 on CUDA."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    if precision == "bf16":
        if device.type == "cpu" and not cpu_supports_bf16():
            raise ConfigError("train.precision: bf16 needs a CPU with AVX-512 BF16 or AMX (use fp32)")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.precision: fp16 autocast is for CUDA; use bf16 or fp32 on CPU")
        return torch.float16
    return None


def dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - soft Dice of the road class (class 1) over the evaluated pixels of the (local) batch; with per-pixel
    `weight` (N, H, W) each pixel counts weight times in the sums (with bev_area weights: the soft F-measure of the
    bird's-eye view)."""
    p = torch.softmax(logits.float(), dim=1)[:, 1]
    valid = (target != IGNORE).to(p.dtype)
    if weight is not None:
        valid = valid * weight.to(p.dtype)
    road = (target == 1).to(p.dtype) * valid
    inter = (p * road).sum()
    return 1 - (2 * inter + 1) / ((p * valid).sum() + road.sum() + 1)


def loss_fn(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over evaluated pixels (0 when a batch has none, instead of NaN); with per-pixel `weight`
    (N, H, W) the weighted mean: sum of weight x cross-entropy over the sum of weight, evaluated pixels only.
    Under DDP the mean is over the evaluated pixels of the whole global batch (the count is all-reduced and
    the loss scaled by the world size, as DDP averages gradients), so N processes match one exactly."""
    if weight is None:
        total = F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE, reduction="sum")
        return _pixel_mean(total, target)
    per_pixel = F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE, reduction="none")
    valid = target != IGNORE
    return _pixel_mean((per_pixel * weight)[valid].sum(), target, weight)


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the student's class probabilities to the teacher's (soft targets), averaged over the
    evaluated pixels like loss_fn (weighted like it); it differs from KL(teacher || student) by the teacher's entropy,
    a constant."""
    q = torch.softmax(teacher_logits.float(), 1)
    per_pixel = -(q * torch.log_softmax(logits.float(), 1)).sum(1)
    if weight is not None:
        per_pixel = per_pixel * weight
    return _pixel_mean(per_pixel[target != IGNORE].sum(), target, weight)


def _pixel_mean(total: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """total / (the evaluated pixels of the global batch, or their summed weight), as loss_fn says."""
    valid = target != IGNORE
    count = (weight[valid].sum() if weight is not None else valid.sum()).to(torch.float64)
    rank, world = dist.world()
    if world > 1:
        count = dist.all_reduce_sum(count)
        return total * world / count.clamp(min=1).to(total.dtype)
    return total / count.clamp(min=1).to(total.dtype)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "poly":
        return (1 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def environment() -> dict:
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except Exception:
        git = ""
    import numpy

    return {"roadseg": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "machine": cpu_arch(), "cpu": cpu_name(), "cpu_flags": key_flags(), "cpu_bf16": cpu_supports_bf16(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git": git}


def _noop_progress(total, desc):
    class Bar:
        def update(self, n=1): ...
        def set_postfix(self, **kw): ...
        def close(self): ...
    return Bar()


def fit(cfg: Config, resume: str | Path | None = None, progress=None, run_dir: str | Path | None = None,
        overwrite: bool = False) -> Path:
    """Train a model as configured; returns the run directory (last.pt, best.pt, metrics.csv, plots). A run directory
    that already holds a run is never reused silently: --resume continues it, `overwrite` starts over in it.

    cfg: the resolved Config (roadseg.config.load_config). resume: a last.pt to continue exactly (optimizer, schedule,
    RNG). progress: a callable (total, desc) -> bar with update/set_postfix/close (the CLI passes tqdm). run_dir: the
    folder (default train.out_dir/train.name). Under torchrun every rank calls it; rank 0 writes."""
    progress = progress or _noop_progress
    target = Path(run_dir or Path(cfg.train.out_dir) / cfg.train.name)
    check_writable(target, folder=True, what="run directory (train.out_dir/train.name)")  # before data and models load
    device = pick_device(cfg.train.device)
    rank, world = dist.setup(device)
    try:
        job = dist.elastic_job()
        if rank == 0 and dist.restart_caveat(job):
            log.warning(dist.restart_caveat(job))
        resume, overwrite, note = _restarted(target, resume, overwrite, job)
        if resume is None and not overwrite and (target / "last.pt").exists():
            raise ConfigError(f"{target}: already holds a run (last.pt); continue it with --resume {target / 'last.pt'}, "
                              f"start another with train.name=NEW_NAME, or replace it with --overwrite")
        with dist.attempt_record(target, job) as previous:
            if note and rank == 0:
                log.warning("%s; previous attempt: %s", note, dist.describe_attempt(previous))
            return _fit(cfg, resume, progress if rank == 0 else _noop_progress, run_dir, device, rank, world)
    finally:
        dist.teardown()


def _restarted(target: Path, resume, overwrite: bool, job: dict | None) -> tuple:
    """(resume, overwrite, note): after torchrun restarted the group (a worker died; --max-restarts), the run
    continues from its own last.pt, the one this torchrun job wrote (its run id is in the checkpoint), with no
    --resume typed; before that job's first checkpoint it starts as the command line says. The note (None on a first
    attempt) is the log line saying so. Every rank must see the same last.pt: the run directory is shared."""
    restart = dist.group_restart(job)
    if not restart:
        return resume, overwrite, None
    head = f"torchrun restart {restart} (at most {job['max_restarts']})"
    last = target / "last.pt"
    ckpt = load_checkpoint(last) if last.exists() else {}
    if ckpt.get("torchrun_run_id") == job["run_id"]:
        resume, overwrite = last, False
        note = f"{head}: resuming from {last}, after epoch {ckpt['epoch']} (step {ckpt['step']})"
    else:
        note = f"{head} before this job's first checkpoint: starting as at first"
    views = dist.all_gather_objects((str(resume), overwrite))
    if len(set(views)) > 1:
        raise ConfigError(f"{target}: the ranks of the restarted job disagree on the checkpoint to resume ({views}); "
                          f"the run directory must be one folder shared by every node")
    return resume, overwrite, note


@dataclass
class _Run:
    """What one training run holds between its steps (built by _build, advanced by _train_epoch)."""
    cfg: Config
    device: torch.device
    rank: int
    world: int
    run_dir: Path
    amp_dtype: torch.dtype | None
    train_tf: TrainTransform
    train_ds: object
    val_ds: object
    model: torch.nn.Module
    net: torch.nn.Module
    params: list
    opt: torch.optim.Optimizer
    sched: object
    scaler: object
    sampler: DistributedSampler
    loader: DataLoader
    start_epoch: int = 0
    step: int = 0
    best: float = -1.0
    history: list = field(default_factory=list)
    teacher: torch.nn.Module | None = None
    ema: torch.nn.Module | None = None  # the weights' moving average (train.ema), validated and saved as "model"
    frame_height: int | None = None  # the median height of the training frames, stored for `size auto`


def _fit(cfg, resume, progress, run_dir, device, rank, world) -> Path:
    """Build (data first, then model and optimizer), restore a resumed run, then epochs of train / validate / save
    until the schedule, train.max_steps or train.time_budget_min ends it."""
    t_start = time.time()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    run = _build(cfg, resume, Path(run_dir or Path(tc.out_dir) / tc.name), device, rank, world)
    if rank == 0:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (("config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False)),
                           ("environment.json", json.dumps(environment(), indent=1))):
            atomic_write(run.run_dir / name, lambda f, text=text: f.write(text), text=True)  # a planted link is replaced
    parts = getattr(run.train_ds, "parts", None)
    log.info("training on %s (%s, world %d): %s train / %d val frames, %d steps/epoch, autocast %s", device,
             cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device), world,
             f"{len(parts[0][0])} + {len(run.train_ds) - len(parts[0][0])} (data.extra)" if parts else len(run.train_ds),
             len(run.val_ds) if run.val_ds else 0, len(run.loader), run.amp_dtype)
    for epoch in range(run.start_epoch, tc.epochs):
        if tc.max_steps and run.step >= tc.max_steps:
            break
        row = _train_epoch(run, epoch, progress)
        if run.val_ds is not None and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs):
            row.update(_validate(run))
        maxf = _save(run, row)
        log.info("epoch %d: loss %.4f, %.2f img/s%s", epoch + 1, row["loss"], row["images_per_s"],
                 f", val MaxF {100 * maxf:.2f}" if maxf >= 0 else "")
        if tc.time_budget_min and (time.time() - t_start) / 60 >= tc.time_budget_min and epoch + 1 < tc.epochs:
            log.info("time budget of %.1f min reached after epoch %d; continue with --resume %s",
                     tc.time_budget_min, epoch + 1, run.run_dir / "last.pt")
            break
    return run.run_dir


def _build_data(cfg: Config, per_rank: int):
    """(train transform, validation set or None, training set), every frame checked."""
    tc, dc = cfg.train, cfg.data
    train_tf = TrainTransform(dc.scale, dc.crop, tuple(dc.scale_jitter), dc.hflip, dc.color_jitter, tc.seed,
                              dc.top_crop, dc.far_zoom)
    has_val = dc.dataset == "camvid" or dc.val_last_n > 0 or dc.val_list
    val_ds = build_dataset(dc, "val", preload=True) if has_val else None
    train_ds = build_training_set(dc, transform=train_tf, val_ds=val_ds)
    if tc.pixel_weight == "bev_area":
        use_bev_weights(train_ds, tc.pixel_weight_max)
    if dc.crop is None and per_rank > 1:
        sizes = {tuple(train_ds[i]["image"].shape) for i in range(min(len(train_ds), 50))}
        if len(sizes) > 1:
            raise ConfigError("data.crop: frames differ in size; set data.crop: [h, w] to batch them")
    if len(train_ds) < tc.batch_size:
        raise ConfigError(f"train.batch_size: {tc.batch_size} is larger than the {len(train_ds)} training frames")
    return train_tf, val_ds, train_ds


def _build_model(cfg: Config, ckpt: dict | None, resume, device):
    """(model to train, its moving average or None): resumed, initialised from train.init, or pretrained."""
    tc = cfg.train
    ema = None
    if ckpt:
        model = model_from_checkpoint(ckpt, str(resume))[0].train()
        if "train_model" in ckpt:  # a run with train.ema: "model" is the average, "train_model" what is trained
            ema = copy.deepcopy(model).eval()
            load_weights(model, ckpt, str(resume), key="train_model")
    elif tc.init:
        model = init_model(cfg, tc.init)
    else:
        model = build_model(cfg, pretrained=True)
    model.freeze_blocks(tc.freeze_blocks)
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    if tc.ema:
        ema = (ema if ema is not None else copy.deepcopy(model)).to(device).eval().requires_grad_(False)
        if device.type == "cpu":
            ema = ema.to(memory_format=torch.channels_last)
    return model, ema if tc.ema else None


def _build(cfg: Config, resume, run_dir: Path, device, rank: int, world: int) -> _Run:
    tc, dc = cfg.train, cfg.data
    if tc.batch_size % world:
        raise ConfigError(f"train.batch_size: global batch {tc.batch_size} does not divide over {world} processes")
    per_rank = tc.batch_size // world
    train_tf, val_ds, train_ds = _build_data(cfg, per_rank)  # data first: a bad file stops the run at once

    torch.manual_seed(tc.seed)
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None and "optimizer" not in ckpt:
        raise ConfigError(f"--resume {resume}: a released model has no training state to continue; "
                          f"start a new run from its weights with train.init={resume}")
    if ckpt is not None:
        _check_resumable(resume, from_dict(ckpt["config"]), cfg)
    model, ema = _build_model(cfg, ckpt, resume, device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    params = [p for p in model.parameters() if p.requires_grad]
    enc = {id(p) for p in model.encoder.parameters()}
    groups = [{"params": [p for p in params if id(p) in enc], "lr": tc.lr * tc.encoder_lr},
              {"params": [p for p in params if id(p) not in enc], "lr": tc.lr}]
    groups = [g for g in groups if g["params"]]
    if tc.optimizer in ("adam", "adamw"):
        opt = (torch.optim.Adam if tc.optimizer == "adam" else torch.optim.AdamW)(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tc.seed, drop_last=True)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, collate_fn=collate, drop_last=True,
                        num_workers=dc.workers, persistent_workers=dc.workers > 0)
    total_steps = len(loader) * tc.epochs
    if tc.max_steps:
        total_steps = min(total_steps, tc.max_steps)
    warmup = int(tc.warmup_epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, warmup, tc.schedule))
    amp_dtype = autocast_dtype(tc.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    run = _Run(cfg, device, rank, world, run_dir, amp_dtype, train_tf, train_ds, val_ds, model, net, params, opt,
               sched, scaler, sampler, loader, teacher=load_teacher(cfg, val_ds, device) if tc.teacher else None,
               ema=ema, frame_height=trained_frame_height(train_ds))
    if ckpt is not None:  # a resumed run continues exactly: optimizer, schedule, counters, RNG
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        run.start_epoch, run.step = ckpt["epoch"], ckpt["step"]
        run.best, run.history = ckpt.get("best_maxf", -1.0), list(ckpt.get("history", []))
        torch.set_rng_state(ckpt["rng"])
        if ckpt.get("world") not in (None, world):
            log.info("resuming a run of %s processes on %s", ckpt.get("world"), world)
    return run


def _train_epoch(run: _Run, epoch: int, progress) -> dict:
    """One pass over the training frames; returns the epoch's row of metrics.csv (loss, lr, speed)."""
    tc, device = run.cfg.train, run.device
    run.net.train()
    run.sampler.set_epoch(epoch)
    run.train_tf.set_epoch(epoch)
    bar = progress(len(run.loader), f"epoch {epoch + 1}/{tc.epochs}")
    t0, seen, loss_sum, nb = time.time(), 0, 0.0, 0
    for batch in run.loader:
        if os.environ.get("ROADSEG_FAIL_RANK") == str(run.rank):  # fault injection for the DDP shutdown test
            raise RuntimeError(f"injected failure on rank {run.rank}")
        x = batch["image"].to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch["target"].to(device)
        w = batch["weight"].to(device) if "weight" in batch else None
        with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
            logits = run.net(x)
            teacher_logits = None
            if run.teacher is not None:
                with torch.no_grad():
                    teacher_logits = run.teacher(x)
        loss = _loss(tc, logits, y, w, teacher_logits)
        if not torch.isfinite(loss):
            last = run.run_dir / "last.pt"
            kept = f"; last good checkpoint kept at {last}" if last.exists() else ""
            raise TrainingError(f"loss became {loss.item()} at epoch {epoch + 1}, step {run.step + 1}{kept}")
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if tc.grad_clip:
            run.scaler.unscale_(run.opt)
            torch.nn.utils.clip_grad_norm_(run.params, tc.grad_clip)
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        run.step += 1
        if run.ema is not None:
            update_ema(run.ema, run.model, ema_decay(run.step, tc.ema))
        seen += x.shape[0] * run.world
        loss_sum += loss.item()
        nb += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{seen / (time.time() - t0):.2f}")
        if tc.max_steps and run.step >= tc.max_steps:
            break
    bar.close()
    train_time = time.time() - t0
    mean_loss = torch.tensor([loss_sum, nb], dtype=torch.float64)
    dist.all_reduce_sum(mean_loss)
    return {"epoch": epoch + 1, "step": run.step, "loss": float(mean_loss[0] / max(mean_loss[1], 1)),
            "lr": run.sched.get_last_lr()[0], "images_per_s": seen / max(train_time, 1e-9), "epoch_s": train_time}


def _loss(tc, logits, y, w, teacher_logits) -> torch.Tensor:
    """The step's loss: cross-entropy, plus soft Dice with train.loss ce_dice, mixed with distillation to the
    teacher's soft targets; the per-pixel weights w, when given, weigh every term."""
    loss = loss_fn(logits, y, w)
    if tc.loss == "ce_dice":
        loss = loss + dice_loss(logits, y, w)
    if teacher_logits is not None:
        loss = (1 - tc.distill) * loss + tc.distill * distill_loss(logits, teacher_logits, y, w)
    return loss


def _validate(run: _Run) -> dict:
    """Devkit measures on the validation frames at full resolution (autocast as in training), and in the bird's-eye
    view where the frames have calibration files (val_bev_MaxF, val_bev_MaxF_<category>)."""
    run.model.eval()
    pred = Predictor.for_module(run.ema if run.ema is not None else run.model, run.cfg, device=run.device.type,
                                precision="bf16" if run.amp_dtype == torch.bfloat16 else "fp32")
    ev = evaluate(pred, run.val_ds)
    res = ev.results()
    row = {**{f"val_{k}": res["all"][k] for k in ("MaxF", "AP", "PRE", "REC", "IoU", "threshold")},
           **{f"val_MaxF_{c}": r["MaxF"] for c, r in res.items() if c != "all"}}
    if ev.bev is not None:
        bev = ev.bev.results()
        row.update({"val_bev_MaxF": bev["all"]["MaxF"], **{f"val_bev_MaxF_{c}": r["MaxF"] for c, r in bev.items() if c != "all"}})
    return row


def ema_decay(step: int, decay: float) -> float:
    """The moving average's weight on its old value after optimizer step `step` (1, 2, ...): (1 + step) / (10 +
    step), so the first steps are not dominated by the starting weights, capped at train.ema."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every weight and floating buffer; other buffers are copied."""
    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(m, 1.0 - decay)
        else:
            e.copy_(m)


def _save(run: _Run, row: dict) -> float:
    """Record the epoch: history, last.pt (and best.pt when validation improved, or always without validation),
    metrics.csv and the curves. Returns the epoch's validation MaxF (-1 without validation)."""
    run.history.append(row)
    maxf = row.get("val_MaxF", -1.0)
    improved = maxf == maxf and maxf > run.best
    run.best = max(run.best, maxf) if maxf == maxf else run.best
    if run.rank == 0:
        trained = {"train_model": run.model.state_dict()} if run.ema is not None else {}
        state = make_checkpoint(run.ema if run.ema is not None else run.model, to_dict(run.cfg), epoch=row["epoch"],
                                step=run.step, best_maxf=run.best, history=run.history, optimizer=run.opt.state_dict(),
                                scheduler=run.sched.state_dict(), rng=torch.get_rng_state(), world=run.world, metrics=row,
                                frame_height=run.frame_height, **trained, **_job_id())
        atomic_save(state, run.run_dir / "last.pt")
        if improved or run.val_ds is None:
            atomic_save(state, run.run_dir / "best.pt")
        _write_csv(run.history, run.run_dir / "metrics.csv")
        plot_curves(run.history, run.run_dir)
    return maxf


def _job_id() -> dict:
    """The torchrun job that wrote a checkpoint, so that a restarted group resumes its own last.pt and no other."""
    job = dist.elastic_job()
    return {"torchrun_run_id": job["run_id"]} if job else {}


def init_model(cfg: Config, spec: str):
    """The configured model with a checkpoint's weights (train.init): fine-tuning with a fresh schedule."""
    path = locate(spec)
    ckpt = load_checkpoint(path)
    model = build_model(cfg, pretrained=False, preprocess=Preprocess.from_dict(ckpt["preprocess"]))
    ckpt = {**ckpt, "model": widen_kernels(ckpt["model"], model.state_dict())}
    try:
        load_weights(model, ckpt, f"train.init: {path}")
    except RoadsegError as exc:
        raise ConfigError(f"{exc} (train.init needs the model section of the checkpoint's config)") from None
    log.info("weights from %s (epoch %s, val MaxF %s)", path, ckpt.get("epoch"), ckpt.get("best_maxf"))
    return model.train()


def _check_resumable(resume, theirs: Config, ours: Config) -> None:
    """--resume continues a run exactly: the model, the frames it trains on and its teacher must be the ones it
    started with."""
    a, b = to_dict(theirs)["model"], to_dict(ours)["model"]
    if a != b:
        diff = ", ".join(f"model.{k}: {a.get(k)!r} there, {b.get(k)!r} here" for k in b if a.get(k) != b.get(k))
        raise ConfigError(f"--resume {resume}: the checkpoint is another model ({diff[:300]}); "
                          f"resume with the config it was trained with (its config.yaml)")

    def norm(key, v):
        if key == "data.extra":
            return [{**e, "root": os.path.realpath(e["root"])} for e in v]
        if key == "train.teacher" and v and ("/" in v or v.endswith(".pt")):
            return os.path.realpath(v)
        return v

    for key in ("data.extra", "train.teacher", "train.distill", "train.ema"):
        section, name = key.split(".")
        a, b = (norm(key, getattr(getattr(c, section), name)) for c in (theirs, ours))
        if a != b:
            raise ConfigError(f"--resume {resume}: {key} was {a!r} in that run, {b!r} here; resume with the config "
                              f"it was trained with (its config.yaml)")


def load_teacher(cfg: Config, val_ds, device: torch.device) -> torch.nn.Module:
    """train.teacher as a frozen model in eval mode; refused when it was trained on any of this run's validation
    frames (its soft targets would carry them into the student and its validation scores)."""
    from roadseg.data.datasets import trained_frame_names

    path = locate(cfg.train.teacher)
    ckpt = load_checkpoint(path)
    tcfg = from_dict(ckpt["config"])
    tdata = tcfg.data
    if tcfg.model.num_classes != cfg.model.num_classes:
        raise ConfigError(f"train.teacher: {path} has {tcfg.model.num_classes} classes, this model "
                          f"{cfg.model.num_classes}")
    if tdata.task != cfg.data.task:
        raise ConfigError(f"train.teacher: {path} was trained for task '{tdata.task}', this run is '{cfg.data.task}'")
    if val_ds is not None:
        try:
            trained = trained_frame_names(tdata, cfg.data)
        except RoadsegError as exc:
            raise ConfigError(f"train.teacher: {path}: cannot tell which frames it was trained on ({exc})") from None
        both = sorted(trained & {s.name for s in val_ds.samples})
        if both:
            raise ConfigError(f"train.teacher: {path} was trained on {len(both)} of this run's validation frames "
                              f"({', '.join(both[:3])}{', ...' if len(both) > 3 else ''}); use a teacher trained "
                              f"without them, or validate on other frames")
    if tdata.scale != cfg.data.scale:  # it sees the student's crops: things at another size than it learned
        log.warning("train.teacher: %s was trained at network scale %g and sees this run's crops at %g (objects "
                    "%.2gx the size it learned): its soft targets may be worse than at its own scale",
                    path, tdata.scale, cfg.data.scale, cfg.data.scale / tdata.scale)
    teacher = model_from_checkpoint(ckpt, str(path))[0].eval().to(device)
    if device.type == "cpu":
        teacher = teacher.to(memory_format=torch.channels_last)
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("teacher %s (soft targets, weight %.2f)", path, cfg.train.distill)
    return teacher


def widen_kernels(state: dict, target: dict) -> dict:
    """`state` with each s x s convolution kernel that `target` holds as k x k (same channels, s < k, both odd)
    placed at the centre of a zero k x k kernel: the same function (padding k // 2 pads with zeros), with room to
    learn context (model.fc_kernel 1 -> 3 -> 7)."""
    out = dict(state)
    for k, v in state.items():
        t = target.get(k)
        if (t is not None and v.dim() == 4 and t.dim() == 4 and v.shape[:2] == t.shape[:2]
                and v.shape[2] == v.shape[3] and t.shape[2] == t.shape[3] and v.shape[2] % 2 == 1
                and t.shape[2] % 2 == 1 and t.shape[2] > v.shape[2]):
            s, c = v.shape[2], (t.shape[2] - v.shape[2]) // 2
            w = torch.zeros(t.shape, dtype=v.dtype)
            w[:, :, c : c + s, c : c + s] = v
            out[k] = w
            log.info("%s: %dx%d kernel placed at the centre of %dx%d", k, s, s, t.shape[2], t.shape[3])
    return out


def _write_csv(history: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for h in history for k in h))

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)

    atomic_write(path, write, text=True)
