"""Class-name presets for zero-shot classification.

Names are written as words (``night stand``, ``flower pot``), as CLIP2Point's released
zero-shot code does (Huang et al., ICCV 2023, §4 / released ``zeroshot.py``), because CLIP's
text encoder reads words, not identifiers. :func:`class_names` turns dataset identifiers such as
``night_stand`` into words.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import UnknownClassSetError

__all__ = ["CLASS_SETS", "MODELNET10", "MODELNET40", "SCANOBJECTNN", "get_class_set", "parse_classes", "class_names"]

MODELNET40: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower pot", "glass box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night stand", "person", "piano", "plant", "radio",
    "range hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv stand", "vase",
    "wardrobe", "xbox",
)
MODELNET10: tuple[str, ...] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night stand", "sofa", "table", "toilet",
)
#: ScanObjectNN's 15 categories in label order (Uy et al., ICCV 2019).
SCANOBJECTNN: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "modelnet10": MODELNET10,
    "modelnet40": MODELNET40,
    "scanobjectnn": SCANOBJECTNN,
}


def class_names(identifiers: Iterable[str]) -> list[str]:
    """Turn dataset identifiers (``night_stand``) into prompt words (``night stand``)."""
    return [str(s).strip().replace("_", " ") for s in identifiers]


def get_class_set(name: str) -> list[str]:
    """Return a preset's class names.

    Raises:
        UnknownClassSetError: ``name`` is not one of :data:`CLASS_SETS`.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in CLASS_SETS:
        raise UnknownClassSetError(
            f"unknown class set {name!r}; choose one of {', '.join(CLASS_SETS)} "
            "or pass your own names (e.g. --classes \"chair,table,lamp\")"
        )
    return list(CLASS_SETS[key])


def parse_classes(classes: str | Sequence[str]) -> list[str]:
    """Parse a comma-separated string (or a sequence) of class names into a clean list.

    Raises:
        UnknownClassSetError: the list is empty, or a name appears twice.
    """
    items = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [str(c).strip() for c in items if str(c).strip()]
    if len(names) < 1:
        raise UnknownClassSetError("no class names given; pass at least one, e.g. \"chair,table,lamp\"")
    seen: set[str] = set()
    dups = [n for n in names if n.lower() in seen or seen.add(n.lower())]
    if dups:
        raise UnknownClassSetError(f"class name(s) listed twice: {', '.join(sorted(set(dups)))}; list each class once")
    return names
