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
