import dataclasses
import json
from pathlib import Path

import pytest

from rnner.config import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    apply_override,
    parse_value,
)

REPO = Path(__file__).parents[1]


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(raw: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(raw)
    return info.value


def test_defaults_are_valid_and_sections_are_dataclasses():
    cfg = Config.from_dict({})
    assert cfg == Config()
    assert isinstance(cfg.data, DataConfig)
    assert isinstance(cfg.model, ModelConfig)
    assert isinstance(cfg.train, TrainConfig)
    assert (cfg.data.scheme, cfg.model.cell, cfg.train.optimizer) == ("BIOES", "lstm", "sgd")


def test_toml_load(tmp_path):
    path = write(
        tmp_path,
        '[data]\nscheme = "IOB2"\nlowercase = false\n'
        '[model]\ncell = "gru"\nhidden_size = 64\ndropout = 0.25\n'
        "[train]\nlr = 1\nepochs = 3\n",
    )
    cfg = Config.load(path)
    assert cfg.data.scheme == "IOB2"
    assert cfg.data.lowercase is False
    assert (cfg.model.cell, cfg.model.hidden_size, cfg.model.dropout) == ("gru", 64, 0.25)
    # An integer where a float is expected becomes a float.
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3
    # Untouched keys keep their defaults.
    assert cfg.model.char_encoder == "cnn"
    assert cfg.train.batch_size == 10


def test_shipped_config_loads():
    cfg = Config.load(REPO / "configs" / "conll03.toml")
    assert cfg.model.embeddings == "glove-6b-50d"
    assert cfg.model.casing_dim == 10
    assert cfg.train.epochs == 50


# docs/results.md measured the accurate config as the default with these overrides.
ACCURATE = [
    'model.char_encoder="lstm"',
    'train.schedule="plateau"',
    'data.context="document"',
    "data.max_context_tokens=2000",
    "train.batch_size=8",
    "model.repeat_pooling=true",
    'model.repeat_key="lowercase"',
    "model.pool_layers=1",
    "model.pretrained_dropout=0.3",
]


def test_accurate_config_is_the_default_with_the_measured_overrides():
    accurate = Config.load(REPO / "configs" / "conll03-accurate.toml")
    assert accurate == Config.load(REPO / "configs" / "conll03.toml", ACCURATE)


@pytest.mark.parametrize(
    ("item", "section", "key", "value"),
    [
        ("model.hidden_size=32", "model", "hidden_size", 32),
        ("model.dropout=0.25", "model", "dropout", 0.25),
        ("train.lr=1e-3", "train", "lr", 0.001),
        ("train.lr=2", "train", "lr", 2.0),
        ("model.bidirectional=false", "model", "bidirectional", False),
        ("data.lowercase=true", "data", "lowercase", True),
        ('model.cell="gru"', "model", "cell", "gru"),
        ("model.cell=gru", "model", "cell", "gru"),  # a bare word is a string
        ("data.train=/tmp/x y.txt", "data", "train", "/tmp/x y.txt"),
        (" train.epochs = 7 ", "train", "epochs", 7),
    ],
)
def test_set_overrides(tmp_path, item, section, key, value):
    path = write(tmp_path, '[model]\ncell = "rnn"\nhidden_size = 8\n')
    cfg = Config.load(path, [item])
    got = getattr(getattr(cfg, section), key)
    assert got == value
    assert type(got) is type(value)


def test_later_override_wins_and_file_values_survive(tmp_path):
    path = write(tmp_path, "[model]\nhidden_size = 8\nlayers = 2\n")
    cfg = Config.load(path, ["model.hidden_size=16", "model.hidden_size=24"])
    assert cfg.model.hidden_size == 24
    assert cfg.model.layers == 2


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("3.5") == 3.5
    assert parse_value("true") is True
    assert parse_value('"a b"') == "a b"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("hello world") == "hello world"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "model.hidden_size",
            "config model.hidden_size: an override must look like section.key=value",
        ),
        ("hidden_size=3", "config hidden_size: an override key must look like section.key"),
        ("a.b.c=3", "config a.b.c: an override key must look like section.key"),
        (
            "modle.hidden_size=3",
            "config modle.hidden_size: unknown section; known sections: data, model, train",
        ),
    ],
)
def test_malformed_overrides(item, message):
    with pytest.raises(ConfigError) as info:
        apply_override({}, item)
    assert str(info.value) == message


def test_unknown_key_names_the_known_keys():
    e = error({"model": {"hiden_size": 3}})
    assert e.key == "model.hiden_size"
    known = sorted(f.name for f in dataclasses.fields(ModelConfig))
    assert "hidden_size" in known and "char_encoder" in known
    assert str(e) == (f"config model.hiden_size: unknown key; known keys here: {', '.join(known)}")


def test_unknown_section_names_the_sections():
    e = error({"modle": {}})
    assert str(e) == "config modle: unknown key; known keys here: data, model, train"


