"""train.pixel_weight bev_area: cells per pixel on calibrations counted on paper, the weighted loss against hand sums
(pooled across ranks as one process), weights that follow the mask through scale, crop and flip, uniform weights for
a frame without a calibration file, and short real training runs (one process, and two under torchrun)."""

import logging
import math

import numpy as np
import pytest
import torch

from roadseg.data import bev
from roadseg.data.datasets import IGNORE, use_bev_weights
from roadseg.data.transforms import TrainTransform
from roadseg.engine import train as train_mod
from roadseg.engine.train import distill_loss, fit, loss_fn
from roadseg.errors import ConfigError, DataError
from roadseg.models.checkpoint import load_checkpoint
from test_bev import kitti_copy, write_calib


def counts(tmp_path, p2, tr, hw):
    h33 = bev.homography(bev.read_calibration(write_calib(tmp_path / "c.txt", p2, np.eye(3), tr)))
    lk = bev.lookup(h33, hw)
    c = bev.cells_per_pixel(lk, hw)
    assert c.shape == hw and c.sum() == lk.rows.size  # every cell that sees the image lands on one pixel
    return c


def test_cells_per_pixel_of_a_camera_looking_straight_down(tmp_path):
    """10 m above the road, f = 100, looking down: u = 10 x + 101, v = 10 (47 - z) + 1 (1-based), so a pixel is
    0.1 m x 0.1 m of road, 2 x 2 cells. Rows 0-9 see z in (46, 47], beyond the grid; columns 200-219 see x > 10; and
    the last row only v = 100 exactly (the devkit's [1, H] bound with truncation), which no cell centre hits."""
    p2 = [[100, 0, 101, 0], [0, 100, 1, 0], [0, 0, 1, 0]]
    tr = [[1, 0, 0, 0], [0, 0, 1, -10], [0, -1, 0, 47]]  # road x = cam x, road y = cam z - 10, road z = 47 - cam y
    c = counts(tmp_path, p2, tr, (100, 220))
    assert (c[10:99, :200] == 4).all()
    assert c[:10].sum() == 0 and c[:, 200:].sum() == 0 and c[99].sum() == 0
    assert c.sum() == 89 * 200 * 4  # z from 37.125 to 45.975 (178 cell rows) x 400 cell columns


def test_cells_per_pixel_in_perspective(tmp_path):
    """test_bev's paper camera (f = 100, principal point (200, 50), 2 m above a flat road): a cell at (x, z) lands
    at u = 100 x / z + 200, v = 200 / z + 50, on pixel (trunc(v) - 1, trunc(u) - 1).
    Pixel (78, 199): v in [79, 80) -> z in (6.667, 6.897]: 5 cell rows (6.675 ... 6.875); u in [200, 201) -> x in
    [0, z / 100), under 0.069: x = 0.025 only. 5 cells. Pixel (78, 200): x in [z / 100, 2 z / 100): 0.075 and 0.125
    in each of the 5 rows: 10 cells. Pixel (53, 199), the far end: z in (40, 50] -> 40.025 ... 45.975 (120 rows);
    x in [0, z / 100): 8 cells (0.025 ... 0.375) for the 50 rows below 42.5 m, 9 for the 70 beyond: 1030 cells."""
    c = counts(tmp_path, [[100, 0, 200, 0], [0, 100, 50, 0], [0, 0, 1, 0]],
               [[1, 0, 0, 0], [0, 1, 0, -2], [0, 0, 1, 0]], (80, 400))
    assert c[78, 199] == 5 and c[78, 200] == 10 and c[53, 199] == 50 * 8 + 70 * 9
    assert c[:53].sum() == 0  # v >= 50 + 200 / 46 = 54.3: nothing above row 53 (the horizon is at v = 50)


def test_weighted_loss_against_a_hand_computation():
    """Pixels: road with p(road) = 3/4 (cross-entropy ln 4/3) weight 3, not road at p = 1/2 (ln 2) weight 1, an
    ignored pixel of weight 5: (3 ln 4/3 + ln 2) / 4. Uniform weights give the plain mean."""
    logits = torch.tensor([[[[0.0, 0.0, 9.0]], [[math.log(3), 0.0, -9.0]]]])
    target = torch.tensor([[[1, 0, IGNORE]]])
    w = torch.tensor([[[3.0, 1.0, 5.0]]])
    want = (3 * math.log(4 / 3) + math.log(2)) / 4
    assert loss_fn(logits, target, w).item() == pytest.approx(want, abs=1e-6)
    assert loss_fn(logits, target, torch.ones(1, 1, 3)).item() == pytest.approx(loss_fn(logits, target).item(), abs=1e-7)
    assert loss_fn(logits, torch.full((1, 1, 3), IGNORE), w).item() == 0.0  # no evaluated pixel: 0, not NaN
    big = 50.0  # a sure teacher (road, not road): the student's distillation loss is its cross-entropy, weighted alike
    sure = torch.tensor([[[[-big, big, 0.0]], [[big, -big, 0.0]]]])
    assert distill_loss(logits, sure, target, w).item() == pytest.approx(want, abs=1e-6)


