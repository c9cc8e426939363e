"""Few-shot run settings and data selection: :class:`FewShotConfig`, the shot/validation/test split, seed streams.

Every random choice of a run derives from ``(config.seed, stream, ...)`` through
:func:`seeded_rng` (numpy) or :func:`torch_seed` (a seed for a private ``torch.Generator``); the
``STREAM_*`` constants keep the streams independent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..backbone import DEFAULT_TEMPLATE
from ..classes import PROMPT_STYLES
from ..datasets import DATASET_NAMES, PointCloudDataset, open_dataset
from ..errors import Clip2PointError, DatasetError
from ..gdpa import GATES, GDPAConfig
from ..io import UP_AXES
from ..prompts import validate_template
from ..render import VIEW_SETS, get_view_set

__all__ = [
    "SHOTS", "MODES", "CACHE_DTYPES", "ADAPTER_INPUTS", "FewShotConfig", "FewShotSplits", "select_few_shot", "stratified_head",
    "make_splits", "seeded_rng", "torch_seed",
    "STREAM_SPLIT", "STREAM_RESAMPLE", "STREAM_ONLINE", "STREAM_EPOCH", "STREAM_INIT",
]

#: Shots per class (CLIP2Point / PointCLIP few-shot protocol).
SHOTS = (1, 2, 4, 8, 16)
#: Training modes: encode once ("cached") or re-render and re-encode every epoch ("online").
MODES = ("cached", "online")
#: What the adapter takes per view: the raw visual-tower outputs ("raw", the released DPA) or
#: their L2-normalised directions ("normalized", this project's runs before the option existed).
ADAPTER_INPUTS = ("raw", "normalized")
#: ``FewShotConfig.cache_dtype`` → storage dtype of cached features.
CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16}

#: Independent random streams, combined with (seed, ...) in ``np.random.SeedSequence``: shot/validation
#: selection, cached re-samples, online re-samples, per-epoch shuffling/dropout, initialisation.
STREAM_SPLIT, STREAM_RESAMPLE, STREAM_ONLINE, STREAM_EPOCH, STREAM_INIT = 11, 12, 13, 14, 15


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    """A numpy generator seeded by ``(seed mod 2³², *stream)``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *map(int, stream)])


