"""Shapes for the app: examples, ModelNet browsing, loading a shape and rendering its views.

* :func:`example_names`, :func:`example_path`, :func:`example_thumbnails`, :data:`CLASS_PRESETS` —
  the repository's procedural example objects.
* :func:`find_data_dir`, :func:`available_datasets`, :func:`dataset_class_counts`,
  :func:`dataset_indices` — the ModelNet data behind the dataset browser.
* :class:`ShapeSource` → :func:`load_shape` → :class:`Shape` → :func:`render_views` →
  :class:`RenderedViews` (depth maps CLIP reads and CLIP image views from the same cameras).

Uploads are read by :func:`load_file_shape`, in a time- and memory-limited child process when the
app's :class:`~ui.limits.AppLimits` are given.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from clip2point.classes import CLASS_SETS
from clip2point.datasets import DATASET_NAMES
from clip2point.errors import Clip2PointError
from clip2point.io import Mesh, ShapeEntry, load_mesh
from ui.defaults import DEFAULT_NUM_POINTS, DEFAULT_RADIUS, DEFAULT_VIEWS, EXAMPLES_DIR, REPO_ROOT
from ui.limits import AppLimits, as_int, check_num_points, check_up
from ui.loading import IMAGE_VIEW_POINTS, MULTI_SHAPE_EXTENSIONS, FileShape, read_file_shape
from ui.registry import REGISTRY, ModelRegistry

log = logging.getLogger(__name__)

__all__ = [
    "example_names", "example_path", "example_thumbnails", "CLASS_PRESETS", "find_data_dir",
    "available_datasets", "dataset_class_counts", "dataset_indices", "ShapeSource", "Shape", "RenderedViews",
    "load_file_shape", "load_shape", "render_views", "turn_shape", "up_axis_hint", "TURN_AXES", "Z_UP_EXTENSIONS",
]

#: Axes the shape can be turned about by 90° (the app's rotate buttons), render world (y-up).
TURN_AXES = ("x", "y", "z")
#: File types stored z-up by convention (ModelNet's .off meshes and the ModelNet .h5 point sets):
#: an upload of one is read with up = z unless the user says otherwise.
Z_UP_EXTENSIONS = (".off", ".h5", ".hdf5")
#: A shape whose extent along y is below this share of its largest extent is called flat along y.
FLAT_RATIO = 0.35



# ----------------------------------------------------------------------------------------------
# examples, data folders


def example_names() -> list[str]:
    """Names of the procedural example objects (``examples/meshes/<name>.ply``), sorted."""
    return sorted(p.stem for p in (EXAMPLES_DIR / "meshes").glob("*.ply"))


def example_path(name: str, kind: str = "meshes") -> Path:
    """Path of an example object (``kind`` "meshes" or "points").

    Raises:
        Clip2PointError: unknown example name.
    """
    names = example_names()
    if kind not in ("meshes", "points") or not isinstance(name, str) or name not in names:
        raise Clip2PointError(f"unknown example {str(name)[:40]!r}; choose one of {', '.join(names)}")
    path = EXAMPLES_DIR / kind / f"{name}.ply"  # a listed name: never a path outside examples/
    if not path.is_file():
        raise Clip2PointError(f"example {name!r} has no {kind} file; choose one of {', '.join(names)}")
    return path


#: Class-name presets offered by the UI: the core's sets plus the 14 example objects.
CLASS_PRESETS: dict[str, list[str]] = {**{k: list(v) for k, v in CLASS_SETS.items()}, "examples": example_names()}


@functools.lru_cache(maxsize=4)
def example_thumbnails(size: int = 144) -> tuple[tuple[np.ndarray, str], ...]:
    """(uint8 RGB image, name) of every example mesh seen from above-front-right (cached)."""
    from clip2point.render import ViewSet, render_mesh_views

    view = ViewSet.custom([25.0], [35.0])
    thumbs = []
    for name in example_names():
        img = render_mesh_views(load_mesh(example_path(name)), view, size, antialias=2)[0]
        thumbs.append(((img.numpy() * 255).round().astype(np.uint8), name))
    return tuple(thumbs)


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The ModelNet data folder: ``explicit``, else ``$CLIP2POINT_DATA``, else ``../shared/data``.

    ``../shared/data`` is looked up beside the repository and beside the working directory.
    Returns None when none of them is a folder.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    elif os.environ.get("CLIP2POINT_DATA"):
        candidates.append(Path(os.environ["CLIP2POINT_DATA"]).expanduser())
    else:
        candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


def available_datasets(data_dir: str | os.PathLike | None, registry: ModelRegistry = REGISTRY) -> list[str]:
    """Names of the ModelNet datasets whose test split opens in ``data_dir`` (empty if None)."""
    if data_dir is None:
        return []
    found = []
    for name in DATASET_NAMES:
        try:
            registry.dataset(data_dir, name, "test")
            found.append(name)
        except Clip2PointError as err:
            log.info("dataset %s not available in %s: %s", name, data_dir, err)
    return found


def dataset_class_counts(dataset) -> list[tuple[str, int]]:
    """(class name, number of shapes) of the classes present in a dataset, in label order."""
    counts = np.bincount(dataset.labels, minlength=len(dataset.class_names))
    return [(c, int(n)) for c, n in zip(dataset.class_names, counts) if n]


def dataset_indices(dataset, class_name: str | None) -> np.ndarray:
    """Dataset indices of the shapes of one class (all shapes for None/"" /"all")."""
    if not class_name or class_name == "all":
        return np.arange(len(dataset))
    if class_name not in dataset.class_names:
        raise Clip2PointError(f"class {class_name!r} is not in this dataset")
    return np.flatnonzero(dataset.labels == dataset.class_names.index(class_name))


# ----------------------------------------------------------------------------------------------
# shapes and views


@dataclass(frozen=True)
class ShapeSource:
    """Where a shape comes from, enough to load it again with other settings.

    Attributes:
        kind: "file" (an upload or any path), "example" (a name) or "dataset".
        path: the file path (kind "file"), the example name (kind "example").
        index: shape index in a multi-shape file, or the dataset index.
        dataset, split, data_dir: for kind "dataset".
        display: a name for people (the uploaded file's name).
    """

    kind: str
    path: str = ""
    index: int = 0
    dataset: str = ""
    split: str = "test"
    data_dir: str = ""
    display: str = ""

    @classmethod
    def file(cls, path: str | os.PathLike, index: int = 0, display: str = "") -> ShapeSource:
        return cls("file", str(path), int(index), display=display or Path(path).name)

    @classmethod
    def example(cls, name: str) -> ShapeSource:
        example_path(name)  # validates the name
        return cls("example", name, display=f"{name} (example mesh)")

    @classmethod
    def from_dataset(cls, data_dir: str | os.PathLike, dataset: str, split: str, index: int) -> ShapeSource:
        return cls("dataset", index=int(index), dataset=dataset, split=split, data_dir=str(data_dir))


@dataclass
class Shape:
    """A loaded shape, ready to render.

    Attributes:
        name: for people ("chair.ply", "modelnet10 test #12 · chair_0890").
        points: (N, 3) float32 y-up points that are rendered and classified.
        colors: (N, 3) colours of ``points`` in [0, 1], or None.
        mesh: the triangle mesh (y-up) when the input was a mesh: its CLIP image views are ray-cast.
        dense_points, dense_colors, dense_normals: up to :data:`IMAGE_VIEW_POINTS` points for the
            CLIP image views of point clouds (None for meshes).
        up: the up axis the file was read with ("y" or "z").
        num_input_points: points (or mesh vertices) in the file.
        true_label: the dataset label, for dataset shapes.
        source: how to load it again; ``num_points``: the requested count.
        key: identity for caches.
        seconds: load time.
        entry: which shape of a multi-shape file it is (index, count, label, name), or None.
        turns: the 90° turns applied after loading ("x", "y", "z", in order; :func:`turn_shape`).
        note: a remark for people about how it was read (e.g. why the up axis is z), or "".
    """

    name: str
    points: np.ndarray
    colors: np.ndarray | None
    mesh: Mesh | None
    dense_points: np.ndarray | None
    dense_colors: np.ndarray | None
    dense_normals: np.ndarray | None
    up: str
    num_input_points: int
    true_label: str | None
    source: ShapeSource
    num_points: int
    key: str
    seconds: float = 0.0
    entry: ShapeEntry | None = None
    turns: tuple[str, ...] = ()
    note: str = ""

    @property
    def kind(self) -> str:
        return "mesh" if self.mesh is not None else "points"


@dataclass
class RenderedViews:
    """One shape seen from one view set.

    Attributes:
        depth: (V, H, W) float32 depth images in [0, 1] (near dark, background 1.0): CLIP input.
        images: (V, H, W, 3) uint8 CLIP image views from the same cameras (background white), or
            None when they were not asked for.
        labels: "elev 0°, azim 90°" per view.
        view_set, radius, image_size: render settings.
        seconds: time per step ("depth", "images").
        key: identity for the session's feature cache.
        cache: free space for front ends (e.g. encoded PNGs).
        renderer: the ``clip2point.render.DepthRenderer`` that rendered ``depth`` (what the
            persistent view-feature cache keys the render settings by), or None.
    """

    depth: torch.Tensor
    images: np.ndarray | None
    labels: list[str]
    view_set: str
    radius: float
    image_size: int
    seconds: dict[str, float]
    key: tuple
    cache: dict = field(default_factory=dict, repr=False)
    renderer: object | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)


def load_file_shape(path: Path, index: int, num_points: int, up: str, display: str,
                    limits: AppLimits | None = None) -> FileShape:
    """(points, colors, mesh, dense (points, colors, normals), num_input) of a file.

    See :func:`ui.loading.read_file_shape`. With ``limits``, the file is read in a child process
    under ``limits.load_timeout_s`` and ``limits.load_memory_mb`` (``clip2point.sandbox.call_limited``),
    so a file that makes a reader hang or allocate without bound fails with a clear error and the
    server keeps its memory; without, it is read in this process.

    Raises:
        PointCloudFileError, UnsupportedFormatError: unreadable, corrupt or unsupported file.
        Clip2PointError: the time or memory limit was hit (the sandbox's error, naming the limit).
    """
    args = (str(path), int(index), int(num_points), up, display or path.name, IMAGE_VIEW_POINTS)
    if limits is None:
        return read_file_shape(*args)
    from clip2point.errors import ResourceLimitError, SandboxError
    from clip2point.sandbox import call_limited

    name = display or path.name
    t0 = time.perf_counter()
    try:
        return call_limited(read_file_shape, *args, timeout_s=float(limits.load_timeout_s),
                            memory_mb=int(limits.load_memory_mb))
    except (ResourceLimitError, SandboxError) as err:  # say which file, in the user's words
        what = f"{read_file_shape.__module__}.{read_file_shape.__qualname__}"
        msg = str(err).replace(what, "reading it")
        log.warning("upload %s refused: %s", name, msg)
        raise type(err)(f"{name}: {msg}") from None
    finally:
        log.debug("sandboxed read of %s: %.2f s", name, time.perf_counter() - t0)


def load_shape(
    source: ShapeSource,
    num_points: int = DEFAULT_NUM_POINTS,
    up: str | None = "y",
    registry: ModelRegistry = REGISTRY,
    limits: AppLimits | None = None,
) -> Shape:
    """Load a shape from a file, an example or a dataset.

    Args:
        source: what to load.
        num_points: points to classify (farthest point sampling for files; the first N for
            dataset shapes, as ModelNet loaders do).
        up: the file's up axis ("y"/"z"); for datasets None means the dataset's own axis.
        registry: where datasets are cached.
        limits: the app's limits: bounds ``num_points`` and the shape index, and reads files of
            kind "file" (uploads) in a child process with a time and memory limit. None: no
            bounds beyond the core's, files read in this process (scripts, notebooks).

    Raises:
        PointCloudFileError, UnsupportedFormatError: unreadable or unsupported file.
        Clip2PointError, DatasetError: bad settings, dataset or index; a limit exceeded.
    """
    t0 = time.perf_counter()
    num_points = check_num_points(num_points) if limits is None else limits.check_num_points(num_points)
    index = as_int(source.index, "shape index") if limits is None else limits.check_shape_index(source.index)
    true_label = None
    if source.kind == "dataset":
        ds = registry.dataset(source.data_dir, source.dataset, source.split)  # the data's own up axis
        if up is not None and check_up(up) != ds.up:  # the user overrides it
            ds = registry.dataset(source.data_dir, source.dataset, source.split, up)
        if not 0 <= index < len(ds):
            raise Clip2PointError(f"shape index {index} is out of range: {source.dataset} {source.split} has "
                                  f"{len(ds)} shapes (0 to {len(ds) - 1})")
        pts, label = ds[index]
        all_points = np.asarray(pts)
        points, colors, mesh, dense = all_points[:num_points], None, None, (all_points, None, None)
        true_label, up, num_input = ds.class_names[label], ds.up, len(all_points)
        name = f"{source.dataset} {source.split} #{index} · {ds.shape_name(index)}"
    else:
        up = check_up(up or "y")
        if index < 0:
            raise Clip2PointError(f"shape index must be 0 or more, got {index}")
        path = example_path(source.path) if source.kind == "example" else Path(source.path)
        file_limits = limits if source.kind == "file" else None  # the examples are the repository's own files
        if index and path.suffix.lower() not in MULTI_SHAPE_EXTENSIONS:
            raise Clip2PointError(f"{source.display or path.name} holds one shape; the shape index (here {index}) "
                                  f"applies to multi-shape {' / '.join(MULTI_SHAPE_EXTENSIONS)} files; set it to 0")
        points, colors, mesh, dense, num_input, entry = load_file_shape(path, index, num_points, up, source.display,
                                                                         file_limits)
        name = source.display or path.name
        if entry is not None and (entry.count > 1 or entry.class_name or entry.name):
            true_label = entry.class_name
            name += f" · shape {entry.index} of {entry.count}" + "".join(
                f" · {part}" for part in (entry.name, entry.class_name and f"label {entry.class_name}") if part)
    key = hashlib.sha1(repr((source, num_points, up)).encode()).hexdigest()[:16]
    return Shape(name, points, colors, mesh, *dense, up, num_input, true_label, source, num_points, key,
                 time.perf_counter() - t0, entry if source.kind == "file" else None)


def _turn_matrix(axis: str) -> np.ndarray:
    """The 3×3 matrix of a +90° (right-handed) turn about ``axis``."""
    c = {"x": [[1, 0, 0], [0, 0, -1], [0, 1, 0]], "y": [[0, 0, 1], [0, 1, 0], [-1, 0, 0]],
         "z": [[0, -1, 0], [1, 0, 0], [0, 0, 1]]}
    if axis not in c:
        raise Clip2PointError(f"turn axis must be one of {', '.join(TURN_AXES)}, got {str(axis)[:20]!r}")
    return np.asarray(c[axis], dtype=np.float32)


def turn_shape(shape: Shape, axis: str) -> Shape:
    """``shape`` turned by +90° about ``axis`` (x, y or z of the y-up render world): points, normals,
    the mesh and its offset; colours and labels unchanged. The key changes, so views are rendered anew.

    Raises:
        Clip2PointError: an unknown axis.
    """
    r = _turn_matrix(axis)

    def turn(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(np.asarray(a, dtype=np.float32) @ r.T)

    mesh = shape.mesh
    if mesh is not None:
        mesh = Mesh(turn(mesh.vertices), mesh.faces, mesh.vertex_colors, mesh.source,
                    np.asarray(mesh.offset, dtype=np.float64) @ r.T.astype(np.float64))
    turns = (*shape.turns, axis)
    key = hashlib.sha1(repr((shape.key, axis)).encode()).hexdigest()[:16]
    return replace(shape, points=turn(shape.points), mesh=mesh, dense_points=turn(shape.dense_points),
                   dense_normals=turn(shape.dense_normals), turns=turns, key=key)


def up_axis_hint(path: str | os.PathLike, points: np.ndarray | None = None, up: str = "y") -> tuple[str, str]:
    """The up axis to read an upload with, and a note for people saying why ("" when nothing stands out).

    ``.off`` and ``.h5``/``.hdf5`` files are ModelNet's formats, stored z-up: "z", with a note.
    Otherwise "y"; with ``points`` read y-up whose extent along y is under :data:`FLAT_RATIO` of
    their largest extent, the note suggests trying up = z or a turn (a suggestion only: flat
    objects exist).
    """
    ext = Path(path).suffix.lower()
    if ext in Z_UP_EXTENSIONS:
        return "z", (f"Up axis set to z: {ext} files (ModelNet) are stored z-up. If the shape lies on its side, "
                     "set Up to y or turn it.")
    if points is not None and up == "y" and len(points):
        extent = np.ptp(np.asarray(points, dtype=np.float64), axis=0)
        if extent.max() > 0 and extent[1] < FLAT_RATIO * extent.max():
            return "y", (f"This shape is flat along y (its height is {extent[1] / extent.max():.0%} of its largest "
                         "extent). If it lies on its side (a z-up file), set Up to z or turn it.")
    return "y", ""


def render_views(
    shape: Shape, views: str = DEFAULT_VIEWS, radius: float = DEFAULT_RADIUS, image_size: int = 224, images: bool = True
) -> RenderedViews:
    """Depth maps (what CLIP sees) and CLIP image views (what an RGB camera sees) of a shape.

    Depth: ``clip2point.render.render_depth`` (REFERENCE §2). Image views: a mesh is ray-cast
    and shaded from the same cameras (perspective at 2·dist, as the released pre-training
    renders); a point cloud is splatted from the depth cameras, coloured by its colours or
    shaded by its normals. ``images=False`` skips the image views (scripts that only classify).

    Raises:
        Clip2PointError: unknown view set, bad radius, degenerate points.
    """
    from clip2point.render import DepthRenderer, RasterSettings, get_view_set, render_mesh_views, render_point_views

    view_set = get_view_set(str(views))
    radius = float(radius)
    if not 16 <= int(image_size) <= 1024:
        raise Clip2PointError(f"image size must lie in 16..1024 pixels, got {image_size}")
    if not 0.0 < radius <= 0.2:
        raise Clip2PointError(f"splat radius must lie in (0, 0.2] NDC units, got {radius}")
    t0 = time.perf_counter()
    renderer = DepthRenderer(view_set, RasterSettings(image_size=int(image_size), radius=radius))
    depth = renderer(shape.points)[0].cpu()  # = render_depth(points, view_set, image_size, radius)
    t1 = time.perf_counter()
    rgb = None
    if images and shape.mesh is not None:
        rgb = render_mesh_views(shape.mesh, view_set, image_size)
    elif images:
        rgb = render_point_views(shape.dense_points, shape.dense_colors, shape.dense_normals, view_set, image_size, radius)
    if rgb is not None:  # display only: 8 bits per channel keep a session's memory small
        rgb = (rgb.cpu().numpy() * 255.0).round().astype(np.uint8)
    t2 = time.perf_counter()
    return RenderedViews(
        depth, rgb, view_set.labels(), str(views), radius, int(image_size),
        {"depth": t1 - t0, "images": t2 - t1}, (shape.key, str(views), radius, int(image_size)), renderer=renderer,
    )
