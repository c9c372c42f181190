"""Bird's-eye view: the devkit's transform2BEV, checked on a calibration one can project on paper, on a real KITTI
calibration against points projected by hand, and against an independent loop-by-loop implementation of the
devkit's lookup written here; malformed calibration files; BEV measures in eval."""

import json
import shutil

import numpy as np
import pytest

from conftest import KITTI
from roadseg.data import bev
from roadseg.errors import DataError

CALIB = KITTI / "training" / "calib"


def write_calib(path, p2, r0, tr):
    def fmt(m):
        return " ".join(f"{float(v):.12e}" for v in np.ravel(m))

    lines = [f"P0: {fmt(np.zeros(12))}", f"P2: {fmt(p2)}", f"R0_rect: {fmt(r0)}", f"Tr_cam_to_road: {fmt(tr)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_calibration_projected_on_paper(tmp_path):
    """f = 100, principal point (200, 50), camera 2 m above a flat road, no rotation: a road point (x, z) is seen at
    u = 100 x / z + 200, v = 200 / z + 50 (1-based pixels). An 80-row image sees the road from z = 6.667 m on."""
    p2 = [[100, 0, 200, 0], [0, 100, 50, 0], [0, 0, 1, 0]]
    tr = [[1, 0, 0, 0], [0, 1, 0, -2], [0, 0, 1, 0]]  # road = camera + (0, -2, 0)
    calib = bev.read_calibration(write_calib(tmp_path / "c.txt", p2, np.eye(3), tr))
    h = bev.homography(calib)
    assert np.allclose(h / h[2, 1], [[100, 200, 0], [0, 50, 200], [0, 1, 0]])
    img = (np.arange(80)[:, None] * 1000 + np.arange(400)[None, :]).astype(np.int64)  # value = row * 1000 + col
    out = bev.lookup(h, img.shape).warp(img, fill=-1)
    assert out.shape == (800, 400)
    # row 0 (z = 45.975), column 0 (x = -9.975): u = 178.30, v = 54.35 -> pixel (53, 177)
    assert out[0, 0] == 53 * 1000 + 177
    # row 786 (z = 6.675), column 200 (x = 0.025): u = 200.37, v = 79.96 -> pixel (78, 199)
    assert out[786, 200] == 78 * 1000 + 199
    assert (out[787:] == -1).all() and (out[:787] >= 0).all()  # nearer than 6.667 m: below the image


def test_a_real_calibration_against_points_projected_by_hand():
    """um_000000's calibration: the road point 0.025 m right of the camera, 20.025 m ahead, by explicit sums."""
    calib = bev.read_calibration(CALIB / "um_000000.txt")
    p2, r0, tr = calib["P2"].tolist(), calib["R0_rect"].tolist(), calib["Tr_cam_to_road"].tolist()
    x, z = float(np.float32(0.025)), float(np.float32(20.025))
    # camera point: inverse of the rigid Tr_cam_to_road (R, t): R^T (p - t), p = (x, 0, z)
    p = [x - tr[0][3], 0.0 - tr[1][3], z - tr[2][3]]
    cam = [sum(tr[k][i] * p[k] for k in range(3)) for i in range(3)]
    rect = [sum(r0[i][k] * cam[k] for k in range(3)) for i in range(3)]
    uvw = [sum(p2[i][k] * rect[k] for k in range(3)) + p2[i][3] for i in range(3)]
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    assert 600 < u < 650 and 190 < v < 240  # ahead of the camera, below the horizon
    img = (np.arange(375)[:, None] * 10_000 + np.arange(1242)[None, :]).astype(np.int64)
    out = bev.lookup(bev.homography(calib), img.shape).warp(img, fill=-1)
    row, col = round((45.975 - 20.025) / 0.05), round((0.025 + 9.975) / 0.05)
    assert out[row, col] == (int(v) - 1) * 10_000 + int(u) - 1


def devkit_like_bev(image, calib_path):
    """The devkit's lookup written out independently: parse by hand, Fortran-order grids, a loop over cells."""
    rows = {}
    for line in open(calib_path):
        key, _, rest = line.partition(":")
        rows[key] = [float(t) for t in rest.split()]
    p2 = np.array(rows["P2"]).reshape(3, 4)
    r0 = np.eye(4)
    r0[:3, :3] = np.array(rows["R0_rect"]).reshape(3, 3)
    tr = np.vstack([np.array(rows["Tr_cam_to_road"]).reshape(3, 4), [0, 0, 0, 1]])
    m = np.dot(np.dot(p2, r0), np.linalg.inv(tr))
    tr33 = m[:, [0, 2, 3]]
    xs = np.arange(-10 + 0.025, 10, 0.05)
    zs = np.arange(46 - 0.025, 6, -0.05)
    xm, zm = np.meshgrid(xs, zs)
    xv = xm.reshape(-1, order="F").astype("f4")
    zv = zm.reshape(-1, order="F").astype("f4")
    uvw = np.dot(tr33, np.vstack([xv, zv, np.ones_like(zv)]))
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    zi, xi = np.mgrid[1:801, 1:401]
    zi, xi = zi.reshape(-1, order="F"), xi.reshape(-1, order="F")
    out = np.zeros((800, 400) + image.shape[2:], image.dtype)
    for k in range(u.size):
        if 1 <= v[k] <= image.shape[0] and 1 <= u[k] <= image.shape[1]:
            out[zi[k] - 1, xi[k] - 1] = image[int(v[k]) - 1, int(u[k]) - 1]
    return out


@pytest.mark.parametrize("name", ["um_000000", "umm_000070", "uu_000075"])
def test_agrees_with_an_independent_implementation_of_the_devkit(name):
    from roadseg.data.io import read_image

    gt = read_image(KITTI / "training" / "gt_image_2" / f"{name.split('_')[0]}_road_{name.split('_')[1]}.png")
    lk = bev.frame_lookup(KITTI / "training" / "image_2" / f"{name}.jpg", gt.shape[:2])
    got = lk.warp(gt)
    assert np.array_equal(got, devkit_like_bev(gt, CALIB / f"{name}.txt"))
    assert (got[..., 2] > 0).sum() > 10_000 and (got[..., 0] == 0).sum() > 10_000  # road, and cells out of view


@pytest.mark.parametrize("text,msg", [
    ("P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_cam_to_road: 1 0 0 0 0 1 0 0 0 0 1 0\n", "P2 has 3 values, not 12"),
    ("P2: " + "1 " * 12 + "\nR0_rect: 1 0 0 0 1 0 0 0 1\n", "no Tr_cam_to_road line"),
    ("P2: " + "x " * 12 + "\n", r"line 1 \(P2\) holds something that is not a number"),
    ("just words\n", "line 1 is not 'KEY: numbers'"),
])
def test_malformed_calibration_is_a_one_line_error_naming_it(tmp_path, text, msg):
    path = tmp_path / "um_000000.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=msg) as e:
        bev.read_calibration(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_distance_bands_split_the_grid_rows_by_metres_ahead():
    """Row r covers z in [46 - 0.05 (r + 1), 46 - 0.05 r]: 10 m is 200 rows, the nearest band the bottom rows."""
    assert bev.distance_bands() == [("6-16 m", slice(600, 800)), ("16-26 m", slice(400, 600)),
                                    ("26-36 m", slice(200, 400)), ("36-46 m", slice(0, 200))]
    assert bev.distance_bands(15) == [("6-21 m", slice(500, 800)), ("21-36 m", slice(200, 500)),
                                      ("36-46 m", slice(0, 200))]  # the last band is what is left
    assert bev.distance_bands(12)[-1] == ("42-46 m", slice(0, 80)) and bev.distance_bands(35)[-1] == ("41-46 m", slice(0, 100))
    for step in (3, 7, 12, 15, 35, 40, 50):  # whatever the width, the bands cover every row once
        rows = [r for _, sl in bev.distance_bands(step) for r in range(sl.start, sl.stop)]
        assert sorted(rows) == list(range(800)), step


def test_distance_scores_count_each_bands_errors_at_one_threshold():
    """Near band: 10 road cells, all found. Far band: 10 road cells, 5 missed (prob 0.2), and 5 non-road cells
    called road (0.8). At 0.5: far F = 2*5 / (2*5 + 5 + 5) = 0.5, precision and recall 0.5, all errors far."""
    from roadseg.engine.evaluate import distance_scores
    from roadseg.metrics import Evaluator

    ev = Evaluator()
    ev.add("f", "6-16 m", np.full((1, 10), 255, np.uint8), np.ones((1, 10), np.uint8), frame=False)
    prob = np.array([[255] * 5 + [51] * 5 + [204] * 5 + [0] * 5], np.uint8)
    target = np.array([[1] * 10 + [0] * 10], np.uint8)
    ev.add("f", "36-46 m", prob, target, frame=False)
    d = distance_scores(ev, ["6-16 m", "16-26 m", "36-46 m"], 0.5)
    assert list(d) == ["6-16 m", "16-26 m", "36-46 m"] and ev.per_frame == {}  # in the order given; no frames kept
    empty = d["16-26 m"]  # no evaluated cell (as after pooling across ranks drops it): undefined, no errors
    assert empty["TP"] == empty["FP"] == empty["FN"] == 0 and empty["error_share"] == 0
    assert all(empty[k] != empty[k] for k in ("F", "PRE", "REC", "MaxF"))
    assert d["6-16 m"]["F"] == 1.0 and d["6-16 m"]["FP"] == d["6-16 m"]["FN"] == 0 and d["6-16 m"]["error_share"] == 0
    far = d["36-46 m"]
    assert (far["TP"], far["FP"], far["FN"]) == (5, 5, 5) and far["F"] == far["PRE"] == far["REC"] == 0.5
    assert far["error_share"] == 1.0 and far["MaxF"] == pytest.approx(2 * 10 / (2 * 10 + 5))  # threshold 0.2: 10 TP, 5 FP
    assert distance_scores(ev, ["6-16 m"], 0.5)["6-16 m"]["error_share"] == 0  # no errors at all: no share


def kitti_copy(root, names, calib=()):
    for sub in ("image_2", "gt_image_2", "calib"):
        (root / "training" / sub).mkdir(parents=True)
    for n in names:
        cat, num = n.split("_")
        shutil.copy(KITTI / "training" / "image_2" / f"{n}.jpg", root / "training" / "image_2")
        shutil.copy(KITTI / "training" / "gt_image_2" / f"{cat}_road_{num}.png", root / "training" / "gt_image_2")
    for n in calib:
        shutil.copy(CALIB / f"{n}.txt", root / "training" / "calib")
    return root


def test_eval_gives_bev_measures_and_names_the_frames_without_calibration(tmp_path, tiny_ckpt, capsys):
    from roadseg.cli import main

    root = kitti_copy(tmp_path / "k", ["um_000010", "umm_000050", "uu_000030"], calib=["um_000010", "uu_000030"])
    args = ["eval", "--data", str(root), "--split", "all", "--model", str(tiny_ckpt), "--backend", "torch",
            "--no-report"]
    assert main([*args, "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "bird's-eye view (2 frames; 1 without a calibration file left out: umm_000050)" in out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    b = m["bev"]
    assert b["frames"] == 2 and b["without_calibration"] == ["umm_000050"] and set(b["results"]) == {"um", "uu", "all"}
    assert 0 < b["results"]["all"]["MaxF"] <= 1 and b["results"]["all"]["MaxF"] != m["results"]["all"]["MaxF"]
    assert "F" in b["at_threshold_used"]["all"]
    from roadseg.metrics import Counts, at_threshold

    # the bands partition the grid: their counts at the BEV MaxF threshold add up to those of all its frames
    d, t = b["by_distance"], b["results"]["all"]["threshold"]
    assert list(d) == ["6-16 m", "16-26 m", "26-36 m", "36-46 m"] and "bird's-eye view by distance ahead" in out
    whole = at_threshold(sum((Counts.from_array(v) for v in b["counts"].values()), Counts()), t)
    for k in ("TP", "FP", "FN"):
        assert sum(r[k] for r in d.values()) == whole[k]
    assert sum(r["error_share"] for r in d.values()) == pytest.approx(1.0)
    assert "36-46 m" in out.split("bird's-eye view by distance ahead")[1]  # the printed table has every band
    assert main([*args, "--out", str(tmp_path / "n"), "--no-bev"]) == 0
    assert "bev" not in json.loads((tmp_path / "n" / "metrics.json").read_text())
    shutil.rmtree(root / "training" / "calib")
    assert main([*args, "--out", str(tmp_path / "f"), "--bev"]) == 2
    assert "no frame has a calibration file" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # auto: no calibration, no BEV
    assert "bev" not in json.loads((tmp_path / "a" / "metrics.json").read_text())


def test_kitti_submission_writes_bev_probability_maps_for_calibrated_frames(tmp_path, tiny_ckpt, capsys):
    from PIL import Image

    from roadseg.cli import main
    from roadseg.data.io import read_image
    from roadseg.inference.predictor import load

    test = KITTI / "testing" / "image_2"
    args = ["predict", str(test), "--model", str(tiny_ckpt), "--backend", "torch"]
    assert main([*args, "--kitti-submission", str(tmp_path / "s")]) == 2  # 29 of the 30 test frames lack one
    err = capsys.readouterr().err
    assert "no calibration file for 29 of the 30 frames (um_000001.png" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()
    assert main([*args, "--kitti-submission", str(tmp_path / "s"), "--skip-bad"]) == 0
    assert sorted(f.name for f in (tmp_path / "s").iterdir()) == ["um_road_000000.png"]
    got = np.asarray(Image.open(tmp_path / "s" / "um_road_000000.png"))
    frame = read_image(test / "um_000000.png")
    want = bev.frame_lookup(test / "um_000000.png", frame.shape[:2]).warp(load(tiny_ckpt, backend="torch")
                                                                           .predict(frame).prob_u8)
    assert got.shape == (800, 400) and got.dtype == np.uint8 and np.array_equal(got, want)
