"""The flair side of `flair_vs_rnner.py`, run by the flair venv's Python (flair is not one of
rnner's dependencies): one bounded training epoch and one pass of tagging dev, timed, as one
JSON line on stdout. Offline: the word vectors and the character dictionary are built here
from local files, nothing is fetched.

    python flair_side.py WORKDIR VECTORS.txt --threads 2 [--batch 32] [--lr 0.1] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("vectors", help="GloVe text file (word v1 ... v50 a line)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args()

    import numpy as np
    import torch
    from flair.data import Dictionary
    from flair.datasets import ColumnCorpus
    from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings
    from flair.models import SequenceTagger
    from flair.trainers import ModelTrainer

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    corpus = ColumnCorpus(
        work,
        {0: "text", 3: "ner"},
        train_file="train.txt",
        dev_file="dev.txt",
        test_file="dev.txt",
    )
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    words, vecs = [], []
    for line in Path(args.vectors).read_text(encoding="utf-8").splitlines():
        parts = line.rstrip().split(" ")
        words.append(parts[0])
        vecs.append(np.asarray(parts[1:], dtype=np.float32))
    # flair's word embeddings from vectors in memory: a vocabulary, then the matrix (its last
    # row, for unknown words, stays zero), as flair builds them from its own files
    vocab = {w: i for i, w in enumerate(words)}
    glove = WordEmbeddings(None, vocab=vocab, embedding_length=len(vecs[0]), name="glove-local")
    with torch.no_grad():
        glove.embedding.weight[: len(words)] = torch.from_numpy(np.stack(vecs))
    chars = Dictionary()
    for sentence in corpus.train:
        for token in sentence:
            for c in token.text:
                chars.add_item(c)
    embeddings = StackedEmbeddings([glove, CharacterEmbeddings(path_to_char_dict=chars)])
    tagger = SequenceTagger(
        hidden_size=args.hidden,
        embeddings=embeddings,
        tag_dictionary=tags,
        tag_type="ner",
        use_crf=True,
    )
    trainer = ModelTrainer(tagger, corpus)
    t0 = time.perf_counter()
    trainer.train(
        work / "flair-run",
        learning_rate=args.lr,
        mini_batch_size=args.batch,
        max_epochs=1,
        save_final_model=False,
        embeddings_storage_mode="none",
    )
    train_s = time.perf_counter() - t0
    dev = list(corpus.dev)
    for s in dev:
        s.remove_labels("predicted")
    t0 = time.perf_counter()
    tagger.predict(dev, mini_batch_size=args.batch, label_name="predicted")
    predict_s = time.perf_counter() - t0
    result = tagger.evaluate(dev, gold_label_type="ner", mini_batch_size=args.batch)
    print(
        json.dumps(
            {
                "tool": "flair",
                "train_sentences": len(corpus.train),
                "train_seconds": train_s,
                "train_sentences_per_s": len(corpus.train) / train_s,
                "predict_tokens_per_s": sum(len(s) for s in dev) / predict_s,
                "dev_f1": 100 * result.main_score,
            }
        )
    )


if __name__ == "__main__":
    main()
