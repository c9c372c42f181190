"""Reliability: random bytes to the loaders (only DataError comes out), random maps to the metrics."""

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from roadseg.data import read_image, read_mask
from roadseg.errors import DataError
from roadseg.metrics import counts, quantize, scores

HEADERS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00"]
TMP = Path(tempfile.mkdtemp(prefix="roadseg_fuzz_"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.sampled_from(HEADERS), body=st.binary(max_size=600), ext=st.sampled_from([".png", ".jpg", ".bmp"]))
def test_random_bytes_give_an_image_or_a_data_error(header, body, ext):
    path = TMP / f"f{ext}"
    path.write_bytes(header + body)
    for reader in (read_image, read_mask):
        try:
            out = reader(path)
        except DataError as exc:
            assert str(path) in str(exc)
        else:
            assert out.dtype in (np.uint8, np.uint16, np.int32, bool) and out.ndim in (2, 3)


@settings(max_examples=60, deadline=None)
@given(prob=arrays(np.float64, (9, 11), elements=st.floats(0, 1)),
       tgt=arrays(np.uint8, (9, 11), elements=st.sampled_from([0, 1, 255])))
def test_random_probability_maps_keep_measures_in_range(prob, tgt):
    s = scores(counts(quantize(prob), tgt))
    for k in ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU", "threshold"):
        assert np.isnan(s[k]) or 0.0 <= s[k] <= 1.0, (k, s[k])
