import numpy as np
import pytest
import torch
from torch import nn

from rnner.model import (
    CharCNN,
    CharLSTM,
    Dropout,
    Encoder,
    LockedDropout,
    RNNTagger,
    repeat_mean,
    reverse_padded,
)


def test_reverse_padded_reverses_within_length():
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_padded(x, torch.tensor([4, 2]))
    assert out[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_bidirectional_encoder_equals_packed_reference(cell):
    """Our dense reverse trick must give exactly what PyTorch's packed BiRNN gives."""
    torch.manual_seed(0)
    enc = Encoder(cell, 5, 6, layers=1, bidirectional=True, dropout=0.0)
    ref = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](
        5, 6, batch_first=True, bidirectional=True
    )
    with torch.no_grad():
        for name, p in enc.forward_rnns[0].named_parameters():
            getattr(ref, name).copy_(p)
        for name, p in enc.backward_rnns[0].named_parameters():
            getattr(ref, name + "_reverse").copy_(p)
    lengths = torch.tensor([7, 3, 5])
    x = torch.randn(3, 7, 5)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)
    got = enc(x, lengths)
    mask = (torch.arange(7)[None, :] < lengths[:, None]).unsqueeze(2)
    torch.testing.assert_close(got * mask, expected * mask, atol=1e-5, rtol=1e-5)


def test_locked_dropout_shares_one_mask_across_time_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    out = drop(torch.ones(64, 9, 32))
    assert torch.equal(out, out[:, :1, :].expand_as(out))  # the same mask at every step
    assert set(out.unique().tolist()) == {0.0, 2.0}  # scaled by 1 / (1 - p)
    assert abs(out.mean().item() - 1.0) < 0.05
    drop.eval()
    x = torch.randn(2, 3, 4)
    assert drop(x) is x


def _packed_char_reference(lengths: list[int], width: int):
    """A CharLSTM, a packed bidirectional nn.LSTM with its weights, and random characters."""
    torch.manual_seed(0)
    enc = CharLSTM(num_chars=20, dim=4, hidden=6, dropout=0.0)
    ref = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, p in enc.forward_rnn.named_parameters():
            getattr(ref, name).copy_(p)
        for name, p in enc.backward_rnn.named_parameters():
            getattr(ref, name + "_reverse").copy_(p)
    chars = torch.randint(1, 20, (len(lengths), width))
    chars[torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]] = 0
    return enc, ref, chars, torch.tensor(lengths)


