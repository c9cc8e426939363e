"""Few-shot learning with the Gated Dual-Path Adapter: data splits, a feature cache, training runs.

CLIP2Point's few-shot protocol (Huang et al., ICCV 2023, §3.3 and §4.3; released ``fewshot.py``):
K shapes per class from the training split, 10 depth views per shape, two frozen encoders (the
CLIP2Point depth encoder and CLIP), a trainable adapter (here :mod:`clip2point.gdpa`), AdamW
(lr 1e-3, weight decay 1e-4), batch 32, 100 epochs. What differs from the released script:

* **Any ModelNet10/40 and K ∈ {1, 2, 4, 8, 16}** through :func:`clip2point.datasets.open_dataset`
  (the released script hard-codes ModelNet40 and 16 shots).
* **A validation split** picks the checkpoint: ``val_per_class`` further training shapes per class,
  disjoint from the shots. The released script picks the best epoch *on the test set*.
* **Encode once** (``mode="cached"``): the frozen encoders see every shape once (and each of
  ``resamples`` point re-samples of the training shapes once); the adapter trains on the cached
  (S, R, V, D) features. The released script renders and encodes the training *and* test shapes
  in every epoch; ``mode="online"`` keeps that behaviour for comparison (train and validation
  shapes re-rendered and re-encoded every epoch, the test set once at the end).
* **Runs are resumable, cancellable and reproducible**: a checkpoint every epoch (atomic), all
  randomness derived from ``(seed, epoch)``, so an interrupted run that is resumed ends exactly
  where an uninterrupted one does (on the CPU; bitwise for the same thread count).
* **"Precise BN"** (``precise_bn=True``): after each epoch the adapter's BatchNorm statistics are
  re-estimated on the epoch's training features before validating. With the released momentum
  running averages, the initial variance of 1 dominates for ~100 optimizer steps, longer than a
  short few-shot run (10 shapes = one step per epoch), and eval-mode predictions collapse.
* **Head temperature**: a learnable logit scale initialised to CLIP's (see :mod:`clip2point.gdpa`);
  the released script uses the bare cosine.

``limit_test=N`` evaluates N test shapes chosen class-balanced and deterministically (see
:func:`stratified_head`); the result is reported with the number of shapes used.

Modules (everything below is re-exported here):

* :mod:`~clip2point.fewshot.config`: :class:`FewShotConfig`, shot/validation/test selection, seed streams.
* :mod:`~clip2point.fewshot.features`: view encoding, encoder-pass accounting, the on-disk feature cache.
* :mod:`~clip2point.fewshot.train`: :class:`AdapterTrainer` and :func:`run_fewshot`.
* :mod:`~clip2point.fewshot.rundir`: the run-folder format, and :class:`RunFolder`, its one reader.
* :mod:`~clip2point.fewshot.infer`: :func:`load_adapter`, :class:`FewShotClassifier`, :class:`AdapterResult`.
* :mod:`~clip2point.fewshot.released`: :func:`import_released_adapter` (the authors' DPA checkpoint → a run folder).
"""
from __future__ import annotations

from ..gdpa import GATES
from .config import MODES, SHOTS, FewShotConfig, FewShotSplits, make_splits, select_few_shot, stratified_head
from .features import EncoderPasses, FeatureCache, SplitFeatures, ViewEncoder, encode_split, released_recipe_passes
from .infer import AdapterResult, FewShotClassifier, load_adapter
from .released import import_released_adapter, read_released_dpa
from .rundir import RUN_FILES, EpochStats, GateWeights, RunFolder, read_run_config
from .train import AdapterTrainer, Progress, RunResult, run_fewshot

__all__ = [
    "SHOTS", "MODES", "GATES", "FewShotConfig", "FewShotSplits", "select_few_shot", "stratified_head", "make_splits",
    "EncoderPasses", "ViewEncoder", "SplitFeatures", "FeatureCache", "encode_split",
    "EpochStats", "Progress", "RunResult", "run_fewshot", "released_recipe_passes", "AdapterTrainer",
    "FewShotClassifier", "AdapterResult", "load_adapter", "read_run_config", "RUN_FILES", "RunFolder", "GateWeights",
    "import_released_adapter", "read_released_dpa",
]