def torch_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for a private ``torch.Generator``, derived from ``(seed mod 2³², *stream)``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, stream)]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class FewShotConfig:
    """Everything that defines a few-shot run (saved as ``config.json`` in the run directory).

    Fields with a ``"flag"`` in their metadata are ``clip2point fewshot`` options (flag, help,
    choices; see :func:`clip2point.cliutil.add_config_arguments`): their defaults are written here only.

    Attributes:
        dataset: "modelnet10" or "modelnet40". data_dir: its folder (see ``open_dataset``).
        out_dir: the run directory (created).
        shots: K shapes per class from the training split, one of :data:`SHOTS`.
        epochs: training epochs (released: 100).
        gate: "view" (GDPA) or "none" (released DPA: fixed 0.5/0.5 average).
        views: view set, "10" (CLIP2Point's few-shot views) or "6".
        image_size: depth image size in pixels (None: the backbone's input size). radius: splat radius (NDC).
        num_points: points per shape read from the dataset. up: override the dataset's up axis.
        val_per_class: validation shapes per class, from the training shapes that are not shots
            (0: no validation; the last epoch is kept).
        limit_test: evaluate N class-balanced test shapes (0 = all; see :func:`stratified_head`).
        resamples: R cached point re-samples per training shape (1 = none); one is drawn per epoch.
        resample_keep: share of the points kept by a re-sample (r ≥ 1), in (0, 1].
        mode: "cached" (encode once) or "online" (re-render and re-encode every epoch, like the release).
        batch_size, lr, weight_decay: AdamW training (released: 32, 1e-3, 1e-4).
        dropout, gate_hidden: adapter sizes (see :class:`~clip2point.gdpa.GDPAConfig`).
        seed: seeds the shot/validation selection, re-samples, initialisation, shuffling and dropout.
        template: prompt template of the class text features.
        prompt_style: how the dataset's class names become prompt words: "release" (as the released
            code prompts it: ModelNet10's ``night_stand``, ModelNet40's ``night stand``) or "spaced"
            (words for both); see :func:`clip2point.datasets.open_dataset`.
        adapter_input: what the adapter takes per view (see :class:`~clip2point.gdpa.GDPAConfig`):
            "raw" visual-tower outputs (the released DPA, ``models/dpa.py``: ``adapter(pre_model(imgs))``)
            or "normalized" (L2-normalised per-view features, as zero-shot scoring uses them). A
            run folder written before this field existed reads as "normalized" (its behaviour then).
        device: "cpu", "cuda", ... (None: the backbone's device).
        cache_dtype: "float32" or "float16" storage of cached features.
        encode_batch_size: images per encoder forward pass.
        precise_bn: after each epoch, re-estimate the BatchNorm statistics on the epoch's training
            features (see :meth:`~clip2point.fewshot.train.AdapterTrainer.recalibrate_batchnorm`);
            False keeps the released running averages.
        plots: write curves.png, gate_weights.png and confusion.png (matplotlib, ~0.5 s each).
        resume: continue the run in ``out_dir`` from its last checkpoint.
        overwrite: replace a run already in ``out_dir`` (otherwise that is an error unless resuming).
    """

    dataset: str = field(default="modelnet10", metadata={
        "flag": "--dataset", "choices": DATASET_NAMES, "required": True, "help": "the dataset"})
    data_dir: str = field(default="", metadata={
        "flag": "--data-dir", "required": True,
        "help": "folder with the dataset (h5, ply_hdf5_2048, normal_resampled or OFF layout)"})
    out_dir: str = field(default="", metadata={
        "flag": ("-o", "--out-dir"), "required": True, "metavar": "RUN_DIR", "help": "run folder (created)"})
    shots: int = field(default=16, metadata={"flag": "--shots", "choices": SHOTS, "help": "training shapes per class (K)"})
    epochs: int = field(default=100, metadata={"flag": "--epochs", "help": "training epochs (released recipe: 100)"})
    gate: str = field(default="view", metadata={
        "flag": "--gate", "choices": GATES,
        "help": "view: per-view gated fusion (GDPA); none: fixed 0.5/0.5 average (the released DPA)"})
    views: str = field(default="10", metadata={
        "flag": "--views", "choices": tuple(sorted(VIEW_SETS, key=lambda name: (len(name), name))),
        "help": "view set: 6 = released zero-shot views, 10 = pre-training/few-shot views"})
    image_size: int | None = None
    radius: float = field(default=0.02, metadata={
        "flag": "--radius", "help": "splat radius in NDC units (0.02 ≈ 2.2 px at 224²)"})
    num_points: int = field(default=1024, metadata={"flag": "--num-points", "help": "points per shape"})
    up: str | None = field(default=None, metadata={
        "flag": "--up", "choices": UP_AXES, "help": "override the dataset's up axis"})
    val_per_class: int = field(default=4, metadata={
        "flag": "--val-per-class",
        "help": "validation shapes per class (not shots) for choosing the epoch; 0: keep the last"})
    limit_test: int = field(default=0, metadata={
        "flag": "--limit-test", "metavar": "N",
        "help": "evaluate N test shapes, class-balanced (each class's first shapes in turn); 0 = all"})
    resamples: int = field(default=1, metadata={
        "flag": "--resamples", "metavar": "R",
        "help": "cached point re-samples per training shape (augmentation; 1 = none); one is drawn per epoch"})
    resample_keep: float = field(default=0.8, metadata={
        "flag": "--resample-keep", "help": "share of the points a re-sample keeps"})
    mode: str = field(default="cached", metadata={
        "flag": "--mode", "choices": MODES,
        "help": "cached: encode every shape once; online: re-render and re-encode each epoch like the released code (slow)"})
    batch_size: int = field(default=32, metadata={"flag": "--batch-size", "help": "shapes per batch"})
    lr: float = field(default=1e-3, metadata={"flag": "--lr", "help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"flag": "--weight-decay", "help": "AdamW weight decay"})
    dropout: float = 0.075
    gate_hidden: int = 64
    seed: int = field(default=0, metadata={
        "flag": "--seed", "help": "seeds shot selection, re-samples, initialisation and shuffling"})
    template: str = field(default=DEFAULT_TEMPLATE, metadata={
        "flag": "--template", "help": "prompt template with exactly one {} (the class name)"})
    prompt_style: str = field(default="release", metadata={
        "flag": "--prompt-style", "choices": PROMPT_STYLES,
        "help": "class names as prompts: release = as the released code (ModelNet10 night_stand, ModelNet40 "
                "night stand); spaced = words for both"})
    adapter_input: str = field(default="raw", metadata={
        "flag": "--adapter-input", "choices": ADAPTER_INPUTS,
        "help": "adapter input per view: raw = visual-tower outputs (the released DPA); normalized = "
                "L2-normalised features (runs before this option)"})
    device: str | None = None
    cache_dtype: str = field(default="float32", metadata={
        "flag": "--cache-dtype", "choices": tuple(CACHE_DTYPES), "help": "storage of cached features"})
    encode_batch_size: int = 64
    precise_bn: bool = True
    plots: bool = True
    resume: bool = field(default=False, metadata={
        "flag": "--resume", "help": "continue the run in RUN_DIR from its last checkpoint"})
    overwrite: bool = field(default=False, metadata={"flag": "--overwrite", "help": "replace a run already in RUN_DIR"})

    #: values of fields a run folder's config.json may lack (written before the field existed): what
    #: the run did then. (A new config takes the field defaults: the released code's behaviour.)
    LEGACY_VALUES = {"prompt_style": "spaced", "adapter_input": "normalized"}
    #: fields that may change when a run is resumed
    RESUMABLE_CHANGES = ("epochs", "data_dir", "out_dir", "device", "encode_batch_size", "plots", "resume", "overwrite")

    def validate(self) -> None:
        """Raise :class:`Clip2PointError` with a fix for any invalid setting."""
        if int(self.shots) not in SHOTS:
            raise Clip2PointError(
                f"shots must be one of {', '.join(map(str, SHOTS))} (shapes per class, the CLIP2Point/PointCLIP "
                f"few-shot protocol), got {self.shots!r}"
            )
        if self.gate not in GATES:
            raise Clip2PointError(f"gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        if self.mode not in MODES:
            raise Clip2PointError(f"mode must be 'cached' or 'online', got {self.mode!r}")
        if self.adapter_input not in ADAPTER_INPUTS:
            raise Clip2PointError(f"adapter_input must be one of {', '.join(ADAPTER_INPUTS)}, got {self.adapter_input!r}")
        if self.prompt_style not in PROMPT_STYLES:
            raise Clip2PointError(f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {self.prompt_style!r}")
        if self.cache_dtype not in CACHE_DTYPES:
            raise Clip2PointError(f"cache_dtype must be 'float32' or 'float16', got {self.cache_dtype!r}")
        positive = ("epochs", "batch_size", "resamples", "num_points", "encode_batch_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise Clip2PointError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("val_per_class", "limit_test"):
            if int(getattr(self, name)) < 0:
                raise Clip2PointError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        if not 0.0 < float(self.resample_keep) <= 1.0:
            raise Clip2PointError(f"resample_keep must lie in (0, 1], got {self.resample_keep!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise Clip2PointError(f"need lr > 0 and weight_decay ≥ 0, got lr={self.lr}, weight_decay={self.weight_decay}")
        if not self.out_dir:
            raise Clip2PointError("out_dir (the run directory) is required, e.g. runs/mn10-16shot")
        validate_template(self.template)  # exactly one {} (PromptTemplateError: what is wrong, an example)
        get_view_set(self.views)  # raises on an unknown view set
        GDPAConfig(gate=self.gate, dropout=self.dropout, gate_hidden=self.gate_hidden)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the ``fewshot`` entry of ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FewShotConfig:
        """A config from :meth:`to_dict` output (a run's config.json); unknown keys are ignored, missing
        ones take :data:`LEGACY_VALUES` (fields added later: what older runs did), else the defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{**cls.LEGACY_VALUES, **{k: v for k, v in data.items() if k in names}})


@dataclass
class FewShotSplits:
    """Indices of the shapes a run uses.

    Attributes:
        shots: (K·C,) indices into the training split, sorted.
        val: (val_per_class·C,) indices into the training split, disjoint from ``shots``, sorted.
        test: indices into the test split (all, or the class-balanced head for ``limit_test``).
    """

    shots: np.ndarray
    val: np.ndarray
    test: np.ndarray


def select_few_shot(
    labels: np.ndarray, num_classes: int, shots: int, val_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded K-shot selection plus a disjoint validation split, both from the training labels.

    Each class's training shapes are shuffled with a generator seeded by ``(seed, class)``; the
    first ``val_per_class`` become validation shapes, the next ``shots`` the training shots. The
    validation split therefore does not depend on K, and the shots of K are a subset of those of
    any larger K (same seed).

    Returns:
        (shot indices (K·C,), validation indices (val_per_class·C,)), both sorted int64.

    Raises:
        Clip2PointError: K not in :data:`SHOTS`. DatasetError: a class has fewer than
            ``shots + val_per_class`` training shapes.
    """
    if int(shots) not in SHOTS:
        raise Clip2PointError(f"shots must be one of {', '.join(map(str, SHOTS))}, got {shots!r}")
    labels = np.asarray(labels, dtype=np.int64)
    shot_idx, val_idx, short = [], [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < shots + val_per_class:
            short.append(f"class {c}: {len(members)}")
            continue
        perm = members[seeded_rng(seed, STREAM_SPLIT, c).permutation(len(members))]
        val_idx.append(perm[:val_per_class])
        shot_idx.append(perm[val_per_class : val_per_class + shots])
    if short:
        raise DatasetError(
            f"{len(short)} classes have fewer than shots + val_per_class = {shots + val_per_class} training shapes "
            f"({', '.join(short[:5])}); use fewer shots or a smaller validation split"
        )
    cat = lambda parts: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(shot_idx), cat(val_idx)


def stratified_head(labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` shapes in class-balanced round-robin order (each class's earliest shapes first).

    Each class's first shape, then each class's second, ...; so small limits still cover every class.
    Returns sorted int64 indices; all indices when ``n`` is 0 or at least ``len(labels)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [m[rank] for rank in range(max(map(len, per_class))) for m in per_class if rank < len(m)]
    return np.sort(np.asarray(order[:n], dtype=np.int64))


def make_splits(config: FewShotConfig) -> tuple[PointCloudDataset, PointCloudDataset, FewShotSplits]:
    """Open the train and test splits of ``config.dataset`` and choose the shots, validation and test shapes.

    Raises:
        DatasetError: the dataset is missing or too small (see :func:`open_dataset`, :func:`select_few_shot`).
    """
    opts = {"num_points": config.num_points, "up": config.up, "prompt_style": config.prompt_style}
    train = open_dataset(config.dataset, config.data_dir, "train", **opts)
    test = open_dataset(config.dataset, config.data_dir, "test", **opts)
    if train.class_names != test.class_names:
        raise DatasetError(f"{config.data_dir}: train and test splits list different classes")
    shots, val = select_few_shot(train.labels, len(train.class_names), config.shots, config.val_per_class, config.seed)
    return train, test, FewShotSplits(shots, val, stratified_head(test.labels, config.limit_test))
