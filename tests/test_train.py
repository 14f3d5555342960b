import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD, SESSION_EPOCHS, SESSION_SENTENCES, tiny_sections

from rnner import batching, checkpoint
from rnner.config import Config
from rnner.model import RNNTagger
from rnner.pipeline import load_corpus
from rnner.runs import load_run, load_weights
from rnner.training import WeightAverage, fit, make_optimizer
from rnner.vocab import build_vocabs

RUN_FILES = {
    "model.safetensors",
    "config.json",
    "vocab.json",
    "run.json",
    "metrics.json",
    "log.jsonl",
}
LOG_KEYS = {
    "epoch",
    "train_loss",
    "dev_precision",
    "dev_recall",
    "dev_f1",
    "lr",
    "train_seconds",
    "sentences_per_s",
    "tokens_per_s",
    "elapsed_seconds",
    "best",
}
# The distinct word keys of tests/data/good/small.txt (lower-cased, digits as 0).
SMALL_WORDS = {
    "eu",
    "rejects",
    "german",
    "call",
    ".",
    "peter",
    "blackburn",
    "münchen",
    "0000-00-00",
}


def tiny_config(**overrides) -> Config:
    return Config.from_dict(tiny_sections(**overrides))


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_run_directory_files(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert names >= RUN_FILES
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".tmp")) for n in names), names


def test_log_has_one_line_per_epoch_and_loss_falls(tiny_run):
    log = read_log(tiny_run)
    assert [r["epoch"] for r in log] == list(range(1, SESSION_EPOCHS + 1))
    for record in log:
        assert set(record) == LOG_KEYS
        assert 0.0 <= record["dev_f1"] <= 1.0
        assert record["lr"] == pytest.approx(0.02)
    losses = [r["train_loss"] for r in log]
    assert losses[-1] < losses[0]
    assert losses[-1] < 0.8 * losses[0]
    assert sum(r["best"] for r in log) >= 1


