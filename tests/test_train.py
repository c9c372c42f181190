"""Training: the loss falls on real frames, resume is exact, a NaN loss stops the run and keeps the checkpoint."""

import hashlib
import math

import pytest
import torch

from roadseg.config import from_dict
from roadseg.engine import train as train_mod
from roadseg.engine.train import fit, loss_fn
from roadseg.models.checkpoint import load_checkpoint


def tiny_cfg(root, tmp_path, lists=True, **train):
    tmp_path.mkdir(parents=True, exist_ok=True)
    tr = tmp_path / "train.txt"
    va = tmp_path / "val.txt"
    tr.write_text("um_000000\num_000010\numm_000005\nuu_000007\n")
    va.write_text("uu_000020\n")
    data = {"root": str(root), "scale": 0.125, "crop": [32, 96], "color_jitter": 0.2, "scale_jitter": [0.9, 1.1]}
    if lists:
        data.update(train_list=str(tr), val_list=str(va))
    return from_dict({
        "model": {"fc_width": 16, "dropout": 0.2, "weights": "none"},
        "data": data,
        "train": {"epochs": 2, "batch_size": 2, "lr": 1e-3, "precision": "fp32", "out_dir": str(tmp_path),
                  "threads": 1, **train},
    })


def test_loss_falls_on_two_real_kitti_frames(kitti_root, hed_weights):
    from roadseg.data import build_dataset, collate
    from roadseg.data.transforms import EvalTransform
    from roadseg.models import build_model

    cfg = from_dict({"model": {"fc_width": 64, "dropout": 0.0, "weights": str(hed_weights)},
                     "data": {"root": str(kitti_root), "val_last_n": 0}})
    ds = build_dataset(cfg.data, "all", transform=EvalTransform(0.25))
    idx = [i for i, s in enumerate(ds.samples) if s.name in ("um_000000", "uu_000010")]
    batch = collate([ds[i] for i in idx])
    from roadseg.data.transforms import resize_mask

    h, w = batch["image"].shape[-2:]
    y = torch.stack([resize_mask(ds[i]["target"], (h, w)) for i in idx])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    model.freeze_blocks(3)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    losses = []
    for _ in range(8):
        loss = loss_fn(model(batch["image"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_fit_writes_run_dir_and_resume_is_exact(kitti_root, tmp_path):
    cfg = tiny_cfg(kitti_root, tmp_path / "a", name="straight")
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file")
    (tmp_path / "a" / "straight").mkdir(parents=True)
    for name in ("config.yaml", "environment.json"):  # planted links are replaced, never written through
        (tmp_path / "a" / "straight" / name).symlink_to(victim)
    run_a = fit(cfg)
    assert victim.read_text() == "the user's own file" and not (run_a / "config.yaml").is_symlink()
    for f in ("last.pt", "best.pt", "metrics.csv", "loss.png", "config.yaml", "environment.json"):
        assert (run_a / f).is_file(), f
    rows = (run_a / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_MaxF" in rows[0]
    assert "val_bev_MaxF" in rows[0] and (run_a / "bev_maxf.png").is_file()  # uu_000020 has a calibration file
    # the same run, stopped after epoch 1 by its time budget, then resumed
    cfg_b = tiny_cfg(kitti_root, tmp_path / "b", name="resumed", time_budget_min=1e-6)
    run_b = fit(cfg_b)
    assert load_checkpoint(run_b / "last.pt")["epoch"] == 1
    fit(tiny_cfg(kitti_root, tmp_path / "b", name="resumed"), resume=run_b / "last.pt")
    a, b = load_checkpoint(run_a / "last.pt"), load_checkpoint(run_b / "last.pt")
    assert b["epoch"] == 2 and a["step"] == b["step"]
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


def test_weight_average_known_values():
    from roadseg.engine.train import ema_decay, update_ema

    assert ema_decay(1, 0.99) == pytest.approx(2 / 11) and ema_decay(90, 0.99) == pytest.approx(0.91)
    assert ema_decay(10_000, 0.99) == 0.99
    ema, model = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        ema.weight.copy_(torch.tensor([1.0, -2.0]))
        model.weight.copy_(torch.tensor([3.0, 2.0]))
        model.running_mean.copy_(torch.tensor([4.0, 8.0]))
    model.num_batches_tracked += 7
    update_ema(ema, model, 0.75)
    assert torch.equal(ema.weight, torch.tensor([1.5, -1.0]))  # 0.75 * old + 0.25 * new
    assert torch.equal(ema.running_mean, torch.tensor([1.0, 2.0]))  # floating buffers averaged too
    assert ema.num_batches_tracked == 7  # counters copied


def test_weight_average_is_validated_saved_and_resumed_exactly(kitti_root, tmp_path):
    """train.ema: last.pt's "model" is the average (what validation scored, what eval and release read), the trained
    weights ride beside it, and a run stopped and resumed ends with both exactly as one straight run."""
    from roadseg.data import build_dataset
    from roadseg.engine.evaluate import evaluate
    from roadseg.errors import ConfigError
    from roadseg.inference.predictor import Predictor
    from roadseg.models.checkpoint import model_from_checkpoint

    run_a = fit(tiny_cfg(kitti_root, tmp_path / "a", name="straight", ema=0.9))
    cfg_b = tiny_cfg(kitti_root, tmp_path / "b", name="resumed", ema=0.9, time_budget_min=1e-6)
    run_b = fit(cfg_b)
    with pytest.raises(ConfigError, match="train.ema"):
        fit(tiny_cfg(kitti_root, tmp_path / "b", name="resumed"), resume=run_b / "last.pt")
    fit(tiny_cfg(kitti_root, tmp_path / "b", name="resumed", ema=0.9), resume=run_b / "last.pt")
    a, b = load_checkpoint(run_a / "last.pt"), load_checkpoint(run_b / "last.pt")
    for key in ("model", "train_model"):
        for k in a[key]:
            assert torch.allclose(a[key][k], b[key][k], atol=1e-6), (key, k)
    assert any(not torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"] if "fc6" in k)
    cfg = tiny_cfg(kitti_root, tmp_path / "a", name="straight", ema=0.9)
    val = build_dataset(cfg.data, "val")
    score = evaluate(Predictor.for_module(model_from_checkpoint(a)[0], cfg), val).results()["all"]["MaxF"]
    assert score == pytest.approx(a["history"][-1]["val_MaxF"], abs=1e-9)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(kitti_root, tmp_path, monkeypatch):
    cfg = tiny_cfg(kitti_root, tmp_path, name="nan", epochs=1)
    run = fit(cfg)
    before = hashlib.sha256((run / "last.pt").read_bytes()).hexdigest()
    monkeypatch.setattr(train_mod, "loss_fn", lambda logits, y, w=None: (logits * float("nan")).mean())
    with pytest.raises(train_mod.TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint kept"):
        fit(tiny_cfg(kitti_root, tmp_path, name="nan", epochs=2), resume=run / "last.pt")
    assert hashlib.sha256((run / "last.pt").read_bytes()).hexdigest() == before


def test_lr_schedule_shapes():
    assert train_mod.lr_factor(0, 100, 10, "poly") == pytest.approx(0.1)
    assert train_mod.lr_factor(10, 100, 10, "poly") == pytest.approx(1.0)
    assert train_mod.lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    assert train_mod.lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)


def test_loss_ignores_255_and_is_zero_without_labels():
    logits = torch.zeros(1, 2, 2, 2)
    assert loss_fn(logits, torch.full((1, 2, 2), 255)).item() == 0.0
    y = torch.tensor([[[1, 255], [255, 255]]])
    assert loss_fn(logits, y).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_dice_loss_known_values():
    from roadseg.engine.train import dice_loss

    big = 50.0
    target = torch.tensor([[[1, 0, 255]]])
    perfect = torch.tensor([[[[-big, big, big]], [[big, -big, -big]]]])  # road exactly where labelled; ignored pixel says road
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = -perfect  # road where not labelled: intersection 0, so 1 - 1/(1 + 1 + 1)
    assert dice_loss(wrong, target).item() == pytest.approx(2 / 3, abs=1e-6)


def test_weighted_dice_loss_known_values():
    from roadseg.engine.train import dice_loss

    big = 50.0
    target = torch.tensor([[[1, 0, 255, 1]]])
    # road predicted at the first pixel only: unweighted 1 - (2 * 1 + 1) / (1 + 2 + 1)
    logits = torch.tensor([[[[-big, big, big, big]], [[big, -big, -big, -big]]]])
    assert dice_loss(logits, target).item() == pytest.approx(1 / 4, abs=1e-6)
    # each pixel counts its weight (the ignored one none): 1 - (2 * 3 + 1) / (3 + (3 + 1) + 1)
    weight = torch.tensor([[[3.0, 2.0, 5.0, 1.0]]])
    assert dice_loss(logits, target, weight).item() == pytest.approx(1 / 8, abs=1e-6)
    assert dice_loss(logits, target, torch.ones_like(weight)).item() == pytest.approx(1 / 4, abs=1e-6)


def test_distill_loss_known_values():
    from roadseg.engine.train import distill_loss

    big = 50.0
    target = torch.tensor([[[1, 0, 255]]])
    sure = torch.tensor([[[[-big, big, -big]], [[big, -big, big]]]])  # the teacher: road, not road, road (ignored)
    # a student with no opinion pays log 2 per pixel; one that agrees pays nothing; the ignored pixel never counts
    assert distill_loss(torch.zeros(1, 2, 1, 3), sure, target).item() == pytest.approx(math.log(2), abs=1e-6)
    assert distill_loss(sure, sure, target).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.zeros(1, 2, 1, 3)  # a teacher at 0.5: the student's cross-entropy to (0.5, 0.5)
    student = torch.tensor([[[[0.0, 0.0, 9.0]], [[math.log(3), 0.0, 0.0]]]])  # p(road) 0.75, 0.5
    want = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2)) / 2
    assert distill_loss(student, half, target).item() == pytest.approx(want, abs=1e-6)


def test_teacher_gives_soft_targets_and_one_that_saw_the_validation_frames_is_refused(kitti_root, tmp_path, caplog):
    from roadseg.errors import ConfigError

    teacher = fit(tiny_cfg(kitti_root, tmp_path / "t", name="teacher", epochs=1)) / "last.pt"
    plain = fit(tiny_cfg(kitti_root, tmp_path / "a", name="plain", epochs=1, init=str(teacher)))
    taught = fit(tiny_cfg(kitti_root, tmp_path / "b", name="taught", epochs=1, init=str(teacher),
                          teacher=str(teacher), distill=1.0))
    a, b = load_checkpoint(plain / "last.pt"), load_checkpoint(taught / "last.pt")
    # from the teacher's own weights with only the teacher as target the loss starts near the teacher's entropy and
    # differs from the labels' loss; the weights move differently
    assert a["history"][0]["loss"] != pytest.approx(b["history"][0]["loss"], rel=1e-3)
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert "train.teacher" not in caplog.text  # same scale: nothing to say
    other = tiny_cfg(kitti_root, tmp_path / "s", name="scaled", epochs=1, max_steps=1, teacher=str(teacher))
    other.data.scale = 0.25  # twice the teacher's 0.125: it is warned about, not refused
    fit(other)
    assert "was trained at network scale 0.125 and sees this run's crops at 0.25 (objects 2x the size" in caplog.text
    # a teacher trained on every frame (val_last_n 0) has seen this run's validation frame uu_000020
    every = tiny_cfg(kitti_root, tmp_path / "e", lists=False, name="every", epochs=1, max_steps=1)
    every.data.val_last_n = 0
    seen = fit(every) / "last.pt"
    with pytest.raises(ConfigError, match=r"train.teacher: .* was trained on 1 of this run's validation frames \(uu_000020\)"):
        fit(tiny_cfg(kitti_root, tmp_path / "c", name="leak", epochs=1, teacher=str(seen)))
    # the same when the teacher's copy of KITTI lives elsewhere (frames are matched by their KITTI names)
    (tmp_path / "copy").symlink_to(kitti_root)
    elsewhere = tiny_cfg(tmp_path / "copy", tmp_path / "f", lists=False, name="elsewhere", epochs=1, max_steps=1)
    elsewhere.data.val_last_n = 0
    seen2 = fit(elsewhere) / "last.pt"
    with pytest.raises(ConfigError, match=r"was trained on 1 of this run's validation frames"):
        fit(tiny_cfg(kitti_root, tmp_path / "g", name="leak2", epochs=1, teacher=str(seen2)))
    lane = tiny_cfg(kitti_root, tmp_path / "h", name="lane", epochs=1, max_steps=1)
    lane.data.task = "lane"
    lane.data.train_list = lane.data.val_list = None
    lane.data.categories, lane.data.val_last_n = ["um"], 2  # 11 lane masks
    lane_ckpt = fit(lane) / "last.pt"
    with pytest.raises(ConfigError, match=r"was trained for task 'lane', this run is 'road'"):
        fit(tiny_cfg(kitti_root, tmp_path / "i", name="roadrun", epochs=1, teacher=str(lane_ckpt)))


def test_resume_refuses_other_frames_or_another_teacher(kitti_root, tmp_path):
    from conftest import DATA
    from roadseg.errors import ConfigError

    cfg = tiny_cfg(kitti_root, tmp_path, name="mixed", epochs=2, time_budget_min=1e-6)
    cfg.data.extra = [{"dataset": "camvid", "root": str(DATA / "camvid"), "splits": ["val"], "scale": 0.2}]
    run = fit(cfg)
    plain = tiny_cfg(kitti_root, tmp_path, name="mixed", epochs=2)
    with pytest.raises(ConfigError, match=r"--resume .*: data.extra was \[\{'dataset': 'camvid'.* in that run, \[\] here"):
        fit(plain, resume=run / "last.pt")
    taught = tiny_cfg(kitti_root, tmp_path, name="mixed", epochs=2, teacher=str(run / "last.pt"))
    taught.data.extra = cfg.data.extra
    with pytest.raises(ConfigError, match=r"train.teacher was None in that run"):
        fit(taught, resume=run / "last.pt")


def test_init_starts_from_a_checkpoints_weights_with_a_fresh_schedule(kitti_root, tmp_path):
    from roadseg.engine.train import init_model
    from roadseg.errors import ConfigError

    run = fit(tiny_cfg(kitti_root, tmp_path / "a", name="first", epochs=1))
    first = load_checkpoint(run / "last.pt")
    cfg = tiny_cfg(kitti_root, tmp_path / "b", name="tuned", epochs=1, init=str(run / "last.pt"),
                   encoder_lr=0.1, loss="ce_dice")
    model = init_model(cfg, cfg.train.init)
    for k, v in model.state_dict().items():
        assert torch.equal(v, first["model"][k].float()), k
    run2 = fit(cfg)
    second = load_checkpoint(run2 / "last.pt")
    assert second["epoch"] == 1 and second["step"] == first["step"]  # a fresh schedule, not a resume
    groups = second["optimizer"]["param_groups"]
    assert sorted(g["initial_lr"] for g in groups) == pytest.approx([1e-4, 1e-3])  # encoder at 0.1 x lr
    other = tiny_cfg(kitti_root, tmp_path / "c", name="wider", init=str(run / "last.pt"))
    other.model.fc_width = 32
    with pytest.raises(ConfigError, match="another model"):
        init_model(other, other.train.init)
    # fc6 1x1 -> 3x3 (model.fc_kernel): the old kernel at the centre of a zero 3x3 one computes the same function
    ctx = tiny_cfg(kitti_root, tmp_path / "d", name="context", init=str(run / "last.pt"))
    ctx.model.fc_kernel = 3
    wide = init_model(ctx, ctx.train.init).eval()
    assert wide.fc6.weight.shape[2:] == (3, 3) and wide.fc6.weight[:, :, [0, 2]].abs().sum() == 0
    from roadseg.models.checkpoint import model_from_checkpoint

    narrow = model_from_checkpoint(first)[0]
    x = torch.rand(1, 3, 96, 160) * 255
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), atol=1e-5)
    # and 3x3 -> 7x7 (the paper's fc6) the same way: the 3x3 kernel in the middle of a zero ring
    from roadseg.engine.train import widen_kernels
    from roadseg.models import build_model

    ctx.model.fc_kernel = 7
    seven = build_model(ctx.model).eval()
    seven.load_state_dict(widen_kernels(wide.state_dict(), seven.state_dict()))
    assert torch.equal(seven.fc6.weight[:, :, 2:5, 2:5], wide.fc6.weight) and seven.fc6.weight[:, :, :2].abs().sum() == 0
    with torch.no_grad():
        assert torch.allclose(seven(x), wide(x), atol=1e-5)


def test_resume_refuses_a_released_model_and_another_architecture(kitti_root, tmp_path):
    from roadseg.errors import ConfigError
    from roadseg.models.checkpoint import release

    run = fit(tiny_cfg(kitti_root, tmp_path / "a", name="first", epochs=1))
    rel = release(run / "last.pt", tmp_path / "rel.pt", calibration=[])
    with pytest.raises(ConfigError, match="released model has no training state.*train.init="):
        fit(tiny_cfg(kitti_root, tmp_path / "b", name="again", epochs=2), resume=rel)
    wider = tiny_cfg(kitti_root, tmp_path / "c", name="wider", epochs=2)
    wider.model.fc_width = 32
    with pytest.raises(ConfigError, match="another model.*model.fc_width: 16 there, 32 here"):
        fit(wider, resume=run / "last.pt")


def test_a_run_directory_is_never_reused_silently(kitti_root, tmp_path):
    from roadseg.errors import ConfigError

    cfg = tiny_cfg(kitti_root, tmp_path, name="once", epochs=1)
    run = fit(cfg)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*train.name=NEW_NAME.*--overwrite"):
        fit(cfg)
    assert (run / "last.pt").read_bytes() == before
    assert fit(cfg, overwrite=True) == run


def test_extra_frames_train_and_the_checkpoint_keeps_where_they_came_from(kitti_root, tmp_path):
    from conftest import DATA

    cfg = tiny_cfg(kitti_root, tmp_path, name="mixed", epochs=1)
    cfg.data.extra = [{"dataset": "camvid", "root": str(DATA / "camvid"), "splits": ["val"], "scale": 0.2}]
    run = fit(cfg)
    ck = load_checkpoint(run / "last.pt")
    assert ck["step"] == (4 + 101) // 2  # the 4 listed KITTI frames and CamVid's 101, batches of 2
    assert ck["config"]["data"]["extra"][0]["root"] == str(DATA / "camvid")  # stored relative, read back absolute
