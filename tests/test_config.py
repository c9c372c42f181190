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
    ({"train": {"optimizer": "adamx"}}, r"'train.optimizer': 'adamx' is not one of adam, adamw, sgd \(did you mean 'adam'\?\)"),
    ({"data": {"crop": [10, 20]}}, r"'data.crop'"),
    ({"data": {"hflip": "yes"}}, r"'data.hflip': expected true/false"),
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
