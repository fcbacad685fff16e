"""Training configurations and presets (STAR_SPEC section 5 for the paper's runs)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from star_track.nn.network import NetworkConfig

from .augment import AugmentConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; saved beside its checkpoints so a run can be resumed or reproduced."""

    network: NetworkConfig
    train_annotations: str = ""
    val_annotations: str = ""
    image_root: str = ""
    epochs: int = 500
    batch_size: int = 128  # total over all processes
    lr: float = 1e-3
    milestones: tuple[float, ...] = (0.4, 0.7, 0.9)  # fractions of ``epochs`` (paper: 200, 350, 450 of 500)
    gamma: float = 0.1
    star_version: str = "v2"
    star_w: float = 1.0
    ema: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    norm: str = "inter_ocular"
    fr_threshold: float = 0.1
    seed: int = 0
    workers: int = 2
    eval_every: int = 1
    init_weights: str = ""  # checkpoint whose (EMA) weights start a fresh run: fine-tuning, self-training
    teacher: str = ""  # checkpoint whose heatmaps on each augmented batch are soft targets (distillation)
    teacher_weight: float = 1.0  # weight of the heatmap distillation term (``train.losses.heatmap_distill_loss``)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["network"] = NetworkConfig.from_dict(d["network"])
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        d["milestones"] = tuple(d.get("milestones", (0.4, 0.7, 0.9)))
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_overrides(self, **kw) -> "TrainConfig":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


PAPER = dict(epochs=500, batch_size=128, lr=1e-3)
PRESETS: dict[str, TrainConfig] = {
    # The paper's model on each benchmark (annotation files from ``python -m train prepare``).
    "wflw": TrainConfig(NetworkConfig("wflw98"), "data/wflw_train.jsonl", "data/wflw_test.jsonl", **PAPER),
    "300w": TrainConfig(NetworkConfig("300w68"), "data/300w_train.jsonl", "data/300w_common.jsonl", **PAPER),
    "cofw": TrainConfig(NetworkConfig("cofw29"), "data/cofw_train.jsonl", "data/cofw_test.jsonl",
                        norm="inter_pupil", **PAPER),
    # Compact CPU models: 68 points, 128x128 input, trained on the development WFLW faces in shared/data.
    # One stack: the fastest (~5 ms per face on 2 cores, held-out NME 6.96 %).
    "compact68-dev": TrainConfig(
        NetworkConfig("300w68", num_stacks=1, channels=128, depth=3, input_size=128),
        "data/wflw68_train.jsonl", "data/wflw68_val.jsonl", epochs=80, batch_size=32, lr=2e-3,
        milestones=(0.6, 0.85), workers=1),
    # Two stacks (intermediate supervision), the bundled model: ~1.5x the CPU cost, held-out NME 6.64 %.
    "compact68x2-dev": TrainConfig(
        NetworkConfig("300w68", num_stacks=2, channels=128, depth=3, input_size=128),
        "data/wflw68_train.jsonl", "data/wflw68_val.jsonl", epochs=80, batch_size=32, lr=2e-3,
        milestones=(0.6, 0.85), workers=1),
    # The 2-stack model moved onto 300W semantics (``train.combined``): fine-tuned from the WFLW-trained model
    # (``init_weights``, set by ``train.ship``) on WFLW (corrected) + 300W AFW/HELEN + corrected teacher labels.
    "combined68x2-dev": TrainConfig(
        NetworkConfig("300w68", num_stacks=2, channels=128, depth=3, input_size=128),
        "data/combined68_train.jsonl", "data/combined68_val.jsonl", epochs=20, batch_size=32, lr=5e-4,
        milestones=(0.6, 0.85), workers=1, eval_every=3),
    # The 2-stack model at 192x192 input (48x48 heatmaps, ~2.3x the cost): fine-tuned from the 300W-stage model
    # for the precision its 32x32 heatmaps cannot give (one heatmap pixel ~7 % of the outer-eye distance).
    "precise68x2-dev": TrainConfig(
        NetworkConfig("300w68", num_stacks=2, channels=128, depth=3, input_size=192),
        "data/combined68_train.jsonl", "data/combined68_val.jsonl", epochs=8, batch_size=32, lr=3e-4,
        milestones=(0.6, 0.85), workers=1, eval_every=2),
    # The fast CPU model (issue "Fast STAR"): one stack x 64 channels of inverted-residual blocks, ~1/8 of the
    # 2-stack model's MACs. Trained from scratch by distillation (``train.distill``): the labelled faces plus
    # the 2-stack model's flip-averaged labels on every other photo and clip frame.
    "fast68-dev": TrainConfig(
        NetworkConfig("300w68", num_stacks=1, channels=64, depth=3, input_size=128, block="inverted"),
        "data/wflw68_distill.jsonl", "data/wflw68_val.jsonl", epochs=36, batch_size=32, lr=2e-3,
        milestones=(0.65, 0.88), workers=1, eval_every=4),
    # The 98-point model (WFLW scheme, ``train.ship98``): star68-fast's network and cost with 98-point heads,
    # started from star68-fast's weights and trained on every official 98-point face of the training photos.
    "fast98-dev": TrainConfig(
        NetworkConfig("wflw98", num_stacks=1, channels=64, depth=3, input_size=128, block="inverted",
                      inner_expand=4),
        "data/wflw98_train.jsonl", "data/wflw98_val.jsonl", epochs=30, batch_size=32, lr=1e-3,
        milestones=(0.6, 0.85), workers=1, eval_every=5),
    # Smallest sensible model for quick CPU experiments and tests.
    "tiny-cpu": TrainConfig(NetworkConfig("300w68", num_stacks=1, channels=32, depth=3, input_size=128),
                            epochs=2, batch_size=8, lr=2e-3, workers=0),
}
