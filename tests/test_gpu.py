"""CUDA paths, run with `pytest -m gpu` on a machine with a GPU; never part of the default (CI) selection."""

import numpy as np
import pytest
import torch

from conftest import KITTI
from roadseg.data import read_image
from roadseg.inference.predictor import load

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_predictor_matches_cpu(tiny_ckpt, precision):
    img = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    ref = load(tiny_ckpt, backend="torch").predict(img).prob
    got = load(tiny_ckpt, device="cuda", precision=precision, backend="torch").predict(img).prob
    assert np.abs(ref - got).max() < (1e-3 if precision == "fp32" else 3e-2)


@pytest.mark.parametrize("precision, agree", [("fp32", 0.999), ("fp16", 0.998), ("int8", 0.99)])
def test_tensorrt_engine_matches_torch(precision, agree):
    """The shipped default model through a real TensorRT engine against torch fp32 on the CPU: the same road."""
    pytest.importorskip("tensorrt")
    img = read_image(KITTI / "training" / "image_2" / "um_000000.jpg")
    ref = load("kitti-lite0", backend="torch", device="cpu").predict(img)
    got = load("kitti-lite0", backend="tensorrt", precision=precision, device="cuda").predict(img)
    assert got.prob.shape == ref.prob.shape
    assert (got.mask == ref.mask).mean() > agree
    if precision == "fp32":
        assert np.abs(got.prob - ref.prob).max() < 1e-2


def test_backend_auto_picks_tensorrt_on_this_gpu():
    pytest.importorskip("tensorrt")
    pred = load("kitti-lite0")
    assert (pred.backend, pred.precision, pred.settings.device) == ("tensorrt", "fp16", "cuda")
    assert pred.settings.chosen.startswith("backend auto: tensorrt fp16 on cuda")
