import itertools

import pytest
import torch

from rnner.crf import CRF


def path_scores(crf: CRF, em: torch.Tensor, length: int) -> dict[tuple[int, ...], torch.Tensor]:
    """The score of every tag sequence of one sentence."""
    trans, start, end = crf._scores()
    scores = {}
    for path in itertools.product(range(em.shape[1]), repeat=length):
        s = start[path[0]] + em[0, path[0]] + end[path[-1]]
        for t in range(1, length):
            s = s + trans[path[t - 1], path[t]] + em[t, path[t]]
        scores[path] = s
    return scores


def brute_force(crf: CRF, em: torch.Tensor, length: int) -> tuple[torch.Tensor, list[int]]:
    """log Z and the best path of one sentence by enumerating every tag sequence."""
    scores = path_scores(crf, em, length)
    log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
    best = max(scores, key=lambda p: scores[p].item())
    return log_z, list(best)


def brute_marginals(crf: CRF, em: torch.Tensor, length: int) -> torch.Tensor:
    """P(tag k at step t) of one sentence, summing path probabilities over every sequence."""
    out = torch.zeros(length, em.shape[1])
    log_z, _ = brute_force(crf, em, length)
    for path, s in path_scores(crf, em, length).items():
        for t, tag in enumerate(path):
            out[t, tag] += torch.exp(s - log_z)
    return out


def random_crf(
    seed: int, k: int, lengths: list[int], allowed: list | None, starts: list[int], ends: list[int]
) -> tuple[CRF, torch.Tensor, torch.Tensor]:
    """A CRF with random scores (constrained when `allowed` is given), emissions and mask."""
    torch.manual_seed(seed)
    crf = CRF(k, allowed, starts if allowed else None, ends if allowed else None)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    em = torch.randn(len(lengths), max(lengths), k)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return crf, em, mask


@pytest.mark.parametrize("constrained", [False, True])
def test_forward_and_viterbi_match_enumeration(constrained):
    k, lengths = 4, [4, 1, 3]
    allowed = [(i, j) for i in range(k) for j in range(k) if (i + j) % 3] if constrained else None
    crf, em, mask = random_crf(0, k, lengths, allowed, [0, 1, 2], [1, 2, 3])
    log_z = crf.log_partition(em, mask)
    best = crf.decode(em, mask)
    for i, n in enumerate(lengths):
        ref_z, ref_best = brute_force(crf, em[i, :n], n)
        assert log_z[i].item() == pytest.approx(ref_z.item(), abs=1e-4)
        assert best[i, :n].tolist() == ref_best


def test_nll_falls_with_training_and_gold_path_wins():
    torch.manual_seed(0)
    crf = CRF(3)
    em = torch.zeros(2, 5, 3, requires_grad=True)
    tags = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    opt = torch.optim.Adam([em, *crf.parameters()], lr=0.1)
    first = None
    for _ in range(50):
        loss = crf.nll(em, tags, mask)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10
    decoded = crf.decode(em.detach(), mask)
    assert decoded[0].tolist() == tags[0].tolist()
    assert decoded[1, :3].tolist() == tags[1, :3].tolist()


@pytest.mark.parametrize("constrained", [False, True])
def test_marginals_match_enumeration(constrained):
    k, lengths = 3, [4, 1, 2]
    allowed = (
        [(i, j) for i in range(k) for j in range(k) if (i, j) != (0, 2)] if constrained else None
    )
    crf, em, mask = random_crf(1, k, lengths, allowed, [0, 1], [1, 2])
    with torch.inference_mode():
        marg = crf.marginals(em, mask)
    for i, n in enumerate(lengths):
        assert torch.allclose(marg[i, :n], brute_marginals(crf, em[i, :n], n), atol=1e-5)
        assert marg[i, n:].abs().sum().item() == 0.0  # padding
    assert torch.allclose(marg.sum(2), mask.float(), atol=1e-5)
    # the gradient of log Z with respect to the emissions is the same thing
    em.requires_grad_(True)
    (grad,) = torch.autograd.grad(crf.log_partition(em, mask).sum(), em)
    assert torch.allclose(marg, grad * mask.unsqueeze(2), atol=1e-5)


