"""Where CLIP2Point pre-training pairs come from: (point cloud, RGB views) per shape.

* :class:`MeshFolderSource` — any folder of meshes the core reads
  (:data:`clip2point.io.SUPPORTED_MESH_EXTENSIONS`), searched recursively; the class of a mesh is
  its first sub-folder under the root (``""`` at the root). Per mesh: ``num_points`` uniform
  surface samples and the 10 RGB views of :func:`clip2point.render.render_mesh_views` (the
  released setting: perspective camera at 2·dist, white background, a random directional light
  seeded per mesh) (Huang et al., ICCV 2023, §3.2).
* :class:`ShapeNetRenderSource` — the authors' ShapeNet-55 layout (see its docstring).

A new source implements :class:`PairSource` (``settings``, ``item_names``, ``load``); the pair
cache (:mod:`clip2point.pretrain.pair_cache`) renders/reads and encodes each item once.
"""
from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import DatasetError
from ..io import SUPPORTED_MESH_EXTENSIONS, load_mesh, normalize_unit_sphere, sample_surface
from ..render import ViewSet, get_view_set, render_mesh_views

log = logging.getLogger(__name__)

__all__ = [
    "PairItem", "PairSource", "MeshFolderSource", "ShapeNetRenderSource", "SHAPENET55_CLASSES",
    "DEFAULT_STORED_POINTS",
]

#: Points stored per shape in the pair cache (training draws 1,024 of them per step).
DEFAULT_STORED_POINTS = 2048


#: ShapeNet-55 synset → prompt word, in the released code's label order (``cat_labels`` of
#: ``datasets/shapenet.py`` paired with ``val_prompts`` of ``pretraining.py``).
SHAPENET55_CLASSES: dict[str, str] = dict(zip(
    "02691156 02747177 02773838 02801938 02808440 02818832 02828884 02843684 02871439 02876657 02880940 "
    "02924116 02933112 02942699 02946921 02954340 02958343 02992529 03001627 03046257 03085013 03207941 "
    "03211117 03261776 03325088 03337140 03467517 03513137 03593526 03624134 03636649 03642806 03691459 "
    "03710193 03759954 03761084 03790512 03797390 03928116 03938244 03948459 03991062 04004475 04074963 "
    "04090263 04099429 04225987 04256520 04330267 04379243 04401088 04460130 04468005 04530566 04554684".split(),
    ["airplane", "ashcan", "bag", "basket", "bathtub", "bed", "bench", "birdhouse", "bookshelf", "bottle", "bowl",
     "bus", "cabinet", "camera", "can", "cap", "car", "cellular telephone", "chair", "clock", "computer keyboard",
     "dishwasher", "display", "earphone", "faucet", "file", "guitar", "helmet", "jar", "knife", "lamp", "laptop",
     "loudspeaker", "mailbox", "microphone", "microwave", "motorcycle", "mug", "piano", "pillow", "pistol", "pot",
     "printer", "remote control", "rifle", "rocket", "skateboard", "sofa", "stove", "table", "telephone", "tower",
     "train", "vessel", "washer"],
    strict=True,
))


@dataclass
class PairItem:
    """One shape of a pair source.

    Attributes:
        name: unique item name (relative mesh path, or ``<synset>_<model id>``).
        label: class name ("" when unknown).
        points: (N, 3) float32, centred at the centroid, farthest point at norm 1, y-up.
        images: (V, H, W, 3) uint8 RGB views, view k from camera k of the 10-view set.
    """

    name: str
    label: str
    points: np.ndarray
    images: np.ndarray


class PairSource(Protocol):
    """Where pairs come from. ``settings()`` must change whenever item content would change."""

    def settings(self) -> dict[str, Any]:
        """JSON-able description of everything that decides item content (the cache rebuilds when it changes)."""
        ...

    def item_names(self) -> list[str]:
        """Unique, stable item names, in item order."""
        ...

    def load(self, i: int) -> PairItem:
        """Item ``i``; raises a Clip2PointError for an item to skip."""
        ...


def _item_seed(seed: int, name: str, salt: int = 0) -> int:
    """A stable per-item seed (independent of item order and of Python's hash randomisation)."""
    return (zlib.crc32(f"{seed}:{salt}:{name}".encode()) & 0x7FFFFFFF)


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    a = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


