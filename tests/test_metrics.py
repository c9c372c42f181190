"""KITTI devkit measures against hand-computed values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from roadseg.metrics import Counts, Evaluator, at_threshold, counts, quantize, scores


def test_design_hand_case():
    # road at 255 and 128, one non-road at 128, one pixel outside the evaluated area
    prob = np.array([[255, 128, 128, 7]], np.uint8)
    tgt = np.array([[1, 1, 0, 255]], np.uint8)
    s = scores(counts(prob, tgt))
    assert s["MaxF"] == pytest.approx(0.8, abs=1e-9)
    assert s["AP"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-9)  # 0.848485
    assert s["threshold"] == 0.0  # the first maximum: everything at or above 0 is road
    assert (s["PRE"], s["REC"], s["FPR"], s["FNR"]) == pytest.approx((2 / 3, 1.0, 1.0, 0.0))
    assert s["IoU"] == pytest.approx(2 / 3)  # at v >= 128 both road pixels and the non-road one are road


def test_ties_take_the_first_maximum():
    # F1 is 2/3 both at k=0 (TP=1, FP=1... ) and at higher thresholds: the lowest threshold wins
    prob = np.array([[100, 200]], np.uint8)
    tgt = np.array([[0, 1]], np.uint8)
    c = counts(prob, tgt)
    # k <= 100: TP 1, FP 1 -> F 2/3 ; 101 <= k <= 200: TP 1, FP 0 -> F 1 ; the max is at k = 101
    s = scores(c)
    assert s["MaxF"] == pytest.approx(1.0)
    assert s["threshold"] == pytest.approx(101 / 255)
    prob2 = np.array([[50, 50, 50, 50]], np.uint8)  # all tied: one threshold band
    tgt2 = np.array([[1, 1, 0, 0]], np.uint8)
    s2 = scores(counts(prob2, tgt2))
    assert s2["MaxF"] == pytest.approx(2 * 0.5 / 1.5) and s2["threshold"] == 0.0


def test_counts_are_the_devkit_cumulative_histograms():
    prob = np.array([0, 10, 10, 255, 128], np.uint8)
    tgt = np.array([1, 1, 0, 0, 1], np.uint8)
    c = counts(prob, tgt)
    assert c.pos == 3 and c.neg == 2
    assert c.fn[0] == 0 and c.fn[1] == 1 and c.fn[11] == 2 and c.fn[129] == 3 and c.fn[255] == 3
    assert c.fp[0] == 2 and c.fp[10] == 2 and c.fp[11] == 1 and c.fp[255] == 1


def test_all_ignored_frame_adds_nothing_and_alone_is_undefined():
    prob = np.full((3, 4), 200, np.uint8)
    ignored = np.full((3, 4), 255, np.uint8)
    c = counts(prob, ignored)
    assert c.pos == 0 and c.neg == 0 and not c.fn.any() and not c.fp.any()
    assert np.isnan(scores(c)["MaxF"])
    real = counts(np.array([[200, 20]], np.uint8), np.array([[1, 0]], np.uint8))
    assert scores(real + c) == scores(real)


def test_pooling_sums_counts_per_category_not_averages():
    ev = Evaluator()
    # frame a: perfect; frame b: all wrong. Pooled MaxF is not the mean of the per-frame MaxFs.
    ev.add("um_000000", "um", np.array([[255, 0]], np.uint8), np.array([[1, 0]], np.uint8))
    ev.add("um_000001", "um", np.array([[0, 0, 0, 255]], np.uint8), np.array([[1, 1, 1, 0]], np.uint8))
    ev.add("uu_000000", "uu", np.array([[255]], np.uint8), np.array([[1]], np.uint8))
    res = ev.results()
    um = res["um"]
    # pooled um: pos 4, neg 2. best k=1..255: TP 1, FP 1 -> P .5 R .25 F 1/3 ; k=0: TP 4, FP 2 -> P 2/3 R 1 F .8
    assert um["MaxF"] == pytest.approx(0.8)
    assert res["uu"]["MaxF"] == pytest.approx(1.0)
    assert res["all"]["pos"] == 5 and res["all"]["neg"] == 2
    assert ev.total().to_array().tolist() == Counts.from_array(ev.total().to_array()).to_array().tolist()


def test_quantize_rounds_to_8_bits():
    assert quantize(np.array([0.0, 0.5, 1.0, 1.2, -0.1])).tolist() == [0, 128, 255, 255, 0]


@settings(max_examples=60, deadline=None)
@given(prob=arrays(np.uint8, (6, 7)), tgt=arrays(np.uint8, (6, 7), elements=st.sampled_from([0, 1, 255])))
def test_scores_stay_in_range(prob, tgt):
    s = scores(counts(prob, tgt))
    if (tgt == 1).any():
        for k in ("MaxF", "AP", "REC", "FNR", "IoU"):
            assert 0.0 <= s[k] <= 1.0
        assert 0.0 <= s["threshold"] <= 1.0
    else:
        assert np.isnan(s["MaxF"])


@settings(max_examples=30, deadline=None)
@given(tgt=arrays(np.uint8, (5, 5), elements=st.sampled_from([0, 1, 255])))
def test_perfect_prediction_scores_one(tgt):
    if not (tgt == 1).any():
        return
    prob = np.where(tgt == 1, 255, 0).astype(np.uint8)
    s = scores(counts(prob, tgt))
    assert s["MaxF"] == pytest.approx(1.0) and s["AP"] == pytest.approx(1.0) and s["IoU"] == 1.0


def test_frame_scores_at_the_category_operating_threshold():
    ev = Evaluator()
    ev.add("um_000000", "um", np.array([[200, 100, 150, 0]], np.uint8), np.array([[1, 1, 0, 0]], np.uint8))
    ev.add("um_000001", "um", np.array([[255, 0]], np.uint8), np.array([[1, 0]], np.uint8))
    ev.add("um_000002", "um", np.array([[0, 0]], np.uint8), np.array([[0, 255]], np.uint8))  # no road, none predicted
    ev.add("um_000003", "um", np.array([[250, 250]], np.uint8), np.array([[0, 0]], np.uint8))  # no road, all predicted
    # pooled road 200, 100, 255; non-road 150, 0, 0, 0, 250, 250. k = 1..100: TP 3, FP 3 -> P 1/2, R 1, F 2/3, the
    # first maximum (k = 0: FP 6, F 1/2; k = 101..150: TP 2, FP 3, F 1/2; higher k lower), so the threshold is 1/255
    res = ev.results()
    assert res["um"]["MaxF"] == pytest.approx(2 / 3) and res["um"]["threshold"] == pytest.approx(1 / 255)
    fs = ev.frame_scores()  # at 1/255: frame 0 TP 2, FP 1 -> F 4/5
    assert fs["um_000000"]["F"] == pytest.approx(0.8) and fs["um_000000"]["threshold"] == pytest.approx(1 / 255)
    # at a given operating threshold 151/255: frame 0 has 200 right, 100 missed, 150 right: F 2/3, precision 1,
    # below its own MaxF (0.8 at k <= 100)
    fs = ev.frame_scores({"um": {"threshold": 151 / 255}})
    assert fs["um_000000"]["F"] == pytest.approx(2 / 3) and fs["um_000000"]["PRE"] == 1.0
    assert fs["um_000000"]["MaxF"] == pytest.approx(0.8)
    assert fs["um_000001"]["F"] == 1.0
    assert np.isnan(fs["um_000002"]["F"]) and np.isnan(fs["um_000002"]["REC"])  # undefined, not "best"
    assert fs["um_000003"]["F"] == 0.0 and fs["um_000003"]["FP"] == 2  # no road, false positives: the worst frame


def test_at_threshold_hand_case():
    c = counts(np.array([[10, 130, 200, 130]], np.uint8), np.array([[1, 1, 0, 0]], np.uint8))
    r = at_threshold(c, 0.5)  # k = 128: predicted road = 130, 200, 130 -> TP 1, FP 2, FN 1
    assert (r["TP"], r["FP"], r["FN"]) == (1, 2, 1)
    assert r["F"] == pytest.approx(2 / 5) and r["PRE"] == pytest.approx(1 / 3) and r["REC"] == 0.5


def test_scores_at_one_threshold_per_category_and_pooled():
    from roadseg.metrics import Evaluator

    ev = Evaluator()
    ev.add("um_000000", "um", np.array([[10, 130, 200, 130]], np.uint8), np.array([[1, 1, 0, 0]], np.uint8))
    ev.add("uu_000000", "uu", np.array([[200, 200, 10]], np.uint8), np.array([[1, 1, 0]], np.uint8))
    r = ev.scores_at(0.5)  # um: TP 1, FP 2, FN 1; uu: TP 2, FP 0, FN 0; all: TP 3, FP 2, FN 1
    assert list(r) == ["um", "uu", "all"]
    assert r["um"]["F"] == pytest.approx(2 / 5) and r["uu"]["F"] == 1.0
    assert (r["all"]["TP"], r["all"]["FP"], r["all"]["FN"]) == (3, 2, 1) and r["all"]["F"] == pytest.approx(6 / 9)
