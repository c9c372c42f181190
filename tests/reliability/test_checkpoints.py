"""Reliability: weights and checkpoints that must be refused, and never executed."""

import pickle

import pytest
import torch

from roadseg.cli import main
from roadseg.config import from_dict, to_dict
from roadseg.errors import WeightsError
from roadseg.models import build_model
from roadseg.models.checkpoint import atomic_save, load_checkpoint, make_checkpoint, model_from_checkpoint


def test_truncated_checkpoint(tiny_ckpt, tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cut.pt: truncated or corrupt checkpoint"):
        load_checkpoint(cut)
    assert main(["eval", "--checkpoint", str(cut), "--out", str(tmp_path / "e")]) == 2
    assert "cut.pt: truncated or corrupt" in capsys.readouterr().err


def test_checkpoint_of_another_model(tmp_path, tiny_ckpt):
    ck = torch.load(tiny_ckpt, weights_only=True)
    ck["config"]["model"]["fc_width"] = 32  # the weights are fc_width 16
    atomic_save(ck, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="other.pt: checkpoint is from another model.*size mismatch"):
        model_from_checkpoint(tmp_path / "other.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="plain.pt: not a roadseg checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/roadseg_pwned_$PPID",))


def test_pickle_that_would_run_code_is_refused_not_executed(tmp_path):
    import glob
    import os

    marker = f"/tmp/roadseg_pwned_{os.getpid()}"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "roadseg-checkpoint/1", "model": {}, "config": {}, "payload": Evil()}, evil)
    with pytest.raises(WeightsError, match="evil.pt: refused.*weights_only=True, nothing was executed"):
        load_checkpoint(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(WeightsError, match="raw.pt"):
        load_checkpoint(raw)
    assert not os.path.exists(marker) and not glob.glob("/tmp/roadseg_pwned_*")


def test_checkpoint_is_plain_data(tmp_path):
    cfg = from_dict({"model": {"fc_width": 8, "weights": "none"}})
    p = atomic_save(make_checkpoint(build_model(cfg, pretrained=False), to_dict(cfg), epoch=1), tmp_path / "c.pt")
    ck = torch.load(p, weights_only=True)  # loads without any allow-listed class
    assert ck["preprocess"]["name"] == "caffe" and ck["config"]["model"]["fc_width"] == 8


def test_release_stores_fp16_and_rebuilds_close_to_fp32(tiny_ckpt, tmp_path):
    from roadseg.models.checkpoint import release

    out = release(tiny_ckpt, tmp_path / "ship.pt")
    ck = load_checkpoint(out)
    assert ck["stored_dtype"] == "float16" and "optimizer" not in ck
    assert all(v.dtype == torch.float16 for v in ck["model"].values() if v.is_floating_point())
    a, _ = model_from_checkpoint(tiny_ckpt)
    b, _ = model_from_checkpoint(out)
    x = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-2)
