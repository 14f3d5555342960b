"""How far the float32 CRF gradient is from the float64 one on a trained model's training data.

    python research/crf_precision.py RUN_DIR [--sentences 3000]

The gradient of log Z with respect to the emissions is the tag marginals; the training signal is
those minus the gold tags, whose size on the gold tag is 1 - P(gold tag). For each batch of the
first `--sentences` training sentences (as the run's config groups them: whole articles for the
accurate configuration), this prints that signal (float64), and the mean absolute error of the
float32 gradient of `CRF.log_partition` as it is, and of the same forward algorithm without its
per-step shift (how rnner computed it before 50d2aba), and the signal as that one gives it.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from rnner.crf import CRF
from rnner.pipeline import encode_split, load_corpus
from rnner.runs import load_run


def unshifted_log_partition(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    trans, start, end = crf._scores()
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t : t + 1], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


def gradient(
    fn, crf: CRF, emissions: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log Z by `fn`, and its gradient with respect to the emissions."""
    em = emissions.detach().clone().requires_grad_(True)
    log_z = fn(crf, em, mask)
    (grad,) = torch.autograd.grad(log_z.sum(), em)
    return log_z.detach(), grad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--sentences", type=int, default=3000)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, vocabs, cfg, meta = load_run(args.run)
    if model.crf is None:
        sys.exit("crf_precision.py: the run has no CRF")
    sents = load_corpus(cfg).train[: args.sentences]
    split = encode_split(sents, vocabs, cfg, meta.get("source_scheme", "IOB2"))
    crf64 = copy.deepcopy(model.crf).double()  # buffers too: the scheme's constraints
    print(
        "| longest sequence | tokens | largest log Z | 1 - P(gold tag) | the same, unshifted | "
        "error, shifted (now) | error, unshifted (before) |"
    )
    print("|---|---|---|---|---|---|---|")
    for b in split.batches(64):
        with torch.no_grad():
            em = model.emissions(b)
        log_z, exact = gradient(CRF.log_partition, crf64, em.double(), b.mask)
        now = gradient(CRF.log_partition, model.crf, em, b.mask)[1].double()
        before = gradient(unshifted_log_partition, model.crf, em, b.mask)[1].double()
        gold, gold_before = (
            1 - g.gather(2, b.tags.unsqueeze(2)).squeeze(2)[b.mask] for g in (exact, before)
        )
        print(
            f"| {int(b.lengths.max())} | {int(b.mask.sum())} | {log_z.abs().max():.0f} | "
            f"{gold.mean():.2e} | "
            f"{gold_before.mean():.2e} | "
            f"{(now - exact).abs()[b.mask].mean():.1e} | "
            f"{(before - exact).abs()[b.mask].mean():.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
