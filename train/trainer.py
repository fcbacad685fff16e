"""The training loop: one CPU, one GPU, or several GPUs under ``torchrun`` (DDP).

Checkpoints (``last.pt`` every epoch, ``best.pt`` on validation NME) hold model, EMA, optimiser, scheduler,
epoch and RNG states, so ``--resume`` continues exactly. Augmentation draws are a pure function of
(seed, epoch, index), which keeps resumed and multi-process runs reproducible.
"""
from __future__ import annotations

import copy
import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from star_track.nn.network import StarNet, decode_heatmaps_torch, normalize_input
from star_track.model.schemes import get_scheme

from .annotations import read_annotations
from .config import TrainConfig
from .dataset import FaceCropDataset, crop_to_frame
from .losses import heatmap_distill_loss, stacked_loss
from .metrics import nme_per_face, summarize


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Read torchrun's environment; a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend)
    return info


class EMA:
    """Exponential moving average of weights, decay 0.5^(batch / 10000) per step (STAR_SPEC section 5).

    With a warm-up, decay_t = min(decay, (1 + t) / (10 + t)): without it the average keeps a large share of
    the random initial weights for thousands of steps (measured here: after 750 steps at batch 32 the EMA
    model's NME was 4x the raw model's), which only a 500-epoch schedule can wash out.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int):
        self.decay = 0.5 ** (batch_size / 10000)
        self.steps = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
            else:
                e.copy_(p)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in original image pixels for an evaluation loader, plus dataset indices."""
    model.eval()
    preds, idx = [], []
    for batch in loader:
        fused, _, _ = model(normalize_input(batch["image"].to(device)))
        mean, _ = decode_heatmaps_torch(fused[-1])
        size = batch["image"].shape[-1]
        preds.append(crop_to_frame(mean.float().cpu().numpy(), batch["to_crop"].numpy(), size))
        idx.append(batch["index"].numpy())
    return np.concatenate(preds), np.concatenate(idx)