def test_metrics_json(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert {"best_epoch", "epochs_run", "train_seconds", "device", "dev", "test"} <= set(metrics)
    assert metrics["epochs_run"] == SESSION_EPOCHS
    assert metrics["device"] == "cpu"
    log = read_log(tiny_run)
    best = max(log, key=lambda r: r["dev_f1"])
    assert metrics["best_epoch"] == best["epoch"]
    for split in ("dev", "test"):
        entity = metrics[split]["entity"]
        assert set(entity) == {"precision", "recall", "f1", "accuracy", "per_type"}
        assert set(entity["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
        for key in ("precision", "recall", "f1", "accuracy"):
            assert 0.0 <= entity[key] <= 1.0
        token = metrics[split]["token"]
        assert {"accuracy", "report", "report_text"} <= set(token)
        assert token["accuracy"] == entity["accuracy"]
        assert "O" in token["report"]
    # The best epoch's dev score is what metrics.json reports for dev.
    assert metrics["dev"]["entity"]["f1"] == pytest.approx(best["dev_f1"])


def test_run_json_config_and_vocab(tiny_run, conll_dir):
    meta = json.loads((tiny_run / "run.json").read_text())
    assert meta["word_dim"] == 16
    assert meta["source_scheme"] == "IOB2"
    assert meta["seed"] == 1
    assert set(meta["data"]) == {"train", "dev", "test"}
    assert meta["data"]["train"]["path"] == str(conll_dir / "train.txt")
    assert len(meta["data"]["train"]["sha256"]) == 64
    assert "torch" in meta["versions"]
    cfg = Config.from_dict(json.loads((tiny_run / "config.json").read_text()))
    assert cfg.data.max_sentences == SESSION_SENTENCES
    assert cfg.model.hidden_size == 32
    assert cfg.train.epochs == SESSION_EPOCHS
    vocab = json.loads((tiny_run / "vocab.json").read_text())
    tag_names = vocab["tags"]["items"]
    assert tag_names[0] == "O"
    assert {"S-PER", "B-PER", "E-PER"} <= set(tag_names)  # trained in BIOES
    assert vocab["lowercase"] is True


def test_load_corpus_slices_and_detects_scheme(conll_dir):
    cfg = tiny_config(data={"data_dir": str(conll_dir.parent), "max_sentences": 7})
    corpus = load_corpus(cfg)
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (7, 7, 7)
    assert corpus.scheme == "IOB2"
    assert corpus.train[0].tokens[:3] == ("EU", "rejects", "German")
    assert corpus.paths["dev"] == str(conll_dir / "dev.txt")


def test_fit_softmax_through_the_api(tmp_path, conll_dir):
    cfg = tiny_config(
        data={"data_dir": str(conll_dir.parent), "max_sentences": 80},
        model={"output": "softmax", "char_encoder": "none", "casing_dim": 0},
        train={"epochs": 4, "lr": 0.02},
    )
    records: list[dict] = []
    metrics = fit(cfg, tmp_path / "run", hooks=[records.append], progress=False)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert metrics["epochs_run"] == 4
    assert {p.name for p in (tmp_path / "run").iterdir()} >= RUN_FILES
    model, _, loaded, _ = load_run(tmp_path / "run")
    assert model.crf is None
    assert loaded.model.output == "softmax"


def test_fit_is_reproducible(tmp_path):
    sections = {"data": {"train": str(GOOD), "dev": str(GOOD), "test": str(GOOD)}}
    losses = []
    for name in ("a", "b"):
        fit(tiny_config(**sections), tmp_path / name, progress=False)
        losses.append([(r["train_loss"], r["dev_f1"]) for r in read_log(tmp_path / name)])
    assert losses[0] == losses[1]
    assert len(losses[0]) == 2


def test_early_stopping(tmp_path):
    # With lr 0 nothing changes, so dev F1 never improves after epoch 1.
    cfg = tiny_config(
        data={"train": str(GOOD), "dev": str(GOOD), "test": str(GOOD)},
        train={"lr": 0.0, "epochs": 10, "patience": 2},
    )
    metrics = fit(cfg, tmp_path / "run", progress=False)
    assert metrics["best_epoch"] == 1
    assert metrics["epochs_run"] == 3
    assert [r["best"] for r in read_log(tmp_path / "run")] == [True, False, False]


def test_weight_average_warms_up_then_decays_and_swaps_back():
    lin = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    avg = WeightAverage(lin, decay=0.5)
    for value in (1.0, 3.0, 5.0):
        torch.nn.init.constant_(lin.weight, value)
        avg.update(lin)
    # decays min(0.5, (1 + n) / (10 + n)) for n = 1, 2, 3: 2/11, 3/12, 4/13
    expected = 0.0
    for value, decay in ((1.0, 2 / 11), (3.0, 3 / 12), (5.0, 4 / 13)):
        expected = decay * expected + (1 - decay) * value
    assert avg.average["weight"].item() == pytest.approx(expected)
    with avg.applied(lin):
        assert lin.weight.item() == pytest.approx(expected)
    assert lin.weight.item() == 5.0


def test_fit_with_weight_average_scores_and_saves_the_average(tmp_path):
    cfg = tiny_config(
        data={"train": str(GOOD), "dev": str(GOOD), "test": str(GOOD)},
        train={"ema": 0.9, "select": "last"},
    )
    fit(cfg, tmp_path / "run", progress=False)
    state = checkpoint.load(tmp_path / "run")
    saved = load_weights(tmp_path / "run")
    average = state["average"]["average"]
    assert state["average"]["updates"] > 0
    assert all(torch.equal(saved[k], v) for k, v in average.items())
    assert not all(torch.equal(saved[k], state["model"][k]) for k in average)


def _text_vectors_config(tmp_path, **model):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(
        "eu 1 0 0\ngerman 0 1 0\npeter 0 0 1\n0000-00-00 1 1 1\nzebra 2 2 2\nunused 3 3 3\n",
        encoding="utf-8",
    )
    dev = tmp_path / "dev.txt"
    dev.write_text("Zebra O\nXylophone O\nPeter B-PER\n\n", encoding="utf-8")
    return tiny_config(
        data={"train": str(GOOD), "dev": str(dev), "test": str(GOOD)},
        model={"embeddings": str(vectors), **model},
        train={"epochs": 1},
    )


def test_fit_with_pretrained_text_vectors(tmp_path):
    cfg = _text_vectors_config(tmp_path, freeze_embeddings=True)
    fit(cfg, tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["word_dim"] == 3
    # Training words only: eu, german, peter, 1996-08-22 of 9; "zebra" is added from dev.
    assert meta["embedding_coverage"] == round(5 / 10, 4)
    model, vocabs, _, _ = load_run(tmp_path / "run")
    assert set(vocabs.words.itos[2:]) == SMALL_WORDS | {"zebra"}
    assert "xylophone" not in vocabs.words
    weight = model.words.weight
    assert weight.shape == (12, 3)
    assert weight[vocabs.word_id("EU")].tolist() == [1.0, 0.0, 0.0]
    assert weight[vocabs.word_id("1996-08-22")].tolist() == [1.0, 1.0, 1.0]
    assert weight[vocabs.word_id("Zebra")].tolist() == [2.0, 2.0, 2.0]
    assert weight[0].tolist() == [0.0, 0.0, 0.0]


def test_pretrained_dropout_trains_and_saves_only_the_fine_tuned_vectors(tmp_path):
    cfg = _text_vectors_config(tmp_path, pretrained_dropout=0.5)
    fit(cfg, tmp_path / "run", progress=False)
    saved = load_weights(tmp_path / "run")
    assert "words.weight" in saved and "pretrained" not in saved
    model, vocabs, _, _ = load_run(tmp_path / "run")
    assert model.pretrained is None  # tagging never needs the originals
    weight = model.words.weight
    assert weight[vocabs.word_id("Zebra")].tolist() == [2.0, 2.0, 2.0]  # dev only: original
    assert weight[vocabs.word_id("EU")].tolist() != [1.0, 0.0, 0.0]  # trained: fine-tuned


SENTS = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["Brussels"]]
TAGS = [["S-ORG", "O", "S-MISC", "O"], ["B-PER", "E-PER"], ["S-LOC"]]


# A few representative cells that together touch every option once; what each architecture
# outputs is tested for all of them in test_architectures.py.
@pytest.mark.parametrize(
    ("cell", "char_encoder", "output", "extra"),
    [
        ("lstm", "cnn", "crf", {}),
        ("gru", "lstm", "softmax", {"locked_dropout": True}),
        ("rnn", "none", "crf", {"repeat_pooling": True}),
        (
            "lstm",
            "lstm",
            "crf",
            {"repeat_pooling": True, "repeat_key": "lowercase", "pool_layers": 1},
        ),
        ("gru", "cnn", "softmax", {"lm_weight": 0.1, "lm_vocab": 3}),
    ],
)
def test_an_architecture_takes_a_step(cell, char_encoder, output, extra):
    torch.manual_seed(0)
    vocabs = build_vocabs(SENTS, TAGS)
    cfg = tiny_config(
        model={
            "cell": cell,
            "char_encoder": char_encoder,
            "output": output,
            "layers": 2,
            "casing_dim": 3,
            "hidden_size": 6,
            "char_hidden": 4,
            **extra,
        }
    )
    model = RNNTagger(cfg.model, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), 5)
    assert (model.chars is None) == (char_encoder == "none")
    assert len(model.encoder.forward_rnns) == 2
    assert isinstance(
        model.encoder.forward_rnns[0],
        {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell],
    )
    batch = batching.make_batch(batching.encode(SENTS, vocabs, TAGS), np.arange(3))
    opt = make_optimizer(cfg, list(model.parameters()))
    before = model.proj.weight.detach().clone()
    model.train()
    loss = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.proj.weight)
    model.eval()
    pred = model.decode(batch)
    assert pred.shape == (3, 4)
    assert int(pred.max()) < len(vocabs.tags)


def test_train_on_dev_keeps_the_last_epoch(conll_dir, tmp_path):
    from rnner.config import ConfigError

    with pytest.raises(ConfigError, match="data.train_on_dev"):
        Config.from_dict({"data": {"train_on_dev": True}})
    cfg = Config.from_dict(
        tiny_sections(
            data={"max_sentences": 40, "train_on_dev": True}, train={"select": "last", "epochs": 3}
        )
    )
    assert len(load_corpus(cfg).train) == 80
    metrics = fit(cfg, tmp_path / "run", progress=False)
    assert metrics["best_epoch"] == 3


def test_train_trust_file_is_read_by_line_and_checked(conll_dir, tmp_path):
    from rnner.conll import InputError

    base = tiny_sections(
        data={"max_sentences": 40, "context": "document", "max_context_tokens": 200}
    )
    train = load_corpus(Config.from_dict(base)).train
    trust_file = tmp_path / "trust.tsv"
    trust_file.write_text(
        f"# flagged by fold teachers\n{train[3].line}\t0.7\n\n{train[5].line}\t0.49  # twice\n",
        encoding="utf-8",
    )
    base["data"]["train_trust"] = str(trust_file)
    corpus = load_corpus(Config.from_dict(base))
    assert corpus.trust == [1.0] * 3 + [0.7, 1.0, 0.49] + [1.0] * 34
    assert corpus.paths["train_trust"] == str(trust_file)
    with_dev = load_corpus(
        Config.from_dict(
            tiny_sections(data={**base["data"], "train_on_dev": True}, train={"select": "last"})
        )
    )
    assert with_dev.trust == corpus.trust + [1.0] * 40

    # Each token of a sentence carries its trust, through articles joined into one sequence.
    cfg = Config.from_dict(base)
    vocabs = build_vocabs([s.tokens for s in corpus.train], [list(s.tags) for s in corpus.train])
    from rnner.pipeline import encode_split

    split = encode_split(corpus.train, vocabs, cfg, corpus.scheme, corpus.trust)
    batch = batching.make_batch(split.data, np.arange(len(split.groups)))
    assert batch.trust is not None and batch.trust.shape == batch.mask.shape
    flat = batch.trust[batch.mask]
    assert sorted(set(flat.tolist())) == pytest.approx([0.49, 0.7, 1.0])
    assert int((flat == 0.7).sum()) == len(train[3])
    assert bool((batch.trust[~batch.mask] == 1).all())

    metrics = fit(cfg, tmp_path / "run", corpus=corpus, progress=False)
    assert metrics["best_epoch"] >= 1
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "train_trust" in run["data"]

    for text, message in [
        (f"{train[0].line} 0.5 9\n", "expected 'LINE<TAB>TRUST'"),
        ("seven\t0.5\n", "expected 'LINE<TAB>TRUST'"),
        (f"{train[0].line + 1}\t0.5\n", f"no training sentence starts at line {train[0].line + 1}"),
        (f"{train[1].line}\t0\n", r"trust 0.0 is not in \(0, 1\]"),
    ]:
        trust_file.write_text("# header\n" + text, encoding="utf-8")
        with pytest.raises(InputError, match=message) as err:
            load_corpus(Config.from_dict(base))
        assert str(err.value).startswith(f"{trust_file}:2: ")


@pytest.mark.parametrize("output", ["crf", "softmax"])
def test_loss_with_full_trust_is_the_plain_loss_and_doubt_lowers_it(output):
    torch.manual_seed(0)
    vocabs = build_vocabs(SENTS, TAGS)
    cfg = tiny_config(model={"output": output})
    model = RNNTagger(cfg.model, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), 5)
    model.eval()
    plain = model.loss(batching.make_batch(batching.encode(SENTS, vocabs, TAGS), np.arange(3)))
    full = [[1.0] * len(s) for s in SENTS]
    trusted = model.loss(
        batching.make_batch(batching.encode(SENTS, vocabs, TAGS, full), np.arange(3))
    )
    assert trusted.item() == pytest.approx(plain.item(), rel=1e-6)
    doubt = [[1.0] * len(SENTS[0]), [0.5] * len(SENTS[1]), [1.0] * len(SENTS[2])]
    batch = batching.make_batch(batching.encode(SENTS, vocabs, TAGS, doubt), np.arange(3))
    assert batch.trust is not None and batch.trust.tolist()[1] == [0.5, 0.5, 1.0, 1.0]
    doubted = model.loss(batch).item()
    assert doubted != pytest.approx(plain.item(), rel=1e-4)
    if output == "softmax":
        # Each doubted token's loss is -log(q p + (1 - q) (1 - p) / (K - 1)), p its tag's
        # probability; the others' is -log p.
        with torch.no_grad():
            probs = model.emissions(batch).softmax(2)
        p = probs.gather(2, batch.tags.unsqueeze(2)).squeeze(2)
        k = len(vocabs.tags)
        per_token = torch.where(
            batch.trust < 1, -(0.5 * p + 0.5 * (1 - p) / (k - 1)).log(), -p.log()
        )
        assert doubted == pytest.approx((per_token * batch.mask).sum().item() / 3, rel=1e-5)


def test_singleton_unk_marks_the_words_seen_once_in_train(tmp_path):
    from rnner.pipeline import load_corpus
    from rnner.training import build_model

    train = tmp_path / "train.txt"
    train.write_text(
        "EU B-ORG\nsaid O\n.\tO\n\nPeter B-PER\nsaid O\nEU B-ORG\n\n", encoding="utf-8"
    )
    dev = tmp_path / "dev.txt"
    dev.write_text("Brussels B-ORG\nsaid O\n\n", encoding="utf-8")
    cfg = tiny_config(
        data={"train": str(train), "dev": str(dev), "test": str(dev)}, model={"singleton_unk": 0.5}
    )
    model, vocabs, info = build_model(cfg, load_corpus(cfg), np.random.default_rng(0))
    assert model.singleton is not None
    once = {w for w, s in zip(vocabs.words.itos, model.singleton.tolist(), strict=True) if s}
    assert once == {".", "peter"}  # eu and said twice; brussels is dev's, never trained
    assert info["singletons"] == 2
    fit(cfg, tmp_path / "run", progress=False)
    assert "singleton" not in load_weights(tmp_path / "run")
