"""Label tables: Cityscapes (from cityscapesscripts) and CamVid (11 classes + void)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelTable:
    """Mapping from the ids stored in label files to training ids (``IGNORE_INDEX`` = ignore).

    ``id_to_train`` has 256 entries; ids with no entry in the table map to ``-1`` so that a
    loader can tell "ignored" from "not a label at all".
    """

    name: str
    class_names: tuple[str, ...]
    train_colors: tuple[tuple[int, int, int], ...]
    id_to_train: tuple[int, ...]
    train_to_id: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Number of evaluated classes."""
        return len(self.class_names)

    def lut(self) -> np.ndarray:
        """A uint8-indexable int16 lookup array: file id -> train id, -1 for invalid ids."""
        return np.asarray(self.id_to_train, dtype=np.int16)

    def valid_ids(self) -> list[int]:
        """Ids that may appear in a label file."""
        return [i for i, t in enumerate(self.id_to_train) if t != -1]

    def palette(self) -> np.ndarray:
        """(num_classes + 1, 3) uint8 colours by train id; the last row (black) is for ignore."""
        return np.asarray([*self.train_colors, (0, 0, 0)], dtype=np.uint8)


def _cityscapes() -> LabelTable:
    from cityscapesscripts.helpers.labels import labels

    id_to_train = [-1] * 256
    names: dict[int, str] = {}
    colors: dict[int, tuple[int, int, int]] = {}
    train_to_id: dict[int, int] = {}
    for lab in labels:
        if lab.id < 0:
            continue
        train = lab.trainId if 0 <= lab.trainId < 255 else IGNORE_INDEX
        id_to_train[lab.id] = train
        if train != IGNORE_INDEX and train not in names:
            names[train] = lab.name
            colors[train] = tuple(lab.color)
            train_to_id[train] = lab.id
    n = len(names)
    return LabelTable(
        name="cityscapes",
        class_names=tuple(names[i] for i in range(n)),
        train_colors=tuple(colors[i] for i in range(n)),
        id_to_train=tuple(id_to_train),
        train_to_id=tuple(train_to_id[i] for i in range(n)),
    )


CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_COLORS = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (0, 0, 192),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)


def _camvid() -> LabelTable:
    id_to_train = [-1] * 256
    for i in range(len(CAMVID_CLASSES)):
        id_to_train[i] = i
    id_to_train[len(CAMVID_CLASSES)] = IGNORE_INDEX  # 11 = void in the SegNet layout
    return LabelTable(
        name="camvid",
        class_names=CAMVID_CLASSES,
        train_colors=CAMVID_COLORS,
        id_to_train=tuple(id_to_train),
        train_to_id=tuple(range(len(CAMVID_CLASSES))),
    )


_TABLES: dict[str, LabelTable] = {}


def get_label_table(name: str) -> LabelTable:
    """The label table ``cityscapes`` or ``camvid`` (built once, on first use)."""
    builders = {"cityscapes": _cityscapes, "camvid": _camvid}
    if name not in builders:
        raise KeyError(f"unknown label table {name!r}; known: {', '.join(builders)}")
    if name not in _TABLES:
        _TABLES[name] = builders[name]()
    return _TABLES[name]
