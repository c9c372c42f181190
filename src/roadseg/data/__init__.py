"""Road datasets (KITTI Road, CamVid, image+mask folders), image I/O and joint transforms.

The names below are loaded on first use (module __getattr__), so that importing a submodule that needs no torch
(data.io for the command line's parser) does not import torch."""

import importlib

_WHERE = {
    "datasets": ("IGNORE", "CamVid", "FolderDataset", "KittiRoad", "RoadDataset", "build_dataset", "build_training_set",
                 "kitti_samples"),
    "io": ("read_image", "read_mask"),
    "transforms": ("EvalTransform", "TrainTransform", "collate"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name):
    if name in _MODULE:
        return getattr(importlib.import_module(f"roadseg.data.{_MODULE[name]}"), name)
    raise AttributeError(f"module 'roadseg.data' has no attribute {name!r}")