class MeshFolderSource:
    """Meshes in a folder (recursive): surface samples + the 10 shaded RGB views of each.

    Args:
        root: folder searched recursively for :data:`clip2point.io.SUPPORTED_MESH_EXTENSIONS`
            files (a ``.ply`` without faces fails at load time and is skipped with a warning).
        up: the files' up axis, "y" or "z" (ModelNet OFF meshes are z-up).
        num_points: surface samples stored per mesh (uniform by area, seeded per mesh).
        image_size: RGB view size in pixels (224 for ViT-B/32).
        views: the view set of the RGB renders ("10", CLIP2Point's pre-training set).
        seed: base seed of the per-mesh point sampling and random light.

    Raises:
        DatasetError: the folder does not exist or holds no mesh file.
    """

    kind = "meshes"

    def __init__(self, root: str | os.PathLike, up: str = "y", num_points: int = DEFAULT_STORED_POINTS,
                 image_size: int = 224, views: str | ViewSet = "10", seed: int = 0) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"mesh folder {self.root} does not exist; pass a folder of .off/.obj/.stl/.ply/.glb meshes")
        self.up, self.num_points, self.image_size, self.seed = up, int(num_points), int(image_size), int(seed)
        self.views = get_view_set(views)
        self.paths = sorted(
            (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_MESH_EXTENSIONS),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.paths:
            raise DatasetError(f"no mesh files ({' '.join(SUPPORTED_MESH_EXTENSIONS)}) found under {self.root}")
        self._names = [p.relative_to(self.root).as_posix() for p in self.paths]

    def settings(self) -> dict[str, Any]:
        """See :meth:`PairSource.settings`."""
        return {"kind": self.kind, "up": self.up, "num_points": self.num_points, "image_size": self.image_size,
                "views": [list(self.views.elev), list(self.views.azim), list(self.views.dist)], "seed": self.seed,
                "renderer": "render_mesh_views/perspective"}

    def item_names(self) -> list[str]:
        """See :meth:`PairSource.item_names`."""
        return list(self._names)

    def label(self, i: int) -> str:
        """Class name of item ``i`` ("" when unknown)."""
        parts = Path(self._names[i]).parts
        return parts[0] if len(parts) > 1 else ""

    def load(self, i: int) -> PairItem:
        """Sample and render mesh ``i``.

        Raises:
            Clip2PointError: unreadable mesh, no faces, zero area (the builder skips it).
        """
        name = self._names[i]
        mesh = load_mesh(self.paths[i], up=self.up)
        points = sample_surface(mesh.vertices, mesh.faces, self.num_points, seed=_item_seed(self.seed, name, 1))
        images = render_mesh_views(mesh, self.views, self.image_size, seed=_item_seed(self.seed, name, 2))
        return PairItem(name, self.label(i), normalize_unit_sphere(points, error=DatasetError, what=name),
                        _to_uint8(images))


class ShapeNetRenderSource:
    """The authors' ShapeNet-55 pre-training data: point clouds plus 10 PNG renders per model.

    Expected layout under ``root`` (the released code's ``data/`` folder; each path may also sit
    under ``root/ShapeNet55/``)::

        shapenet_pc/<synset>-<model id>.npy       (8192, 3) float points (Point-BERT's ShapeNet-55)
        ShapeNet-55/train.txt, test.txt           optional lists of "<synset>-<model id>.npy"
        rendering/<synset>_<model id>/<k>.png     RGB render of view k = 0..9 (10-view set)

    Models without all 10 PNGs are
    skipped (counted in the log). Images of another size are resized (shorter side, bicubic) and
    centre-cropped to ``image_size``, like CLIP's preprocessing; RGBA is composited on white.

    Args:
        root: the data folder.
        split: "train" (released pre-training), "test" (the models of that list file), or "all"
            (every ``.npy`` in ``shapenet_pc``). Without a ``ShapeNet-55`` folder every ``.npy`` is used.
        num_points: points kept per model (a seeded random subset; all when fewer).
        image_size: views are resized to this size.
        num_views: PNGs per model (10).
        seed: seed of the point subsets.

    Raises:
        DatasetError: no point-cloud folder, no render folder, or no complete model.
    """

    kind = "shapenet55"

    def __init__(self, root: str | os.PathLike, split: str = "train", num_points: int = DEFAULT_STORED_POINTS,
                 image_size: int = 224, num_views: int = 10, seed: int = 0) -> None:
        self.root = Path(root).expanduser()
        if split not in ("train", "test", "all"):
            raise DatasetError(f"ShapeNet split must be train, test or all, got {split!r}")
        self.split, self.num_points, self.image_size = split, int(num_points), int(image_size)
        self.num_views, self.seed = int(num_views), int(seed)
        self.pc_dir = self._first_dir("shapenet_pc")
        self.render_dir = self._first_dir("rendering")
        files = self._listed_files()
        self._names: list[str] = []
        self._pc: list[Path] = []
        missing = 0
        for fname in files:
            stem = Path(fname).stem
            if "-" not in stem:
                continue
            synset, model = stem.split("-", 1)
            name = f"{synset}_{model}"
            pc = self.pc_dir / fname
            if pc.is_file() and all((self.render_dir / name / f"{k}.png").is_file() for k in range(self.num_views)):
                self._names.append(name)
                self._pc.append(pc)
            else:
                missing += 1
        if missing:
            log.warning("ShapeNet: skipped %d of %d models without a point cloud or all %d renders", missing, len(files), self.num_views)
        if not self._names:
            raise DatasetError(
                f"no complete ShapeNet model under {self.root}: expected shapenet_pc/<synset>-<id>.npy and "
                f"rendering/<synset>_<id>/0..{self.num_views - 1}.png (see `clip2point pretrain --help`)"
            )

    def _first_dir(self, name: str) -> Path:
        for cand in (self.root / name, self.root / "ShapeNet55" / name):
            if cand.is_dir():
                return cand
        raise DatasetError(
            f"{self.root}: no '{name}' folder (looked in {self.root}/{name} and {self.root}/ShapeNet55/{name}); "
            "the expected layout is shapenet_pc/<synset>-<id>.npy + rendering/<synset>_<id>/<k>.png"
        )

    def _listed_files(self) -> list[str]:
        """``.npy`` names of the split's list; every ``.npy`` for "all" or when there is no list folder."""
        everything = sorted(p.name for p in self.pc_dir.glob("*.npy"))
        if self.split == "all":
            return everything
        lists = [d / "ShapeNet-55" / f"{self.split}.txt" for d in (self.root, self.root / "ShapeNet55")]
        lines = [ln.strip() for f in lists if f.is_file() for ln in f.read_text().splitlines() if ln.strip()]
        if lines:
            return sorted(dict.fromkeys(lines))
        if any(f.parent.is_dir() for f in lists):
            raise DatasetError(f"{self.root}: ShapeNet-55/{self.split}.txt not found; pass the split that exists, or 'all'")
        return everything

    def settings(self) -> dict[str, Any]:
        """See :meth:`PairSource.settings`."""
        return {"kind": self.kind, "split": self.split, "num_points": self.num_points, "image_size": self.image_size,
                "num_views": self.num_views, "seed": self.seed}

    def item_names(self) -> list[str]:
        """See :meth:`PairSource.item_names`."""
        return list(self._names)

    def label(self, i: int) -> str:
        """Class name of item ``i`` ("" when unknown)."""
        synset = self._names[i].split("_", 1)[0]
        return SHAPENET55_CLASSES.get(synset, synset)

    def _read_png(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im)
            im = im.convert("RGB")
            S = self.image_size
            if im.size != (S, S):
                w, h = im.size
                scale = S / min(w, h)
                im = im.resize((max(S, round(w * scale)), max(S, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - S) // 2, (h - S) // 2
                im = im.crop((left, top, left + S, top + S))
            return np.asarray(im, dtype=np.uint8)

    def load(self, i: int) -> PairItem:
        """Read model ``i``'s points and PNGs.

        Raises:
            DatasetError: unreadable ``.npy`` (pickled, wrong shape, NaN) or PNG.
        """
        name, path = self._names[i], self._pc[i]
        try:
            pts = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DatasetError(f"{path}: cannot read the point cloud ({e})") from None
        if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) < 2 or not np.isfinite(pts[:, :3]).all():
            raise DatasetError(f"{path}: expected an (N, 3) finite point array, got shape {pts.shape}")
        pts = pts[:, :3].astype(np.float32)
        if len(pts) > self.num_points:
            rng = np.random.default_rng(_item_seed(self.seed, name, 1))
            pts = pts[np.sort(rng.choice(len(pts), self.num_points, replace=False))]
        try:
            images = np.stack([self._read_png(self.render_dir / name / f"{k}.png") for k in range(self.num_views)])
        except OSError as e:
            raise DatasetError(f"{self.render_dir / name}: cannot read a render ({e})") from None
        return PairItem(name, self.label(i), normalize_unit_sphere(pts, error=DatasetError, what=name), images)

