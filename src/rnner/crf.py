"""Linear-chain CRF: log-likelihood by the forward algorithm and Viterbi decoding, both batched.

The only Python loop runs over time steps; each step is a [B, K, K] tensor operation over the
whole batch. Sequences are left-aligned with padding on the right (`mask`).
Transitions that the tag scheme forbids (O -> I-PER in IOB2, say) get a large negative score,
so neither training nor decoding ever puts mass on them.
"""

from __future__ import annotations

import torch
from torch import nn

FORBIDDEN = -10_000.0


class CRF(nn.Module):
    # registered with register_buffer in __init__ (not saved: rebuilt from the tag scheme)
    trans_mask: torch.Tensor
    start_mask: torch.Tensor
    end_mask: torch.Tensor

    def __init__(
        self,
        num_tags: int,
        allowed: list[tuple[int, int]] | None = None,
        allowed_start: list[int] | None = None,
        allowed_end: list[int] | None = None,
    ):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.register_buffer("trans_mask", _mask((num_tags, num_tags), allowed), persistent=False)
        self.register_buffer("start_mask", _mask((num_tags,), allowed_start), persistent=False)
        self.register_buffer("end_mask", _mask((num_tags,), allowed_end), persistent=False)

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.transitions + self.trans_mask,
            self.start + self.start_mask,
            self.end + self.end_mask,
        )

    def nll(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        trust: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Negative log-likelihood of `tags`, summed over the batch. Shapes: [B,T,K], [B,T].

        With `trust` ([B,T], the chance each observed tag is right), the tags are read as the
        output of a noisy channel: -log P(tags | x) where each true tag comes through as
        itself with that chance and as any other tag uniformly otherwise. The numerator then
        sums over every path, weighted by how well it explains the observed tags; where trust
        is 1 this is the gold path's score, so untrusted sentences of an article loosen only
        their own part of the sequence.
        """
        log_z = self.log_partition(emissions, mask)
        if trust is None or bool((trust[mask] >= 1).all()):
            return (log_z - self.score(emissions, tags, mask)).sum()
        return (
            log_z - self.log_partition(emissions + label_channel(tags, trust, self.num_tags), mask)
        ).sum()

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        trans, start, end = self._scores()
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]
        total = start[tags[:, 0]] + (emit * maskf).sum(1)
        total = total + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return total + end[last]

    @staticmethod
    def _alphas(
        emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Forward scores of every step, [B, K] each, and the sum of the shifts taken off them.

        Each step's scores are shifted down to a maximum of zero. Unshifted, they grow into the
        thousands over a whole article, where float32 values lie 2e-4 apart, and the gradient
        of log Z (tag marginals) came out wrong by as much as a confident model's whole signal
        (tests/test_crf.py, research/crf_precision.py). The shifts are constants to autograd:
        log Z moves with its first forward score one for one, so the gradient is exactly the
        unshifted one, at the cost of one `amax` a step.
        """
        alpha = start + emissions[:, 0]
        total = alpha.detach().amax(1, keepdim=True)
        alphas = [alpha - total]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alphas[-1].unsqueeze(2) + trans, dim=1) + emissions[:, t]
            live = mask[:, t : t + 1]
            shift = step.detach().amax(1, keepdim=True) * live
            alphas.append(torch.where(live, step - shift, alphas[-1]))
            total = total + shift
        return alphas, total

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence, [B]."""
        trans, start, end = self._scores()
        alphas, total = self._alphas(emissions, mask, trans, start)
        return (total + torch.logsumexp(alphas[-1] + end, dim=1, keepdim=True)).squeeze(1)

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(tag k at step t | sentence), [B, T, K], by the forward-backward algorithm (zero
        at padding). Explicit rather than the gradient of `log_partition`, so that it also
        runs under `torch.inference_mode`."""
        return self._node_scores(emissions, mask).softmax(2) * mask.unsqueeze(2).to(emissions.dtype)

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(tag k at step t | sentence), [B, T, K], differentiable (distillation's
        posterior loss trains on it); padding rows hold meaningless finite values."""
        return self._node_scores(emissions, mask).log_softmax(2)

    def nll_and_log_marginals(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`nll` (summed over the batch, no trust) and `log_marginals` from one forward
        pass: distillation needs both, and the forward loop over time is a third of their
        cost."""
        trans, start, end = self._scores()
        alphas, total = self._alphas(emissions, mask, trans, start)
        log_z = (total + torch.logsumexp(alphas[-1] + end, dim=1, keepdim=True)).squeeze(1)
        nll = (log_z - self.score(emissions, tags, mask)).sum()
        return nll, self._node_scores(emissions, mask, alphas).log_softmax(2)

    def _node_scores(
        self, emissions: torch.Tensor, mask: torch.Tensor, alphas: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """alpha_t(k) + beta_t(k), [B, T, K]: each step's tag marginals up to a constant.
        The backward scores are shifted like the forward ones (`_alphas`); the shifts are
        constants per step, which the normalization over tags cancels, so they are detached
        and the gradient is exact."""
        trans, start, end = self._scores()
        if alphas is None:
            alphas, _ = self._alphas(emissions, mask, trans, start)
        last = (end - end.detach().max()).expand_as(alphas[0])  # beta at a sequence's end
        betas = [last]
        for t in range(emissions.shape[1] - 2, -1, -1):
            step = torch.logsumexp(trans + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(
                torch.where(
                    mask[:, t + 1 : t + 2], step - step.detach().amax(1, keepdim=True), last
                )
            )
        betas.reverse()
        return torch.stack(alphas, 1) + torch.stack(betas, 1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag ids [B, T] (padding positions hold the last real tag)."""
        trans, start, end = self._scores()
        batch, steps, k = emissions.shape
        score = start + emissions[:, 0]
        keep = torch.arange(k, device=emissions.device).expand(batch, k)
        pointers = []
        for t in range(1, steps):
            best, arg = (score.unsqueeze(2) + trans).max(dim=1)
            live = mask[:, t : t + 1]
            step = best + emissions[:, t]  # kept near zero, for float32's sake (_alphas)
            score = torch.where(live, step - step.amax(1, keepdim=True), score)
            pointers.append(torch.where(live, arg, keep))  # padding: stay on the same tag
        last = (score + end).argmax(dim=1)
        path = [last]
        for arg in reversed(pointers):
            last = arg.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        path.reverse()
        return torch.stack(path, dim=1)


def label_channel(tags: torch.Tensor, trust: torch.Tensor, num_tags: int) -> torch.Tensor:
    """log P(observed tag | true tag k), [B, T, K]: `trust` for k equal to the observed tag,
    the rest spread evenly over the other tags (FORBIDDEN where trust is 1)."""
    other = torch.where(
        trust < 1,
        ((1 - trust) / (num_tags - 1)).clamp_min(1e-30).log(),
        torch.full_like(trust, FORBIDDEN),
    )
    out = other.unsqueeze(2).repeat(1, 1, num_tags)
    return out.scatter(2, tags.unsqueeze(2), trust.clamp_min(1e-30).log().unsqueeze(2))


def _mask(shape: tuple[int, ...], allowed: list | None) -> torch.Tensor:
    if allowed is None:
        return torch.zeros(shape)
    m = torch.full(shape, FORBIDDEN)
    for index in allowed:
        m[index] = 0.0
    return m