def test_unknown_key_from_set_override(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        Config.load(path, ["train.epoch=3"])
    assert info.value.key == "train.epoch"
    assert "epochs" in info.value.message


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("model.hidden_size", "big", "expected int, found str 'big'"),
        ("model.hidden_size", 1.5, "expected int, found float 1.5"),
        ("model.hidden_size", True, "expected int, found bool True"),
        ("model.dropout", "0.5", "expected float, found str '0.5'"),
        ("model.bidirectional", 1, "expected bool, found int 1"),
        ("data.scheme", 2, "expected str, found int 2"),
    ],
)
def test_wrong_type(key, value, problem):
    section, name = key.split(".")
    assert str(error({section: {name: value}})) == f"config {key}: {problem}"


def test_section_must_be_a_table():
    assert str(error({"model": 3})) == "config model: expected a table, found int"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"dropout": 1.0}}, "config model.dropout: 1.0 is out of range [0.0, 0.99]"),
        ({"model": {"dropout": -0.1}}, "config model.dropout: -0.1 is out of range [0.0, 0.99]"),
        ({"train": {"batch_size": 0}}, "config train.batch_size: 0 is out of range [1, inf]"),
        ({"train": {"gamma": 1.5}}, "config train.gamma: 1.5 is out of range [0.0, 1.0]"),
        ({"data": {"max_sentences": -1}}, "config data.max_sentences: -1 is out of range [0, inf]"),
    ],
)
def test_out_of_range(raw, message):
    assert str(error(raw)) == message


def test_range_bounds_are_inclusive():
    cfg = Config.from_dict({"model": {"dropout": 0.99}, "train": {"batch_size": 1, "gamma": 1}})
    assert (cfg.model.dropout, cfg.train.batch_size, cfg.train.gamma) == (0.99, 1, 1.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": {"cell": "transformer"}},
            "config model.cell: 'transformer' is not one of rnn, gru, lstm",
        ),
        ({"model": {"output": "CRF"}}, "config model.output: 'CRF' is not one of crf, softmax"),
        (
            {"model": {"char_encoder": "rnn"}},
            "config model.char_encoder: 'rnn' is not one of none, cnn, lstm",
        ),
        (
            {"train": {"optimizer": "lbfgs"}},
            "config train.optimizer: 'lbfgs' is not one of "
            "sgd, adam, adamw, nadam, rmsprop, adagrad",
        ),
    ],
)
def test_bad_choice(raw, message):
    assert str(error(raw)) == message


def test_nesterov_rule():
    message = "config train.nesterov: needs optimizer 'sgd' with momentum > 0"
    assert str(error({"train": {"nesterov": True, "optimizer": "adam"}})) == message
    assert str(error({"train": {"nesterov": True, "momentum": 0.0}})) == message
    cfg = Config.from_dict({"train": {"nesterov": True, "optimizer": "sgd", "momentum": 0.5}})
    assert cfg.train.nesterov is True


def test_pooling_options_need_repeat_pooling():
    for key, value in (("repeat_key", "lowercase"), ("pool_layers", 1)):
        message = f"config model.{key}: needs model.repeat_pooling = true"
        assert str(error({"model": {key: value}})) == message
        cfg = Config.from_dict({"model": {key: value, "repeat_pooling": True}})
        assert getattr(cfg.model, key) == value
    assert str(error({"model": {"repeat_pooling": True, "repeat_key": "case"}})) == (
        "config model.repeat_key: 'case' is not one of spelling, lowercase"
    )


def test_pretrained_dropout_needs_pretrained_embeddings():
    raw = {"model": {"pretrained_dropout": 0.1, "embeddings": "random"}}
    assert str(error(raw)) == "config model.pretrained_dropout: needs pretrained model.embeddings"
    assert Config.from_dict({"model": {"pretrained_dropout": 0.1}}).model.pretrained_dropout == 0.1


def test_language_model_keys_are_checked():
    assert str(error({"model": {"lm_weight": -0.1}})) == (
        "config model.lm_weight: -0.1 is out of range [0.0, inf]"
    )
    assert str(error({"model": {"lm_vocab": 0}})) == (
        "config model.lm_vocab: 0 is out of range [1, inf]"
    )
    assert Config.from_dict({"model": {"lm_weight": 0.1}}).model.lm_vocab == 7500


def test_round_trip_through_dict_and_json(tmp_path):
    cfg = Config.from_dict(
        {
            "data": {"scheme": "IOB1", "max_sentences": 5, "lowercase": False},
            "model": {"cell": "gru", "char_encoder": "lstm", "dropout": 0.1, "casing_dim": 3},
            "train": {"optimizer": "adamw", "lr": 0.003, "schedule": "cosine", "seed": 7},
        }
    )
    d = cfg.to_dict()
    assert set(d) == {"data", "model", "train"}
    assert d["model"]["cell"] == "gru"
    assert Config.from_dict(d) == cfg
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(d), encoding="utf-8")
    assert Config.load(saved) == cfg
    assert Config.load(saved, ["train.seed=8"]).train.seed == 8


def test_invalid_toml_and_missing_file(tmp_path):
    path = write(tmp_path, "[model\nhidden_size = 3\n")
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert str(info.value).startswith(f"config {path}: not valid TOML: ")
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        Config.load(missing)
    assert str(info.value) == f"config {missing}: No such file or directory"
