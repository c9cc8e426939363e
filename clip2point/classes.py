"""Class-name presets for zero-shot classification: the prompt words of each class.

The presets reproduce the prompts of CLIP2Point's released zero-shot code (Huang et al., ICCV
2023, §4 / released ``zeroshot.py``) exactly: ModelNet40 and ScanObjectNN are written as words
(``night stand``, ``flower pot``), but the release prompts ModelNet10 with its folder name
``night_stand`` (underscore). Preset ``"modelnet10"`` is that release prompt list;
``"modelnet10-spaced"`` writes ``night stand`` (CLIP's text encoder reads words, not
identifiers). :func:`class_names` turns dataset identifiers into prompt words the same way
(:data:`PROMPT_STYLES`: ``"release"`` or ``"spaced"``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import UnknownClassSetError

__all__ = [
    "CLASS_SETS", "MODELNET10", "MODELNET10_SPACED", "MODELNET40", "SCANOBJECTNN", "PROMPT_STYLES",
    "get_class_set", "parse_classes", "class_names",
]

#: How dataset identifiers become prompts: "release" (as CLIP2Point's released code prompts each
#: dataset: ModelNet10 keeps ``night_stand``, every other dataset is written as words) or "spaced"
#: (always words: ``night stand``).
PROMPT_STYLES = ("release", "spaced")

MODELNET40: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower pot", "glass box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night stand", "person", "piano", "plant", "radio",
    "range hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv stand", "vase",
    "wardrobe", "xbox",
)
#: ModelNet10 as the released zero-shot code prompts it (``night_stand`` with its underscore).
MODELNET10: tuple[str, ...] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)
#: ModelNet10 written as words (``night stand``), like the ModelNet40 prompts.
MODELNET10_SPACED: tuple[str, ...] = tuple(c.replace("_", " ") for c in MODELNET10)
#: ScanObjectNN's 15 categories in label order (Uy et al., ICCV 2019).
SCANOBJECTNN: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "modelnet10": MODELNET10,
    "modelnet10-spaced": MODELNET10_SPACED,
    "modelnet40": MODELNET40,
    "scanobjectnn": SCANOBJECTNN,
}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def class_names(identifiers: Iterable[str], dataset: str = "", style: str = "release") -> list[str]:
    """Turn dataset identifiers (``night_stand``) into prompt words.

    Args:
        identifiers: class identifiers in label order (folder names such as ``night_stand``).
        dataset: the dataset they come from ("modelnet10", "modelnet40", ...; any spelling
            :func:`get_class_set` accepts).
        style: "release" (as the released code prompts ``dataset``: ModelNet10 by its folder
            names, ``night_stand`` (a space becomes ``_``); other datasets as words) or
            "spaced" (underscores become spaces: ``night stand``).

    Raises:
        UnknownClassSetError: an unknown ``style``.
    """
    if style not in PROMPT_STYLES:
        raise UnknownClassSetError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    names = [str(s).strip() for s in identifiers]
    if style == "release" and _key(dataset) == "modelnet10":
        return [n.replace(" ", "_") for n in names]
    return [n.replace("_", " ") for n in names]


def get_class_set(name: str) -> list[str]:
    """Return a preset's class names (the prompt words, see the module docstring).

    ``name`` is matched ignoring case, ``-`` and ``_`` ("ModelNet-10" is "modelnet10").

    Raises:
        UnknownClassSetError: ``name`` is not one of :data:`CLASS_SETS`.
    """
    by_key = {_key(k): v for k, v in CLASS_SETS.items()}
    if _key(name) not in by_key:
        raise UnknownClassSetError(
            f"unknown class set {name!r}; choose one of {', '.join(CLASS_SETS)} "
            "or pass your own names (e.g. --classes \"chair,table,lamp\")"
        )
    return list(by_key[_key(name)])


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