@pytest.mark.parametrize(
    "lengths",
    [
        [3, 1, 5, 2],
        [12, 3, 9, 1, 8, 0],
        [11, 9, 13],
        [i % 15 for i in range(70)],  # large enough to split
        [1 + i % 8 for i in range(70)],
    ],
)  # large, all short
def test_char_lstm_equals_packed_bidirectional_final_states(lengths):
    """Dense, and in large batches short and long tokens apart: the packed BiLSTM's result."""
    enc, ref, chars, lens = _packed_char_reference(lengths, max(lengths) or 1)
    x = enc.embed(chars)
    packed = nn.utils.rnn.pack_padded_sequence(
        x, lens.clamp(min=1), batch_first=True, enforce_sorted=False
    )
    _, (h, _) = ref(packed)
    got = enc(chars, lens)
    assert got.shape == (len(lengths), 6)
    torch.testing.assert_close(got, torch.cat([h[0], h[1]], dim=1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(enc.eval()(chars, lens), got)  # tagging takes the packed path
    enc.train()
    got.sum().backward()  # both groups reach the embeddings
    used = chars.unique()
    assert (enc.embed.weight.grad[used[used > 0]].abs().sum(dim=1) > 0).all()


def test_char_lstm_loads_weights_saved_as_one_bidirectional_lstm():
    enc, ref, chars, lens = _packed_char_reference([10, 2, 4], 10)
    old = {"embed.weight": enc.embed.weight.detach().clone()}
    old |= {f"rnn.{k}": v.detach().clone() for k, v in ref.state_dict().items()}
    fresh = CharLSTM(num_chars=20, dim=4, hidden=6, dropout=0.0)
    fresh.load_state_dict(old)  # strict: every old key maps onto a new one
    torch.testing.assert_close(fresh(chars, lens), enc(chars, lens))


def test_repeat_mean_pools_equal_keys_within_each_sequence_only():
    h = torch.tensor([[1.0, 2.0, 3.0, 9.0], [5.0, 7.0, 0.0, 0.0]]).unsqueeze(2)
    keys = torch.tensor([[4, 2, 4, 4], [4, 4, 1, 1]])  # key 4 recurs in both sequences
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    out = repeat_mean(h, keys, mask).squeeze(2)
    # sequence 0: positions 0 and 2 share key 4 (position 3 is padding); 1 is alone
    assert out.tolist() == [[2.0, 2.0, 2.0, 0.0], [6.0, 6.0, 0.0, 0.0]]


def test_repeat_pooling_links_the_same_spelling_across_sentences_of_a_document():
    from rnner import batching
    from rnner.vocab import build_vocabs

    sents = [["Fischler", "said", "."], ["EU", "'s", "Fischler", "FISCHLER", "."]]
    vocabs = build_vocabs(sents, [["O"] * 3, ["O"] * 5])
    groups = batching.units([0, 0], [3, 5], "document", 64)
    data = batching.encode(batching.join_units(sents, groups), vocabs)
    b = batching.make_batch(data, np.arange(1))
    h = torch.arange(8.0).view(1, 8, 1)
    out = repeat_mean(h, b.char_index, b.mask)[0, :, 0]
    # "Fischler" at 0 and 5 pool (2.5), "." at 2 and 7 pool (4.5); FISCHLER stays alone
    assert out.tolist() == [2.5, 1.0, 4.5, 3.0, 4.0, 2.5, 6.0, 4.5]
    # up to case, FISCHLER at 6 joins them: (0 + 5 + 6) / 3
    out = repeat_mean(h, b.lower, b.mask)[0, :, 0]
    assert out.tolist() == pytest.approx([11 / 3, 1.0, 4.5, 3.0, 4.0, 11 / 3, 11 / 3, 4.5])


def test_pool_layers_read_each_state_beside_its_pool():
    from rnner.config import ModelConfig

    cfg = ModelConfig(
        embeddings="random",
        char_encoder="none",
        casing_dim=0,
        hidden_size=3,
        repeat_pooling=True,
        pool_layers=2,
    )
    model = RNNTagger(cfg, num_words=10, num_chars=5, num_tags=4, word_dim=2)
    assert model.pooled is not None and len(model.pooled.forward_rnns) == 2
    assert model.pooled.forward_rnns[0].input_size == 12  # [h; pool], 2 directions of 3
    assert model.proj.in_features == 6


def test_pretrained_dropout_reads_the_original_vectors_of_known_words_and_is_not_saved():
    from rnner import batching
    from rnner.config import ModelConfig
    from rnner.vocab import build_vocabs

    sents = [["Fischler", "said", "zzz", "."]]
    vocabs = build_vocabs(sents, [["O"] * 4])
    b = batching.make_batch(batching.encode(sents, vocabs), np.arange(1))
    cfg = ModelConfig(
        char_encoder="none", casing_dim=0, hidden_size=3, dropout=0.0, pretrained_dropout=1.0
    )
    torch.manual_seed(0)
    model = RNNTagger(cfg, num_words=len(vocabs.words), num_chars=5, num_tags=4, word_dim=2)
    original = torch.randn(len(vocabs.words), 2)
    known = torch.tensor([w in ("fischler", ".") for w in vocabs.words.itos])
    model.keep_pretrained(original, known)
    assert "pretrained" not in model.state_dict() and "has_pretrained" not in model.state_dict()
    tuned = model.words.weight.detach().clone()  # as if fine-tuned away from `original`
    expected = RNNTagger(cfg, num_words=len(vocabs.words), num_chars=5, num_tags=4, word_dim=2)
    expected.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected.words.weight.copy_(torch.where(known[:, None], original, tuned))
    model.train()
    expected.eval()  # with dropout 0, training mode differs only by the swap
    torch.testing.assert_close(model.emissions(b), expected.emissions(b))
    model.eval()  # tagging reads the fine-tuned vectors
    assert not torch.allclose(model.emissions(b), expected.emissions(b))


def test_neighbour_words_pairs_each_state_with_the_word_it_has_not_read():
    from rnner.model import NeighbourWords

    torch.manual_seed(0)
    lm = NeighbourWords(hidden=3, bidirectional=True, vocab=5, dim=4)
    h = torch.randn(2, 4, 6)  # forward states in the first 3 columns, backward in the last 3
    words = torch.tensor([[2, 7, 3, 4], [4, 2, 0, 0]])  # 7 is rarer than the head's 5 ids
    mask = words > 0
    expected = torch.zeros(())
    for b, length in enumerate((4, 2)):
        target = words[b].masked_fill(words[b] >= 5, 1).tolist()  # 7 counts as UNK (1)
        for t in range(length - 1):
            for head, state, word in (
                (lm.next, h[b, t, :3], target[t + 1]),
                (lm.previous, h[b, t + 1, 3:], target[t]),
            ):
                log_probs = head["softmax"].log_prob(head["hidden"](state[None]))[0]
                assert log_probs.exp().sum().item() == pytest.approx(1.0)  # over all 5 ids
                expected = expected - log_probs[word]
    torch.testing.assert_close(lm(h, words, mask), expected)
    forward_only = NeighbourWords(hidden=3, bidirectional=False, vocab=5, dim=4)
    assert forward_only.previous is None and forward_only(h[:, :, :3], words, mask).ndim == 0


def test_language_model_loss_adds_to_the_tagging_loss_and_leaves_tagging_alone():
    from rnner import batching
    from rnner.config import ModelConfig
    from rnner.vocab import build_vocabs

    sents = [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]]
    tags = [["S-ORG", "O", "S-MISC", "O", "O"], ["B-PER", "E-PER"]]
    vocabs = build_vocabs(sents, tags)
    b = batching.make_batch(batching.encode(sents, vocabs, tags), np.arange(2))
    base = dict(embeddings="random", char_encoder="none", casing_dim=0, hidden_size=3)
    torch.manual_seed(0)
    with_lm = RNNTagger(
        ModelConfig(**base, lm_weight=0.5, lm_vocab=4), len(vocabs.words), 5, len(vocabs.tags), 2
    )
    assert with_lm.lm is not None and with_lm.lm.vocab == 6  # PAD, UNK and 4 words
    plain = RNNTagger(ModelConfig(**base), len(vocabs.words), 5, len(vocabs.tags), 2)
    assert plain.lm is None
    plain.load_state_dict(with_lm.state_dict(), strict=False)
    with_lm.eval()
    plain.eval()
    torch.testing.assert_close(with_lm.emissions(b), plain.emissions(b))
    states = with_lm.encode(b)[0]
    expected = plain.loss(b) + 0.5 * with_lm.lm(states, b.words, b.mask) / 2  # 2 sequences
    torch.testing.assert_close(with_lm.loss(b), expected)


def test_singleton_unk_turns_only_singletons_into_unk_and_only_in_training():
    from rnner import batching
    from rnner.config import ModelConfig
    from rnner.vocab import build_vocabs

    sents = [["Fischler", "said", "zzz", "."]]
    vocabs = build_vocabs(sents, [["O"] * 4])
    b = batching.make_batch(batching.encode(sents, vocabs), np.arange(1))
    cfg = ModelConfig(
        embeddings="random",
        char_encoder="none",
        casing_dim=0,
        hidden_size=3,
        dropout=0.0,
        singleton_unk=1.0,
    )
    torch.manual_seed(0)
    model = RNNTagger(cfg, num_words=len(vocabs.words), num_chars=5, num_tags=4, word_dim=2)
    model.keep_singletons(torch.tensor([w in ("fischler", "zzz") for w in vocabs.words.itos]))
    assert "singleton" not in model.state_dict()
    unk = batching.make_batch(
        batching.encode([["Fischler", "said", "zzz", "."]], vocabs), np.arange(1)
    )
    unk.words[0, 0] = unk.words[0, 2] = 1  # what singleton_unk=1 makes of the batch
    model.train()
    with_unk = model.emissions(b)
    model.eval()  # dropout 0: training mode differs only by the replacement
    torch.testing.assert_close(with_unk, model.emissions(unk))
    assert not torch.allclose(model.emissions(b), model.emissions(unk))


def _conv_reference(cnn: CharCNN, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The char CNN as it was written before the matrix product: nn.Conv1d, then the max."""
    x = cnn.dropout(cnn.embed(chars)).transpose(1, 2)
    h = cnn.conv(x)[:, :, : chars.shape[1]]
    pad = torch.arange(chars.shape[1])[None, :] >= lengths[:, None]
    pooled = h.masked_fill(pad.unsqueeze(1), float("-inf")).amax(dim=2)
    return pooled.masked_fill((lengths == 0).unsqueeze(1), 0.0)


@pytest.mark.parametrize("kernel", [3, 4, 1])
@pytest.mark.parametrize("training", [False, True])
def test_char_cnn_matrix_product_equals_the_convolution(kernel, training):
    torch.manual_seed(0)
    cnn = CharCNN(40, 6, 7, kernel, 0.5).train(training)
    lengths = torch.tensor([0, 1, 2, 5, 9, 3])  # row 0: the padding token
    chars = torch.randint(1, 40, (6, 9)) * (torch.arange(9)[None, :] < lengths[:, None])
    out, ref = [], []
    for fn, into in ((cnn, out), (lambda c, n: _conv_reference(cnn, c, n), ref)):
        torch.manual_seed(1)  # the same dropout mask for both
        cnn.zero_grad()
        y = fn(chars, lengths)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        into += [y.detach()] + [p.grad.clone() for p in cnn.parameters()]
    assert out[0].shape == (6, 7) and torch.equal(out[0][0], torch.zeros(7))
    for a, b in zip(out, ref, strict=True):  # float sums in another order: equal to rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("p", [0.5, 0.05, 0.33])
def test_dropout_draws_the_masks_of_nn_dropout_faster(p, threads):
    """Same output, gradient and generator state afterwards as torch's own dropout."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(7, 130, 33, requires_grad=True)  # 30,030 elements: parallel kernels
        got, want = [], []
        for module, into in ((Dropout(p), got), (nn.Dropout(p), want)):
            torch.manual_seed(11)
            y = module(x)
            (grad,) = torch.autograd.grad((y * y).sum(), x)
            into += [y.detach(), grad, torch.rand(4)]
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        assert 0 < (got[0] == 0).float().mean() < 1
    finally:
        torch.set_num_threads(before)


def test_locked_dropout_mask_is_the_bernoulli_draw():
    x = torch.randn(3, 5, 8)
    torch.manual_seed(4)
    y = LockedDropout(0.4)(x)
    torch.manual_seed(4)
    keep = torch.empty(3, 1, 8).bernoulli_(0.6)
    assert torch.equal(y, x * keep / 0.6)


def test_case_shares_count_each_sequence_alone_and_reach_the_encoder():
    from rnner import batching
    from rnner.config import ModelConfig
    from rnner.model import case_shares
    from rnner.vocab import build_vocabs

    # lower: rejects, call; UPPER: EU, I; Title: German, Peter; mIxed: McDonald; the
    # number and the full stop count for nothing
    cased = ["EU", "rejects", "German", "call", "McDonald", "1996", "."]
    sents = [cased, ["Peter", "I"], ["angela", "merkel", "in", "paris"], ["?"]]
    vocabs = build_vocabs(sents, [["O"] * len(s) for s in sents])
    b = batching.make_batch(batching.encode(sents, vocabs), np.arange(4))
    shares = case_shares(b.casing)
    assert shares.shape == (4, 7, 4)
    assert shares[0, 0].tolist() == pytest.approx([2 / 5, 1 / 5, 1 / 5, 1 / 5])
    assert shares[1, 6].tolist() == [0.0, 0.5, 0.5, 0.0]  # padding reads its row's shares
    assert shares[2, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert shares[3, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    alone = batching.make_batch(batching.encode(sents[2:3], vocabs), np.arange(1))
    assert case_shares(alone.casing)[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]

    base = dict(embeddings="random", char_encoder="none", casing_dim=0, hidden_size=3)
    torch.manual_seed(0)
    model = RNNTagger(ModelConfig(**base, case_shares=True), len(vocabs.words), 5, 3, 2)
    assert model.encoder.forward_rnns[0].input_size == 2 + 4
    model.eval()
    features = model.token_features(b)
    torch.testing.assert_close(features[:, :, 2:], shares)
    # lower-casing a sentence changes what every one of its tokens reads
    lowered = batching.make_batch(
        batching.encode([[t.lower() for t in cased]], vocabs), np.arange(1)
    )
    assert model.token_features(lowered)[0, 0, 2:].tolist() == [1.0, 0.0, 0.0, 0.0]
