"""Category groups of classes, for the per-category analysis of learned inference graphs.

Shipped groups:

* CIFAR-10: vehicles (airplane, automobile, ship, truck) and animals (the other six), the
  split of the papers' Fig. 3.
* Fashion-MNIST: tops (T-shirt/top, pullover, coat, shirt), bottoms (trouser), dresses, footwear
  (sandal, sneaker, ankle boot) and bags. These are garment categories by body region/use, our
  choice.
* ImageNet (1000 classes in the standard WordNet-sorted index order): from index ranges of that
  order. Birds 7-24, 80-100, 127-146; reptiles 33-68; dogs 151-268; other mammals 101-106,
  147-150, 269-299, 330-388; other animals (fish, amphibians, invertebrates) 0-6, 25-32, 69-79,
  107-126, 300-329, 389-397; food 924-969; objects 398-923; others 970-999 (geological
  formations, people, plants, fungi). The papers also split man-made objects into containers and
  transport; those classes are scattered over the index order, so here they stay in "objects".
* Any data set: a JSON file mapping each class name (or index) to a group name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

CIFAR10 = {
    "vehicles": ["airplane", "automobile", "ship", "truck"],
    "animals": ["bird", "cat", "deer", "dog", "frog", "horse"],
}
FASHION_MNIST = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "bottoms": ["Trouser"],
    "dresses": ["Dress"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "bags": ["Bag"],
}
IMAGENET_RANGES = {
    "birds": [(7, 24), (80, 100), (127, 146)],
    "reptiles": [(33, 68)],
    "dogs": [(151, 268)],
    "other mammals": [(101, 106), (147, 150), (269, 299), (330, 388)],
    "other animals": [(0, 6), (25, 32), (69, 79), (107, 126), (300, 329), (389, 397)],
    "food": [(924, 969)],
    "objects": [(398, 923)],
    "others": [(970, 999)],
}


def imagenet_groups(classes: Sequence[str]) -> dict[str, list[str]]:
    """ImageNet groups by index range over ``classes`` (1000 names in index order)."""
    if len(classes) != 1000:
        raise ValueError(f"ImageNet groups need the 1000 classes in index order, got "
                         f"{len(classes)}; pass a --groups JSON for other data")
    return {group: [classes[i] for lo, hi in ranges for i in range(lo, hi + 1)]
            for group, ranges in IMAGENET_RANGES.items()}


def default_groups(dataset: str, classes: Sequence[str]) -> dict[str, list[str]] | None:
    """The shipped groups for a data set, or None when there are none."""
    if dataset == "cifar10":
        return CIFAR10
    if dataset == "fashion-mnist":
        return FASHION_MNIST
    if dataset == "imagefolder" and len(classes) == 1000:
        return imagenet_groups(classes)
    return None


def load_groups(path: str | Path, classes: Sequence[str]) -> dict[str, list[str]]:
    """Groups from a JSON file ``{"class name or index": "group", ...}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"groups file not found: {path}")
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected an object mapping class -> group")
    groups: dict[str, list[str]] = {}
    for key, group in mapping.items():
        name = classes[int(key)] if key.isdigit() and key not in classes else key
        groups.setdefault(str(group), []).append(name)
    return groups


def check_groups(groups: dict[str, list[str]], classes: Sequence[str]) -> None:
    """Every class in exactly one group, and no unknown class."""
    seen: dict[str, str] = {}
    for group, members in groups.items():
        for name in members:
            if name not in classes:
                raise ValueError(f"group {group!r} names unknown class {name!r}")
            if name in seen:
                raise ValueError(f"class {name!r} is in both {seen[name]!r} and {group!r}")
            seen[name] = group
    missing = [c for c in classes if c not in seen]
    if missing:
        raise ValueError(f"{len(missing)} classes belong to no group (first: {missing[0]!r})")


def class_to_group(groups: dict[str, list[str]], classes: Sequence[str]) -> list[int]:
    """Group index of every class, in class order (groups in their given order)."""
    check_groups(groups, classes)
    index = {name: g for g, members in enumerate(groups.values()) for name in members}
    return [index[c] for c in classes]