def test_weighted_loss_pools_over_ranks_as_one_process(monkeypatch):
    """Under DDP each rank's loss is its weighted sum x world / the all-reduced weight; DDP averages the ranks'
    gradients, so the mean of the ranks' losses (and gradients) is the whole batch's weighted mean."""
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 3, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 3, 4))
    target[0, 0] = IGNORE
    w = torch.rand(2, 3, 4) * 10 + 1
    whole = loss_fn(logits, target, w)
    (g_whole,) = torch.autograd.grad(whole, logits)
    valid = target != IGNORE
    other = {0: w[1][valid[1]].sum(), 1: w[0][valid[0]].sum()}  # what the other rank adds to the all-reduce
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(train_mod.dist, "world", lambda r=r: (r, 2))
        monkeypatch.setattr(train_mod.dist, "all_reduce_sum", lambda t, r=r: t + other[r].to(t.dtype))
        parts.append(loss_fn(logits[r : r + 1], target[r : r + 1], w[r : r + 1]))
    mean = (parts[0] + parts[1]) / 2
    (g_mean,) = torch.autograd.grad(mean, logits)
    assert mean.item() == pytest.approx(whole.item(), rel=1e-6)
    assert torch.allclose(g_mean, g_whole, atol=1e-7)


def sample(index, seed=3):
    """A 40 x 60 frame whose red channel is its weight map (1 + 4 x column: grows left to right), road where the
    weight exceeds 100, the top rows ignored."""
    wt = (1 + 4 * torch.arange(60.0))[None].repeat(40, 1)
    img = torch.randint(0, 255, (3, 40, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    img[0] = wt.to(torch.uint8)
    tgt = (wt > 100).to(torch.uint8)
    tgt[:5] = IGNORE
    return {"image": img, "target": tgt, "weight": wt, "index": index}


def test_weights_follow_scale_crop_and_flip():
    exact = TrainTransform(crop=(32, 48), hflip=True, seed=1)  # no rescaling: every step is exact
    rescale = TrainTransform(crop=(48, 64), scale_jitter=(0.7, 1.3), hflip=True, seed=1)  # with padding
    flips = set()
    for i in range(8):
        out = exact(sample(i))
        assert out["weight"].shape == out["target"].shape == (32, 48)
        assert torch.equal(out["weight"], out["image"][0])
        valid = out["target"] != IGNORE
        assert torch.equal((out["weight"] > 100)[valid], out["target"][valid].bool())
        flips.add(bool(out["weight"][0, 0] > out["weight"][0, -1]))
        out = rescale(sample(i))
        assert out["weight"].shape == (48, 64)
        assert torch.allclose(out["weight"], out["image"][0], atol=1e-4)  # the same resize, padding, crop and flip
        plain = sample(i)
        del plain["weight"]
        # the weights change no random draw (the same scale, crop and flip; allclose: resizing 4 channels instead of
        # 3 may round differently in the last bit, as it did in a full-suite run)
        assert torch.allclose(rescale(plain)["image"], out["image"], atol=1e-3)
    assert flips == {True, False}


def test_top_crop_cuts_the_same_rows_of_image_target_and_weights():
    """data.top_crop: int(H * top_crop) rows off the top of image, target and weights, before anything else (12 of
    40 rows at 0.3); the rest of the frame is untouched (no scale, crop or flip here)."""
    tf = TrainTransform(hflip=False, top_crop=0.3)
    s = sample(0)
    want_img, want_tgt, want_wt = s["image"][:, 12:].float(), s["target"][12:], s["weight"][12:]
    out = tf(s)
    assert out["image"].shape == (3, 28, 60) and torch.equal(out["image"], want_img)
    assert torch.equal(out["target"], want_tgt) and torch.equal(out["weight"], want_wt)


def test_far_zoom_samples_are_the_far_band_at_twice_the_scale():
    """data.far_zoom: with probability p a sample is rows [int(0.3 * 40), int(0.7 * 40)) = [12, 28) of the frame, the
    rows inference's far zoom runs again, at twice the scale: 32 x 120, image, target and weights resized alike,
    a crop window at the band's foot; otherwise the frame below the top crop as before."""
    from roadseg.config import from_dict
    from roadseg.data.transforms import far_band_rows, resize_image, resize_mask

    assert far_band_rows(40, 0.3) == (12, 28) and far_band_rows(375, 0.318) == (119, 262)
    assert far_band_rows(10, 0.75) == (7, 8)  # a band of at least one row
    s = sample(0)
    band = torch.cat([s["image"].float(), s["weight"][None]])[:, 12:28]
    want, want_tgt = resize_image(band, (32, 120)), resize_mask(s["target"][12:28], (32, 120))
    out = TrainTransform(hflip=False, top_crop=0.3, far_zoom=1.0)(sample(0))
    assert out["image"].shape == (3, 32, 120) and torch.equal(out["target"], want_tgt)
    assert torch.allclose(out["image"], want[:3]) and torch.allclose(out["weight"], want[3])
    # a crop window of a far band sits at its foot (the far road), of a whole frame anywhere
    footed = TrainTransform(crop=(20, 120), hflip=False, top_crop=0.3, far_zoom=1.0)(sample(0))
    assert torch.equal(footed["target"], want_tgt[-20:]) and torch.allclose(footed["weight"], want[3, -20:])
    mixed = TrainTransform(hflip=False, top_crop=0.3, far_zoom=0.5)
    shapes = [tuple(mixed(sample(i))["target"].shape) for i in range(40)]
    assert set(shapes) == {(32, 120), (28, 60)} and 10 <= shapes.count((32, 120)) <= 30
    with pytest.raises(ConfigError, match=r"far_zoom': 1.5 is out of range \[0.0, 1.0\]"):
        from_dict({"data": {"far_zoom": 1.5}})


def test_a_frame_without_calibration_weighs_one_everywhere(kitti_root, tmp_path, caplog):
    from roadseg.config import from_dict
    from roadseg.data import build_dataset

    (tmp_path / "t.txt").write_text("um_000000\numm_000050\n")  # umm_000050 has no calibration file
    cfg = from_dict({"data": {"root": str(kitti_root), "train_list": str(tmp_path / "t.txt")}})
    ds = build_dataset(cfg.data, "train")
    with caplog.at_level(logging.INFO):
        assert use_bev_weights(ds, 32) == ["umm_000050"]
    assert "1 of 2 training frames have no calibration file and weigh 1 everywhere (umm_000050)" in caplog.text
    calibrated, uncalibrated = ds[0], ds[1]
    assert uncalibrated["weight"].shape == uncalibrated["target"].shape and (uncalibrated["weight"] == 1).all()
    h, w = calibrated["target"].shape
    want = np.clip(bev.cells_per_pixel(bev.frame_lookup(ds.samples[0].image, (h, w)), (h, w)), 1, 32)
    assert np.array_equal(calibrated["weight"].numpy(), want) and want.max() == 32 and want.min() == 1
    with pytest.raises(ConfigError, match="bev_area .* needs data.dataset: kitti"):
        from_dict({"data": {"dataset": "camvid"}, "train": {"pixel_weight": "bev_area"}})
    with pytest.raises(ConfigError, match=r"pixel_weight_max': 300 is out of range \[1, 255\]"):
        from_dict({"train": {"pixel_weight_max": 300}})


def test_a_malformed_calibration_file_stops_with_its_name(tmp_path):
    from roadseg.data import KittiRoad, kitti_samples

    root = kitti_copy(tmp_path / "k", ["um_000010"])
    (root / "training" / "calib" / "um_000010.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(DataError, match=r"um_000010.txt: P2 has 3 values, not 12"):
        KittiRoad(kitti_samples(root)).use_bev_weights(32)


def test_training_steps_with_bev_weights(kitti_root, tmp_path, caplog):
    """One real step on a calibrated and an uncalibrated frame: it runs, says how many frames weigh 1, keeps the
    option in the run's config, and moves the weights otherwise than the same step unweighted (the first loss is
    ln 2 either way: the score layers start at zero)."""
    from test_train import tiny_cfg

    (tmp_path / "mine.txt").write_text("um_000000\numm_000050\n")
    runs = {}
    for option in ("none", "bev_area"):
        cfg = tiny_cfg(kitti_root, tmp_path, name=option, epochs=1, max_steps=1, pixel_weight=option)
        cfg.data.train_list = str(tmp_path / "mine.txt")
        with caplog.at_level(logging.INFO):
            ck = load_checkpoint(fit(cfg) / "last.pt")
        assert ck["step"] == 1 and ck["config"]["train"]["pixel_weight"] == option
        assert math.isfinite(ck["history"][0]["loss"])
        runs[option] = ck["model"]
    assert "1 of 2 training frames have no calibration file" in caplog.text
    a, b = runs["none"], runs["bev_area"]
    assert any(not torch.allclose(a[k], b[k], atol=1e-6) for k in a if "score" in k)


def test_ddp_two_processes_match_one_with_bev_weights(kitti_root, tmp_path):
    from test_distributed import torchrun, train_args

    def args(name):
        a = train_args(kitti_root, tmp_path, name, ["train.pixel_weight=bev_area", "train.epochs=1"])
        (tmp_path / "t.txt").write_text("um_000000\numm_000050\numm_000005\nuu_000007\n")  # umm_000050: uniform
        return a

    one = torchrun(1, *args("one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(2, *args("two"))
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["step"] == b["step"] == 2 and b["world"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
