"""Linear-chain CRF: log-likelihood by the forward algorithm and Viterbi decoding, both batched.

The only Python loops run over time steps; each step is one operation over the whole batch.
On the CPU they run in numpy (the likelihood's gradient by the scaled forward-backward
algorithm, Viterbi operation for operation), where an operation on a [B, K, K] array costs
microseconds rather than torch's tens; elsewhere in torch. Sequences are left-aligned with
padding on the right (`mask`).
Transitions that the tag scheme forbids (O -> I-PER in IOB2, say) get a large negative score,
so neither training nor decoding ever puts mass on them.
"""

from __future__ import annotations

import numpy as np
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
        """log Z per sequence, [B]: on the CPU by the scaled forward-backward algorithm in
        numpy (`_LogPartitionCPU`), elsewhere by `_alphas` under autograd."""
        trans, start, end = self._scores()
        if emissions.device.type == "cpu" and emissions.dtype in (torch.float32, torch.float64):
            out: torch.Tensor = _LogPartitionCPU.apply(emissions, mask, trans, start, end)
            return out
        return _log_partition_autograd(emissions, mask, trans, start, end)

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

    def _node_scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha_t(k) + beta_t(k), [B, T, K]: each step's tag marginals up to a constant.
        The backward scores are shifted like the forward ones (`_alphas`); the shifts are
        constants per step, which the normalization over tags cancels, so they are detached
        and the gradient is exact."""
        trans, start, end = self._scores()
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
        """Best tag ids [B, T] (padding positions hold the last real tag).

        On the CPU the loop runs in numpy (`viterbi`): the same float32 operations, a few
        microseconds each instead of torch's tens, which is most of a sentence's tagging
        time at batch 1."""
        trans, start, end = self._scores()
        if emissions.device.type == "cpu":
            arrays = (x.detach().numpy() for x in (emissions, mask, trans, start, end))
            return torch.from_numpy(viterbi(*arrays))
        return _viterbi_torch(emissions, mask, trans, start, end)


def _viterbi_torch(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    trans: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """`CRF.decode` in torch operations, for tensors off the CPU."""
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


def viterbi(
    emissions: np.ndarray, mask: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """`CRF.decode`'s loop in numpy, operation for operation (ties go to the lowest tag, as
    torch's max does)."""
    batch, steps, k = emissions.shape
    score = start + emissions[:, 0]
    keep = np.broadcast_to(np.arange(k), (batch, k))
    pointers = []
    for t in range(1, steps):
        total = score[:, :, None] + trans
        arg = total.argmax(1)
        best = np.take_along_axis(total, arg[:, None, :], 1)[:, 0]
        live = mask[:, t : t + 1]
        step = best + emissions[:, t]  # kept near zero, for float32's sake (_alphas)
        score = np.where(live, step - step.max(1, keepdims=True), score)
        pointers.append(np.where(live, arg, keep))  # padding: stay on the same tag
    last = (score + end).argmax(1)
    path = [last]
    for arg in reversed(pointers):
        last = np.take_along_axis(arg, last[:, None], 1)[:, 0]
        path.append(last)
    path.reverse()
    return np.stack(path, 1).astype(np.int64)


