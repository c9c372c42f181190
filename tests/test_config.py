import pytest

from roadseg.config import from_dict, load_config
from roadseg.errors import ConfigError


def test_defaults_and_overrides():
    cfg = from_dict({"train": {"epochs": 3}}, ["train.lr=3e-4", "data.crop=[64, 128]"])
    assert cfg.train.epochs == 3 and cfg.train.lr == pytest.approx(3e-4) and cfg.data.crop == [64, 128]
    assert cfg.model.fc_width == 4096


@pytest.mark.parametrize("data,match", [
    ({"train": {"epoch": 3}}, r"unknown config key 'train.epoch' \(did you mean 'epochs'\?\)"),
    ({"trian": {}}, r"unknown config key 'trian' \(did you mean 'train'\?\)"),
    ({"train": {"epochs": "many"}}, r"'train.epochs': expected an integer"),
    ({"train": {"lr": -1.0}}, r"'train.lr': -1.0 is out of range"),
    ({"data": {"top_crop": 0.95}}, r"'data.top_crop': 0.95 is out of range"),
    ({"train": {"optimizer": "adamx"}}, r"'train.optimizer': 'adamx' is not one of adam, adamw, sgd \(did you mean 'adam'\?\)"),
    ({"data": {"crop": [10, 20]}}, r"'data.crop'"),
    ({"data": {"hflip": "yes"}}, r"'data.hflip': expected true/false"),
    ({"data": {"extra": {"dataset": "camvid"}}}, r"'data.extra': expected a list"),
    ({"data": {"extra": ["camvid"]}}, r"'data.extra\[0\]': expected a mapping"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid"}]}}, r"'data.extra\[0\]': needs dataset .* and root"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "cam", "root": "x"}]}}, r"'data.extra\[0\]': needs dataset"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x", "scal": 1}]}}, r"unknown key 'scal'"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x", "splits": "train"}]}},
     r"'data.extra\[0\]'.splits: a list of distinct train / val / test"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x", "splits": ["train", "train"]}]}},
     r"a list of distinct"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x", "splits": ["all"]}]}}, r"a list of distinct"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "kitti", "root": "x", "splits": ["val"]}]}},
     r"splits: applies to camvid; a kitti extra gives every frame"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "kitti", "root": "x", "road_value": "1"}]}},
     r"road_value: applies to folder datasets, not kitti"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "folder", "root": "x", "image_dir": 5.5}]}},
     r"image_dir: a string"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x"}, {"dataset": "camvid", "root": "x/"}]}},
     r"'data.extra\[1\]': the same frames are listed twice"),
    ({"data": {"crop": [64, 64], "extra": [{"dataset": "camvid", "root": "x", "scale": 0}]}}, r"scale: a number"),
    ({"train": {"distill": 0.5}}, r"'train.distill': weighs a teacher's soft targets; set train.teacher too"),
    ({"train": {"teacher": "kitti-lite0", "distill": 0.0}}, r"'train.distill': 0.0 is out of range \(0, 1\]"),
    ({"data": {"extra": [{"dataset": "camvid", "root": "x"}]}}, r"'data.extra': .*set data.crop"),
])
def test_bad_config_names_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(data)


def test_shipped_configs_load():
    from pathlib import Path

    for p in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(p)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_paths_resolve_against_the_file_that_names_them(tmp_path, monkeypatch):
    from pathlib import Path

    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "conf" / "c.yaml").write_text("data: {root: ../data/kitti, val_list: lists/val.txt, crop: [64, 64],\n"
                                             "       extra: [{dataset: camvid, root: ../data/camvid}]}\n"
                                             "train: {init: kitti-lite0, out_dir: runs}\nmodel: {weights: hed}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(Path("../conf/c.yaml"), ["train.name=x", "data.train_list=t.txt"])
    assert cfg.data.root == str(tmp_path / "data" / "kitti")  # the file's folder, not the working directory
    assert cfg.data.val_list == str(tmp_path / "conf" / "lists" / "val.txt")
    assert cfg.data.extra[0]["root"] == str(tmp_path / "data" / "camvid")  # data.extra roots too
    assert cfg.train.out_dir == str(tmp_path / "conf" / "runs")
    assert cfg.data.train_list == str(tmp_path / "elsewhere" / "t.txt")  # a command-line path: the working directory
    assert cfg.train.init == "kitti-lite0" and cfg.model.weights == "hed"  # names, not paths
    # every shipped config names the shared data beside the checkout, wherever it is loaded from
    root = Path(__file__).resolve().parents[1]
    for p in (root / "configs").glob("*.yaml"):
        assert Path(load_config(p).data.root).parent == root.parent / "shared" / "data", p


def test_checkpoint_paths_are_relative_to_the_checkpoint(tmp_path, monkeypatch):
    import shutil

    import torch

    from roadseg.models.checkpoint import FORMAT, atomic_save, load_checkpoint

    (tmp_path / "a" / "data").mkdir(parents=True)
    ck = {"format": FORMAT, "model": {"w": torch.zeros(1)},
          "config": {"data": {"root": str(tmp_path / "a" / "data")}, "train": {"init": "kitti-lite0"}}}
    atomic_save(ck, tmp_path / "a" / "models" / "m.pt")
    assert torch.load(tmp_path / "a" / "models" / "m.pt")["config"]["data"]["root"] == "../data"  # as stored
    shutil.move(tmp_path / "a", tmp_path / "b")  # the file moves with its data
    monkeypatch.chdir(tmp_path)
    loaded = load_checkpoint(tmp_path / "b" / "models" / "m.pt")
    assert loaded["config"]["data"]["root"] == str(tmp_path / "b" / "data")
    assert loaded["config"]["train"]["init"] == "kitti-lite0"
    # a file written before paths were stored relative to it: relative to the working directory, as it meant
    torch.save({**ck, "config": {"data": {"root": "d"}}}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["config"]["data"]["root"] == str(tmp_path / "d")