def evaluate_model(model: torch.nn.Module, dataset: FaceCropDataset, device: torch.device, norm: str,
                   batch_size: int = 32) -> np.ndarray:
    """Per-face NME of ``model`` on ``dataset`` (landmark-framed crops, errors in original pixels)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    pred, idx = predict(model, loader, device)
    gt = np.stack([dataset.faces[i].landmarks for i in idx])
    return nme_per_face(pred, gt, dataset.scheme, norm)


def _initial_weights(cfg: TrainConfig) -> dict:
    """Weights of ``cfg.init_weights`` (EMA when present); its network must match ``cfg.network``."""
    from star_track.nn.checkpoint import load_checkpoint

    net, _ = load_checkpoint(cfg.init_weights, prefer_ema=True)
    if net.config != cfg.network:
        raise ValueError(f"init_weights {cfg.init_weights}: network {net.config} does not match the run's "
                         f"{cfg.network}")
    return net.state_dict()


def _teacher(cfg: TrainConfig, device: torch.device) -> StarNet | None:
    """The frozen distillation teacher of ``cfg.teacher`` (EMA weights when present), or None."""
    from star_track.nn.checkpoint import load_checkpoint

    if not cfg.teacher:
        return None
    net, _ = load_checkpoint(cfg.teacher, prefer_ema=True)
    if net.config.scheme != cfg.network.scheme:
        raise ValueError(f"teacher {cfg.teacher}: scheme {net.config.scheme} does not match the run's "
                         f"{cfg.network.scheme}")
    return net.to(device).eval().requires_grad_(False)


def teacher_heatmaps(teacher: StarNet, images: torch.Tensor, size: int) -> torch.Tensor:
    """The teacher's last-stack heatmaps of ``images`` (the student's normalised crops), ``size`` x ``size``.

    A teacher trained at another input size sees the same crops resized to its own (same framing), and its
    heatmaps are resampled with an antialiasing filter, so e.g. the 192 px model can teach a 128 px student."""
    own = teacher.config.input_size
    if images.shape[-1] != own:
        images = F.interpolate(images, size=(own, own), mode="bilinear", align_corners=False, antialias=True)
    heat = teacher(images)[0][-1]
    if heat.shape[-1] != size:
        heat = F.interpolate(heat.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return heat


def _save(path: Path, **state) -> None:
    from star_track.nn.checkpoint import write_checkpoint

    write_checkpoint(path, state)  # never leaves a half-written checkpoint behind


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = True, progress: bool = True,
          max_steps: int | None = None) -> dict:
    """Train ``cfg``; returns the final metrics dict. ``max_steps`` stops early (smoke tests)."""
    info = setup_distributed()
    out = Path(out_dir)
    device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    scheme = get_scheme(cfg.network.scheme)

    root = Path(cfg.image_root)
    train_set = FaceCropDataset(read_annotations(cfg.train_annotations), root, scheme, cfg.network.input_size,
                                cfg.augment, cfg.seed)
    val_set = None
    if cfg.val_annotations and info.main:
        val_set = FaceCropDataset(read_annotations(cfg.val_annotations), root, scheme, cfg.network.input_size,
                                  None, with_targets=False)
    per_proc = max(1, cfg.batch_size // info.world)
    sampler = DistributedSampler(train_set, info.world, info.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True) if info.world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=per_proc, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=len(train_set) >= per_proc, generator=gen,
                        persistent_workers=False, pin_memory=device.type == "cuda")

    model = StarNet(cfg.network).to(device)
    if cfg.init_weights:
        model.load_state_dict(_initial_weights(cfg))
    ema = EMA(model, cfg.batch_size) if cfg.ema else None
    teacher = _teacher(cfg, device)
    if info.world > 1:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)
    raw = model.module if isinstance(model, DistributedDataParallel) else model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    milestones = sorted({max(1, int(round(f * cfg.epochs))) for f in cfg.milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, cfg.gamma)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start_epoch, best = 0, float("inf")
    last = out / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        raw.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
            ema.steps = state.get("ema_steps", 0)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["loader_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best = state["epoch"] + 1, state.get("best", best)
        if info.main:
            print(f"resumed from {last} at epoch {start_epoch}")
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(cfg.to_json())

    log_path = out / "metrics.csv"
    fields = ["epoch", "lr", "loss", "star", "awing_points", "awing_edges", "val_nme", "val_fr", "val_auc",
              "seconds"] + (["distill"] if teacher is not None else [])
    if info.main and not log_path.exists():
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    bar = _Progress(progress and info.main)
    steps_total = (cfg.epochs - start_epoch) * max(1, len(loader))
    task = bar.add(f"training {cfg.network.scheme}", steps_total)
    metrics: dict = {}
    step = 0
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        sums = {"loss": 0.0, "star": 0.0, "awing_points": 0.0, "awing_edges": 0.0, "distill": 0.0}
        n = 0
        for batch in loader:
            images = normalize_input(batch["image"].to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                fused, points, edges = model(images)
            loss, parts = stacked_loss(fused, points, edges, batch["landmarks"].to(device),
                                       batch["pointmaps"].to(device), batch["edgemaps"].to(device),
                                       cfg.star_version, cfg.star_w)
            if teacher is not None:  # weighted per stack like the other terms
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    target = teacher_heatmaps(teacher, images, fused[-1].shape[-1])
                kd = sum(2.0 ** (s - len(fused) + 1) * heatmap_distill_loss(f, target) for s, f in enumerate(fused))
                loss = loss + cfg.teacher_weight * kd
                parts["distill"] = float(kd.detach())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch} step {n}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(raw)
            sums["loss"] += float(loss.detach())
            for k, v in parts.items():
                sums[k] += v
            n += 1
            step += 1
            bar.advance(task, f"epoch {epoch + 1}/{cfg.epochs} loss {sums['loss'] / n:.4f}")
            if max_steps is not None and step >= max_steps:
                break
        sched.step()
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], **{k: v / max(n, 1) for k, v in sums.items()}}
        if info.main:
            eval_model = ema.model if ema is not None else raw
            if val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                nme = evaluate_model(eval_model, val_set, device, cfg.norm)
                s = summarize(nme, cfg.fr_threshold)
                row.update(val_nme=s["nme"], val_fr=s[f"fr@{cfg.fr_threshold:g}"],
                           val_auc=s[f"auc@{cfg.fr_threshold:g}"])
                if s["nme"] < best:
                    best = s["nme"]
                    _save(out / "best.pt", **_payload(cfg, raw, ema, epoch, best))
            row["seconds"] = round(time.time() - t0, 2)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([row.get(k, "") for k in fields])
            _save(last, **_payload(cfg, raw, ema, epoch, best), optimizer=opt.state_dict(),
                  scheduler=sched.state_dict(), scaler=scaler.state_dict(), loader_rng=gen.get_state(),
                  torch_rng=torch.get_rng_state())
            bar.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        metrics = row
        if max_steps is not None and step >= max_steps:
            break
    bar.stop()
    if info.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    metrics["best_val_nme"] = best
    return metrics


def _payload(cfg: TrainConfig, model: StarNet, ema: EMA | None, epoch: int, best: float) -> dict:
    return {"config": cfg.network.to_dict(), "train_config": cfg.to_json(), "model": model.state_dict(),
            "ema": ema.model.state_dict() if ema is not None else None,
            "ema_steps": ema.steps if ema is not None else 0, "epoch": epoch, "best": best}


class _Progress:
    """A rich progress bar on the main process; silent otherwise."""

    def __init__(self, enabled: bool):
        self.p = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TimeRemainingColumn())
            self.p.start()

    def add(self, name: str, total: int):
        return self.p.add_task(name, total=total) if self.p else None

    def advance(self, task, description: str) -> None:
        if self.p:
            self.p.update(task, advance=1, description=description)

    def log(self, text: str) -> None:
        if self.p:
            self.p.console.log(text)

    def stop(self) -> None:
        if self.p:
            self.p.stop()
