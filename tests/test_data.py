"""Datasets on the real KITTI/CamVid copies in ../shared/data, and generated folders for the broken cases."""

import numpy as np
import pytest
import torch

from conftest import DATA, make_kitti, write_png
from roadseg.config import DataConfig
from roadseg.data import build_dataset, build_training_set, read_image
from roadseg.data.datasets import FolderDataset, folder_samples, kitti_samples
from roadseg.data.transforms import EvalTransform, TrainTransform
from roadseg.errors import DataError


def test_kitti_real_frames_pair_and_split(kitti_root):
    s = kitti_samples(kitti_root)
    assert len(s) == 241 and {x.category for x in s} == {"um", "umm", "uu"}
    assert s[0].image.suffix == ".jpg" and s[0].mask.name == "um_road_000000.png"
    cfg = DataConfig(root=str(kitti_root), val_last_n=10)
    val = build_dataset(cfg, "val")
    train = build_dataset(cfg, "train")
    assert len(val) == 30 and len(train) == 211
    assert not {x.name for x in val.samples} & {x.name for x in train.samples}
    assert [x.name for x in val.samples if x.category == "um"][0] == "um_000069"  # last 10 of um 000000-000078


def test_kitti_target_follows_devkit_colours(kitti_root):
    ds = build_dataset(DataConfig(root=str(kitti_root), val_last_n=0), "all")
    i = [x.name for x in ds.samples].index("um_000000")
    item = ds[i]
    img, tgt = item["image"], item["target"]
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and tgt.shape == img.shape[1:]
    vals = set(torch.unique(tgt).tolist())
    assert vals <= {0, 1, 255} and {0, 1} <= vals
    # road is in the lower half of a dash-cam frame, not in the sky
    h = tgt.shape[0]
    assert (tgt[h // 2 :] == 1).float().mean() > 0.2 and (tgt[: h // 4] == 1).float().mean() == 0


def test_stray_blue_pixels_are_outside_the_evaluated_area(tmp_path):
    root = make_kitti(tmp_path)
    mask_path = root / "training" / "gt_image_2" / "um_road_000000.png"
    m = np.array(read_image(mask_path))
    m[0, 0] = (0, 0, 255)
    write_png(mask_path, m)
    ds = build_dataset(DataConfig(root=str(root), val_last_n=0), "all")
    assert ds[0]["target"][0, 0] == 255


def test_frames_of_different_sizes_and_lane_task(kitti_root):
    ds = build_dataset(DataConfig(root=str(kitti_root), val_last_n=0, task="lane", categories=["um"]), "all")
    assert len(ds) == 11
    widths = {img.shape[-1] for img in (ds[i]["image"] for i in range(len(ds)))}
    assert all(1224 <= w <= 1242 for w in widths)


def test_camvid_road_and_void(tmp_path):
    ds = build_dataset(DataConfig(dataset="camvid", root=str(DATA / "camvid")), "val")
    assert len(ds) == 101
    raw = np.array(__import__("PIL.Image", fromlist=["Image"]).open(ds.samples[0].mask))
    t = ds[0]["target"].numpy()
    assert ((raw == 3) == (t == 1)).all() and ((raw == 11) == (t == 255)).all()
    assert t.shape == (360, 480)


def test_extra_datasets_join_training_only_at_their_own_scale(kitti_root):
    """data.extra: KITTI's training frames then every frame of the named CamVid splits, each resized by its own
    dataset's scale before the shared crop; validation stays KITTI's."""
    d = DataConfig(root=str(kitti_root), scale=0.125, crop=[64, 96], hflip=False,
                   extra=[{"dataset": "camvid", "root": str(DATA / "camvid"), "splits": ["val"], "scale": 0.25}])
    seen = []
    tf = TrainTransform(scale=0.125, crop=(64, 96))
    orig = tf.__call__

    def spy(s):
        seen.append((s["name"], s["index"], s["scale"], tuple(s["image"].shape[-2:])))
        return orig(s)

    ds = build_training_set(d, transform=spy)
    assert [len(p) for p, _ in ds.parts] == [211, 101] and len(ds) == 312
    assert ds.categories == ["camvid", "um", "umm", "uu"]
    k, c = ds[0], ds[211]
    assert k["name"] == "um_000000" and c["name"] == ds.parts[1][0].samples[0].name
    assert seen == [("um_000000", 0, 0.125, (375, 1242)), (c["name"], 211, 0.25, (360, 480))]
    # 360x480 at 0.25 = 90x120: the crop takes 64 of the 90 rows; KITTI at 0.125 = 47x155, padded to 64 rows
    assert (c["target"] != 255).float().mean() > 0.5 and (k["target"][47:] == 255).all()
    trained = {s.name for part, _ in ds.parts for s in part.samples}
    val = {s.name for s in build_dataset(d, "val").samples}
    assert len(val) == 30 and not trained & val  # validation stays KITTI's held-out frames
    # without data.extra: the plain training split, transform included
    plain = build_training_set(DataConfig(root=str(kitti_root), crop=[64, 96]), transform=EvalTransform(0.5))
    assert len(plain) == 211 and plain[0]["image"].shape[-2:] == (188, 621)


def test_extra_frames_that_are_validation_frames_are_refused(kitti_root, tmp_path):
    """A KITTI extra gives every frame; those of this run's validation split (by file, or by KITTI name in another
    copy) would leak into training: refused. A folder extra keeps its own mask values, not the main config's."""
    val = build_dataset(DataConfig(root=str(kitti_root)), "val")
    (tmp_path / "copy").symlink_to(kitti_root)
    for root in (kitti_root, tmp_path / "copy"):
        d = DataConfig(root=str(kitti_root), crop=[64, 96], extra=[{"dataset": "kitti", "root": str(root)}])
        with pytest.raises(DataError, match=r"data.extra\[0\]: 30 of its frames are validation frames of this run "
                                            r"\(um_000069, um_000070, um_000071, \.\.\.\)"):
            build_training_set(d, val_ds=val)
    folder = tmp_path / "mine"
    write_png(folder / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_png(folder / "masks" / "a.png", np.full((8, 8), 7, np.uint8))
    d = DataConfig(root=str(kitti_root), crop=[64, 96], road_value="255,0,255",
                   extra=[{"dataset": "folder", "root": str(folder), "road_value": 7}])
    ds = build_training_set(d, val_ds=val)
    assert (ds[len(ds) - 1]["target"][:8, :8] == 1).all()  # its own road value 7, not the main 255,0,255
    d.extra = [{"dataset": "folder", "root": str(folder), "road_value": "7,7"}]
    with pytest.raises(DataError, match=r"data.extra\[0\].road_value: '7,7' is not an id"):
        build_training_set(d, val_ds=val)


def test_folder_dataset_with_colour_and_id(tmp_path):
    img = np.zeros((8, 10, 3), np.uint8)
    write_png(tmp_path / "images" / "a.png", img)
    mask = np.zeros((8, 10, 3), np.uint8)
    mask[4:] = (255, 0, 255)
    mask[0] = (9, 9, 9)
    write_png(tmp_path / "masks" / "a.png", mask)
    ds = FolderDataset(folder_samples(tmp_path, "images", "masks"), road=(255, 0, 255), ignore=(9, 9, 9))
    t = ds[0]["target"]
    assert (t[4:] == 1).all() and (t[0] == 255).all() and (t[1:4] == 0).all()
    write_png(tmp_path / "ids" / "a.png", (np.arange(80).reshape(8, 10) % 3).astype(np.uint8))
    ds2 = FolderDataset(folder_samples(tmp_path, "images", "ids"), road=2)
    assert ds2[0]["target"].sum() == (np.arange(80) % 3 == 2).sum()


def test_pairing_errors_list_the_files(tmp_path):
    root = make_kitti(tmp_path)
    (root / "training" / "gt_image_2" / "um_road_000001.png").unlink()
    write_png(root / "training" / "gt_image_2" / "uu_road_000009.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"frames without mask: um_000001.png; masks without frame: uu_road_000009.png"):
        kitti_samples(root)


def test_mask_size_mismatch_is_reported_before_training(tmp_path):
    root = make_kitti(tmp_path)
    write_png(root / "training" / "gt_image_2" / "uu_road_000000.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DataError, match=r"uu_road_000000.png is 10x10 but .*uu_000000.png is 96x40"):
        build_dataset(DataConfig(root=str(root), val_last_n=0), "all")


def test_corrupt_png_is_found_at_preload(tmp_path):
    root = make_kitti(tmp_path)
    p = root / "training" / "image_2" / "um_000001.png"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=r"um_000001.png: corrupt or truncated"):
        build_dataset(DataConfig(root=str(root), val_last_n=0), "all", preload=True)


def test_training_frames_beyond_the_memory_bound_are_checked_then_decoded_when_drawn(tmp_path, monkeypatch):
    """Training frames are all decoded (checked) before training; only KEEP_TRAINING_BYTES of them stay in memory
    (main data and data.extra together), the rest are decoded again when drawn, with the same pixels."""
    import roadseg.data.datasets as datasets

    root = make_kitti(tmp_path / "k", names=("um_000000", "um_000001", "um_000002", "uu_000000"))
    extra = make_kitti(tmp_path / "x", names=("umm_000000", "umm_000001"), seed=1)
    d = DataConfig(root=str(root), val_last_n=0, crop=[40, 96], extra=[{"dataset": "kitti", "root": str(extra)}])
    full = build_training_set(d)
    frame = 40 * 96 * 3 + 40 * 96  # one decoded frame and its target (uint8)
    monkeypatch.setattr(datasets, "KEEP_TRAINING_BYTES", 5 * frame)
    bounded = build_training_set(d)
    assert [p.kept_frames for p, _ in bounded.parts] == [4, 1]  # five kept: four of the main data, one extra
    assert [p.kept_frames for p, _ in full.parts] == [4, 2]
    for i in range(len(full)):
        a, b = full[i], bounded[i]
        assert a["name"] == b["name"] and torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    bad = extra / "training" / "image_2" / "umm_000001.png"  # beyond the bound, still found before training
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"umm_000001.png: corrupt or truncated"):
        build_training_set(d)


def test_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="not a KITTI data_road folder"):
        kitti_samples(tmp_path)


def test_train_transform_is_joint_nearest_and_deterministic():
    img = torch.arange(3 * 20 * 30, dtype=torch.float32).view(3, 20, 30) % 255
    tgt = torch.zeros(20, 30, dtype=torch.uint8)
    tgt[:, 15:] = 1
    tgt[0] = 255
    tf = TrainTransform(scale=1.0, crop=(16, 16), scale_jitter=(0.7, 1.5), hflip=True, color_jitter=0.3, seed=3)
    a = tf({"image": img.clone(), "target": tgt.clone(), "index": 4})
    b = tf({"image": img.clone(), "target": tgt.clone(), "index": 4})
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    assert a["image"].shape == (3, 16, 16) and a["target"].shape == (16, 16)
    assert set(torch.unique(a["target"]).tolist()) <= {0, 1, 255}  # nearest: no blended label values
    tf.set_epoch(1)
    c = tf({"image": img.clone(), "target": tgt.clone(), "index": 4})
    assert not torch.equal(a["image"], c["image"])


def test_eval_transform_keeps_full_resolution_target():
    s = EvalTransform(0.5)({"image": torch.zeros(3, 40, 60, dtype=torch.uint8), "target": torch.zeros(40, 60)})
    assert s["image"].shape == (3, 20, 30) and s["target"].shape == (40, 60)


def test_validation_config_flags_a_model_trained_on_every_frame():
    from roadseg.benchmark import markdown
    from roadseg.config import from_dict
    from roadseg.data.datasets import validation_config

    trained_on_all = from_dict({"data": {"val_last_n": 0}}).data
    d, seen = validation_config(trained_on_all)
    assert seen and d.val_last_n == 10 and trained_on_all.val_last_n == 0  # the caller's config is untouched
    assert validation_config(from_dict({"data": {"val_last_n": 10}}).data) == (from_dict({}).data, False)
    assert not validation_config(from_dict({"data": {"dataset": "camvid", "val_last_n": 0}}).data)[1]

    row = {"model": "m", "scale": 1.0, "backend": "torch", "precision": "fp32", "p50_ms": 10.0, "p90_ms": 11.0,
           "net_ms": 8.0, "macs": 8e9, "peak_rss_mb": 100.0, "model_mb": 7.0, "MaxF": 0.9612, "AP": 0.9, "IoU": 0.9}
    meta = {"date": "d", "cpu": "c", "cores": 2, "cpu_flags": "avx2", "torch": "t", "onnxruntime": "o",
            "val_frames": 30, "peak_gmacs": {"fp32": 100.0}}
    assert "\u2020" not in markdown([row], meta)
    table = markdown([{**row, "seen": True}], meta)
    assert "| 96.12 \u2020 |" in table and "not a validation number" in table