class _LogPartitionCPU(torch.autograd.Function):
    """log Z and its gradient by the scaled forward-backward algorithm, in numpy.

    On the CPU the forward algorithm's loop over time was about a sixth of a training step,
    nearly all of it torch's cost per operation on [B, K, K] tensors, twice (autograd replayed
    the loop backwards). Here each step is a [B, K] x [K, K] product of probabilities with
    the step's exponentiated emissions, normalised to sum to one (Rabiner's scaling: log Z
    is the sum of the logs of the normalisers, in float64), in numpy at a few microseconds
    an operation. The gradient of log Z is the expected count of each score: the tag
    marginals (emissions, start, end) and the pairwise marginals summed over the batch and
    time (transitions), from one sweep back. Exact in real arithmetic, as autograd through
    `CRF._alphas` is; they round differently (tests/test_crf.py). Forbidden transitions
    become zeros. Where a normaliser underflows to zero (no path left above float32's
    range), both directions fall back to `CRF._alphas` under autograd.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        trans: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(emissions, mask, trans, start, end)
        em, live = emissions.detach().numpy(), mask.numpy()
        tr, st, en = (x.detach().numpy() for x in (trans, start, end))
        with np.errstate(all="ignore"):
            scaled = _scaled_forward(em, live, tr, st, en)
        ctx.scaled = scaled  # type: ignore[attr-defined]
        if scaled is None:
            return _log_partition_autograd(emissions, mask, trans, start, end).detach()
        return torch.from_numpy(scaled[-1])

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        emissions, mask, trans, start, end = ctx.saved_tensors  # type: ignore[attr-defined]
        scaled = ctx.scaled  # type: ignore[attr-defined]
        grads = None
        if scaled is not None:
            with np.errstate(all="ignore"):
                grads = _scaled_backward(scaled, mask.numpy(), grad.numpy())
        if grads is None:
            inputs = [x.detach().requires_grad_() for x in (emissions, trans, start, end)]
            with torch.enable_grad():
                z = _log_partition_autograd(inputs[0], mask, *inputs[1:])
                d = torch.autograd.grad(z, inputs, grad)
            return d[0], None, d[1], d[2], d[3]
        d_em, d_trans, d_start, d_end = (torch.from_numpy(x) for x in grads)
        return d_em, None, d_trans, d_start, d_end


def _log_partition_autograd(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    trans: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """log Z by `CRF._alphas` in torch operations, its gradient left to autograd."""
    alphas, total = CRF._alphas(emissions, mask, trans, start)
    return (total + torch.logsumexp(alphas[-1] + end, dim=1, keepdim=True)).squeeze(1)


def _scaled_forward(
    em: np.ndarray, live: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, ...] | None:
    """Forward probabilities [B, T, K] (each step summing to one; carried over padding),
    the exponentiated scores, and log Z [B]; None when a normaliser underflows."""
    batch, steps, _ = em.shape
    top = em.max(2)  # [B, T]: each step's emissions shifted to a maximum of zero
    emit = np.exp(em - top[:, :, None])
    t_top, s_top, e_top = trans.max(), start.max(), end.max()
    trans_p, end_p = np.exp(trans - t_top), np.exp(end - e_top)
    alpha = np.empty_like(emit)
    norms = np.ones((batch, steps), dtype=np.float64)
    a = np.exp(start - s_top) * emit[:, 0]
    norms[:, 0] = c = a.sum(1)
    alpha[:, 0] = a = a / c[:, None]
    for t in range(1, steps):
        q = (a @ trans_p) * emit[:, t]
        c = q.sum(1)
        on = live[:, t]
        norms[:, t] = np.where(on, c, 1.0)
        alpha[:, t] = a = np.where(on[:, None], q / c[:, None], a)
    final = (a * end_p).sum(1)
    if not (np.all(norms > 0) and np.all(final > 0) and np.isfinite(norms).all()):
        return None
    counted = live.copy()
    counted[:, 0] = True  # the first step's scores count even in an empty sequence
    log_z = (
        np.log(norms).sum(1)
        + np.log(final.astype(np.float64))
        + np.where(counted, top, 0).sum(1, dtype=np.float64)
        + (counted[:, 1:].sum(1) * np.float64(t_top))
        + np.float64(s_top)
        + np.float64(e_top)
    )
    return alpha, emit, trans_p, end_p, log_z.astype(em.dtype)


def _scaled_backward(
    scaled: tuple[np.ndarray, ...], live: np.ndarray, grad: np.ndarray
) -> tuple[np.ndarray, ...] | None:
    """The gradient of sum(grad * log Z) with respect to emissions, transitions, start and
    end, from `_scaled_forward`'s quantities; None when a normaliser underflows."""
    alpha, emit, trans_p, end_p, _ = scaled
    batch, steps, k = emit.shape
    beta = np.empty_like(emit)
    last = np.broadcast_to(end_p / end_p.sum(), (batch, k))
    beta[:, -1] = b = last
    for t in range(steps - 2, -1, -1):
        r = (emit[:, t + 1] * b) @ trans_p.T
        r = r / r.sum(1, keepdims=True)
        beta[:, t] = b = np.where(live[:, t + 1, None], r, last)
    weight = grad[:, None] * live  # [B, T]
    weight[:, 0] = grad  # the first step's scores count even in an empty sequence
    marginal = alpha * beta
    marginal /= marginal.sum(2, keepdims=True)
    d_em = (marginal * weight[:, :, None]).astype(emit.dtype)
    d_start = d_em[:, 0].sum(0)
    final = alpha[:, -1] * end_p
    d_end = (final / final.sum(1, keepdims=True) * grad[:, None]).sum(0)
    d_trans = np.zeros((k, k), dtype=emit.dtype)
    if steps > 1:
        pair = alpha[:, :-1, :, None] * trans_p * (emit[:, 1:] * beta[:, 1:])[:, :, None, :]
        pair /= pair.sum((2, 3), keepdims=True)
        d_trans = np.einsum("btij,bt->ij", pair, weight[:, 1:]).astype(emit.dtype)
    out = (d_em, d_trans, d_start.astype(emit.dtype), d_end.astype(emit.dtype))
    if not all(np.isfinite(x).all() for x in out):
        return None
    return out


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