def test_log_partition_gradient_is_exact_over_long_sequences():
    """The NLL's gradient with respect to the emissions is marginals minus gold. Over a
    2,000-step sequence (a CoNLL article runs to 1,335 tokens) log Z reaches the thousands; the
    float32 gradient must still match the float64 one, or late in training, when the model is
    sure, rounding outweighs the signal."""
    torch.manual_seed(3)
    crf = CRF(5)
    with torch.no_grad():
        crf.transitions.normal_()
    em = (5 * torch.randn(2, 2000, 5)).requires_grad_(True)
    mask = torch.ones(2, 2000, dtype=torch.bool)
    mask[1, 1500:] = False
    (grad,) = torch.autograd.grad(crf.log_partition(em, mask).sum(), em)
    em64 = em.detach().double().requires_grad_(True)
    crf64 = CRF(5).double()
    crf64.load_state_dict(crf.state_dict())
    z64 = crf64.log_partition(em64, mask)
    (grad64,) = torch.autograd.grad(z64.sum(), em64)
    assert (grad.double() - grad64).abs().max().item() < 1e-5
    assert grad[1, 1500:].abs().sum().item() == 0.0
    rel = (crf.log_partition(em.detach(), mask).double() - z64.detach()) / z64.detach()
    assert rel.abs().max().item() < 1e-5  # the value: float32 sums of 2,000 terms


def test_marginals_stay_probabilities_over_long_sequences():
    """Over a 2,000-step sequence the unnormalised forward scores reach the thousands, where
    float32 steps are ~1e-3 apart; the marginals must still agree with float64 ones."""
    torch.manual_seed(2)
    crf = CRF(5)
    with torch.no_grad():
        crf.transitions.normal_()
    em = 3 * torch.randn(1, 2000, 5) + 5
    mask = torch.ones(1, 2000, dtype=torch.bool)
    marg = crf.marginals(em, mask)
    ref = crf.double().marginals(em.double(), mask)
    assert (marg.double() - ref).abs().max().item() < 1e-5


def test_noisy_channel_nll_matches_enumeration_and_full_trust_is_the_plain_nll():
    k, lengths = 3, [4, 2]
    crf, em, mask = random_crf(3, k, lengths, None, [], [])
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, 0, 0]])
    trust = torch.tensor([[1.0, 0.7, 0.7, 1.0], [0.4, 0.4, 1.0, 1.0]])
    nll = crf.nll(em, tags, mask, trust)
    expected = 0.0
    for i, n in enumerate(lengths):
        log_z, _ = brute_force(crf, em[i, :n], n)
        # P(observed | path) = prod_t trust_t if the tag matches, else (1 - trust_t) / (k - 1)
        terms = []
        for path, s in path_scores(crf, em[i, :n], n).items():
            p = 1.0
            for t, tag in enumerate(path):
                q = trust[i, t].item()
                p *= q if tag == tags[i, t].item() else (1 - q) / (k - 1)
            if p > 0:
                terms.append(s + torch.log(torch.tensor(p)))
        expected += (log_z - torch.logsumexp(torch.stack(terms), 0)).item()
    assert nll.item() == pytest.approx(expected, abs=1e-4)
    plain = crf.nll(em, tags, mask)
    assert crf.nll(em, tags, mask, torch.ones(2, 4)).item() == pytest.approx(plain.item())
    assert nll.item() != pytest.approx(plain.item())
    # Padding's trust is ignored, on both paths.
    padded = torch.where(mask, 1.0, 0.5)
    assert crf.nll(em, tags, mask, padded).item() == pytest.approx(plain.item())
    assert crf.nll(em, tags, mask, torch.where(mask, trust, 0.5)).item() == pytest.approx(
        nll.item()
    )


@pytest.mark.parametrize(
    "p_tag, ratio", [(0.5, 0.948), (0.1, 0.784), (0.01, 0.267), (0.001, 0.035)]
)
def test_a_doubted_tag_pulls_less_the_surer_the_model_is_of_another(p_tag, ratio):
    """docs/results.md quotes these: one token over 17 tags, trust 0.7, the gradient on the
    observed tag's score through the channel against plain cross-entropy's."""
    from rnner.crf import label_channel

    k = 17
    probs = torch.full((k,), (1 - p_tag) / (k - 1))
    probs[0] = p_tag
    tag, trust = torch.zeros(1, 1, dtype=torch.long), torch.full((1, 1), 0.7)
    grads = []
    for channel in (label_channel(tag, trust, k)[0, 0], None):
        scores = probs.log().requires_grad_(True)
        logp = scores.log_softmax(0)
        loss = -torch.logsumexp(logp + channel, 0) if channel is not None else -logp[0]
        loss.backward()
        grads.append(scores.grad[0].item())
    assert grads[0] / grads[1] == pytest.approx(ratio, abs=5e-4)


