"""Road datasets (KITTI Road, CamVid, image+mask folders), image I/O and joint transforms."""

from roadseg.data.datasets import (
    IGNORE,
    CamVid,
    FolderDataset,
    KittiRoad,
    RoadDataset,
    build_dataset,
    build_training_set,
    kitti_samples,
)
from roadseg.data.io import read_image, read_mask
from roadseg.data.transforms import EvalTransform, TrainTransform, collate

__all__ = ["IGNORE", "CamVid", "EvalTransform", "FolderDataset", "KittiRoad", "RoadDataset", "TrainTransform",
           "build_dataset", "build_training_set", "collate", "kitti_samples", "read_image", "read_mask"]