def _autograd_log_partition(crf: CRF, em: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log Z with its gradient left to autograd through the loop over time (the code before
    `_LogPartitionCPU`, and off the CPU now)."""
    from rnner.crf import _log_partition_autograd

    return _log_partition_autograd(em, mask, *crf._scores())


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_gradient_equals_autograd_through_the_loop(constrained):
    allowed = [(i, j) for i in range(4) for j in range(4) if j != i + 1] if constrained else None
    crf, em, mask = random_crf(5, 4, [6, 1, 3, 6], allowed, [0, 2], [0, 3])
    mask[3] = False  # an empty sequence: its first step still counts, as before
    em.requires_grad_(True)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    got, want = [], []
    for fn, into in (
        (crf.log_partition, got),
        (lambda e, m: _autograd_log_partition(crf, e, m), want),
    ):
        z = fn(em, mask)
        into += [z.detach(), *torch.autograd.grad((z * weights).sum(), [em, *crf.parameters()])]
    for a, b in zip(got, want, strict=True):  # sums in another order
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert got[1][0].abs().sum() > 0 and got[1][1, 1:].abs().sum() == 0  # nothing at padding


def test_log_partition_passes_gradcheck():
    crf, em, mask = random_crf(6, 3, [4, 2, 1], [(0, 1), (1, 1), (1, 2), (2, 0)], [0], [1, 2])
    crf = crf.double()
    em = em.double().requires_grad_(True)
    trans, start, end = (x.detach().requires_grad_(True) for x in crf._scores())
    from rnner.crf import _LogPartitionCPU

    assert torch.autograd.gradcheck(
        lambda e, t, s, n: _LogPartitionCPU.apply(e, mask, t, s, n), (em, trans, start, end)
    )


@pytest.mark.parametrize("ties", [False, True])
def test_numpy_viterbi_equals_the_torch_loop(ties):
    """The CPU decodes in numpy; the same operations in torch (the path off the CPU) give the
    same tags, ties (integer scores) and padding included."""
    from rnner.crf import _viterbi_torch

    allowed = [(i, j) for i in range(5) for j in range(5) if (i, j) != (0, 3)]
    crf, em, mask = random_crf(7, 5, [9, 1, 4, 9, 2, 7], allowed, [0, 1, 2], [1, 2, 4])
    if ties:
        em = em.round()
        with torch.no_grad():
            crf.transitions.copy_(crf.transitions.round())
            crf.start.zero_()
            crf.end.zero_()
    got = crf.decode(em, mask)
    want = _viterbi_torch(em, mask, *crf._scores())
    assert got.dtype == want.dtype == torch.int64 and torch.equal(got, want)
    for b, n in enumerate(mask.sum(1).tolist()):  # padding holds the last real tag
        assert (got[b, n:] == got[b, n - 1]).all()


def test_log_partition_falls_back_to_autograd_where_probabilities_underflow():
    """Two tags that must alternate, the second 200 below the first at every step: every
    path's probability underflows float32 at step 2, the log-space scores do not."""
    crf = CRF(2, [(0, 1), (1, 0)], [0], [0, 1])
    em = torch.tensor([[[0.0, -200.0]] * 4, [[0.0, -1.0]] * 4]).requires_grad_(True)
    mask = torch.ones(2, 4, dtype=torch.bool)
    z = crf.log_partition(em, mask)
    want = _autograd_log_partition(crf, em, mask)
    assert torch.isfinite(z).all() and torch.equal(z, want)
    assert torch.equal(z, torch.tensor([-400.0, -2.0]))  # the one path: 0, 1, 0, 1
    (grad,) = torch.autograd.grad(z.sum(), em)
    (grad_want,) = torch.autograd.grad(want.sum(), em)
    assert torch.equal(grad, grad_want)
