"""The tagger network: word embedding (+ casing) (+ character encoder) -> recurrent layers ->
linear -> softmax or CRF. Plain `nn.Module`s; `RNNTagger` reads top to bottom."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from .batching import CASING, Batch
from .config import ModelConfig
from .crf import CRF, label_channel
from .lexicon import CODES

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def keep_mask(shape: Sequence[int], keep: float, like: torch.Tensor) -> torch.Tensor:
    """`like.new_empty(shape).bernoulli_(keep)`, bit for bit and leaving the random generator
    in the same state, about four times faster on the CPU.

    torch's CPU `bernoulli_` with a scalar chance draws one float64 uniform per element from
    the generator and compares it with the chance, one element at a time; `torch.rand` in
    float64 draws the same numbers with a vectorized kernel (tests/test_model.py checks the
    equality). Dropout masks were a fifth of a CPU training step. Elsewhere, `bernoulli_`."""
    if like.device.type != "cpu":
        return like.new_empty(shape).bernoulli_(keep)
    draws = torch.rand(tuple(shape), dtype=torch.float64, device=like.device)
    return (draws < keep).to(like.dtype)


class Dropout(nn.Dropout):
    """`nn.Dropout`, with the same masks, output and gradient, drawn by `keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.p >= 1 or not x.is_contiguous():
            return super().forward(x)
        return x * keep_mask(x.shape, 1 - self.p, x).div_(1 - self.p)


class CharCNN(nn.Module):
    """Ma & Hovy (2016): character embeddings, one convolution, max over positions.

    The convolution (`conv` holds its weights) runs as one matrix product over every window
    of every token in the batch, and its bias is added after the max, which it does not
    change: on the CPU a few hundred short words are far below the size where the
    convolution kernel pays for its setup (its backward was 7% of a training step, the
    product is a fraction of that; docs/performance.md).
    """

    def __init__(self, num_chars: int, dim: int, filters: int, kernel: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.dropout = Dropout(dropout)
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)
        self.out_dim = filters

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(chars))  # [U, L, dim]
        units, width, dim = x.shape
        kernel = self.conv.weight.shape[2]
        side = kernel // 2
        padded = nn.functional.pad(x, (0, 0, side, side))
        windows = padded.unfold(1, kernel, 1)[:, :width]  # [U, L, dim, kernel]
        weight = self.conv.weight.reshape(self.out_dim, dim * kernel)
        h = (windows.reshape(units * width, dim * kernel) @ weight.t()).view(units, width, -1)
        pad = torch.arange(width, device=chars.device)[None, :] >= lengths[:, None]
        assert self.conv.bias is not None
        pooled = h.masked_fill(pad.unsqueeze(2), float("-inf")).amax(dim=1) + self.conv.bias
        return pooled.masked_fill((lengths == 0).unsqueeze(1), 0.0)  # the padding token


class CharLSTM(nn.Module):
    """Lample et al. (2016): a BiLSTM over characters; the final states of both directions.

    Each direction is a one-directional LSTM run densely over right-padded characters, the
    backward one over each token reversed within its length (`reverse_padded`): the states
    packed sequences give, at the dense kernel's speed. In large batches, tokens of up to
    `SHORT` characters (most of them) run apart from the longer ones, so they do not pay for
    the batch's longest. On the CPU, a few tokens (a sentence being tagged) take one packed
    bidirectional call instead, which is fewer operations at that size, and so does tagging:
    as fast there, and the dense kernel's memory grows with every new batch shape it meets
    (about 34 MiB per 1.25 MiB of text streamed through `rnner predict`).
    """

    SHORT = 8
    SPLIT_FROM = 64  # distinct tokens in the batch

    def __init__(self, num_chars: int, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(num_chars, dim, padding_idx=0)
        self.dropout = Dropout(dropout)
        self.forward_rnn = nn.LSTM(dim, hidden // 2, batch_first=True)
        self.backward_rnn = nn.LSTM(dim, hidden // 2, batch_first=True)
        self.out_dim = 2 * (hidden // 2)
        # The packed path's module: `functional_call` runs it with the two directions' weights
        # (its own are never used); in a list, so it is no submodule and nothing of it is saved.
        self._bidirectional = [nn.LSTM(dim, hidden // 2, batch_first=True, bidirectional=True)]

    def _final_states(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.out_dim // 2)
        fwd, _ = self.forward_rnn(x)
        bwd, _ = self.backward_rnn(reverse_padded(x, lengths))
        return torch.cat([fwd.gather(1, last), bwd.gather(1, last)], dim=2).squeeze(1)

    def _packed_final_states(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same through one packed bidirectional call: fewer operations for a few tokens."""
        weights: dict[str, torch.Tensor] = dict(self.forward_rnn.named_parameters())
        weights |= {name + "_reverse": p for name, p in self.backward_rnn.named_parameters()}
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = functional_call(self._bidirectional[0], weights, (packed,))
        return torch.cat([h[0], h[1]], dim=1)

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(chars))
        lengths = lengths.clamp(min=1)  # the padding token: one padding character
        if x.device.type == "cpu" and (len(lengths) < self.SPLIT_FROM or not self.training):
            return self._packed_final_states(x, lengths)
        short = lengths <= self.SHORT
        if bool(short.all()) or not bool(short.any()):
            return self._final_states(x, lengths)
        out = x.new_empty(x.shape[0], self.out_dim)
        for rows, width in ((short, self.SHORT), (~short, x.shape[1])):
            index = rows.nonzero().squeeze(1)
            out = out.index_copy(0, index, self._final_states(x[index, :width], lengths[index]))
        return out

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Earlier runs hold one bidirectional nn.LSTM named `rnn`: its weights are the two
        # directions' here, under other names.
        for key in [k for k in state_dict if k.startswith(prefix + "rnn.")]:
            name = key[len(prefix + "rnn.") :]
            target = "backward_rnn." if name.endswith("_reverse") else "forward_rnn."
            state_dict[prefix + target + name.removesuffix("_reverse")] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length, leaving the padding where it is.

    This lets the backward direction run as a dense forward pass over padded input with
    exactly the result of packed sequences, at the speed of the dense kernel.
    """
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class LockedDropout(nn.Module):
    """Dropout whose mask is drawn once per sequence and reused at every time step of it."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        if not self.training or self.p == 0:
            return x
        keep = keep_mask((x.shape[0], 1, x.shape[2]), 1 - self.p, x)
        return x * keep / (1 - self.p)


def make_dropout(p: float, locked: bool) -> nn.Module:
    return LockedDropout(p) if locked else Dropout(p)


CASE_SHARES = 4  # lower, upper, title, mixed: CASING rows 1 to 4


def case_shares(casing: torch.Tensor) -> torch.Tensor:
    """At each position [B, T, 4], the shares of its sequence's alphabetic words that are
    lower-case, UPPER, Title and mIxed (all 0 in a sequence without one; padding, casing
    class 0, counts for nothing). Only the sequence's own words count, so a text's tags
    never depend on what shares its batch."""
    onehot = nn.functional.one_hot(casing, len(CASING))[:, :, 1 : 1 + CASE_SHARES]
    counts = onehot.sum(1).float()  # [B, 4]
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    return shares.unsqueeze(1).expand(-1, casing.shape[1], -1)


def repeat_mean(h: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """At each position, the mean of `h` [B, T, D] over the positions of the same sequence
    whose `keys` [B, T] are equal; padding (`mask` False) neither counts nor gets a value."""
    ids = keys + torch.arange(keys.shape[0], device=keys.device)[:, None] * (keys.max() + 1)
    groups, inverse = torch.unique(ids[mask], return_inverse=True)
    real = h[mask]
    sums = real.new_zeros(len(groups), h.shape[2]).index_add(0, inverse, real)
    counts = torch.bincount(inverse, minlength=len(groups)).to(h.dtype)
    return h.new_zeros(h.shape).masked_scatter(
        mask.unsqueeze(2), sums[inverse] / counts[inverse, None]
    )


class Encoder(nn.Module):
    """Stacked (bi)directional RNN/GRU/LSTM over padded, right-aligned-padding batches."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        locked: bool = False,
    ):
        super().__init__()
        rnn = CELLS[cell]
        self.bidirectional = bidirectional
        self.in_dim = input_size
        self.forward_rnns = nn.ModuleList()
        self.backward_rnns = nn.ModuleList()
        size = input_size
        for _ in range(layers):
            self.forward_rnns.append(rnn(size, hidden, batch_first=True))
            if bidirectional:
                self.backward_rnns.append(rnn(size, hidden, batch_first=True))
            size = hidden * (2 if bidirectional else 1)
        self.dropout = make_dropout(dropout, locked)
        self.out_dim = size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.layer_states(x, lengths)[-1]

    def layer_states(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output [B, T, out_dim]: forward states, then backward ones."""
        states = []
        for i, fwd in enumerate(self.forward_rnns):
            if i > 0:
                x = self.dropout(x)
            out, _ = fwd(x)
            if self.bidirectional:
                back, _ = self.backward_rnns[i](reverse_padded(x, lengths))
                out = torch.cat([out, reverse_padded(back, lengths)], dim=2)
            states.append(out)
            x = out
        return states


class NeighbourWords(nn.Module):
    """Rei (2017)'s auxiliary language model: the forward states of the first recurrent layer
    predict the next word, the backward states the previous one (neither has read the word
    it predicts). Targets are word ids, which run from the most frequent training word down;
    ids of `vocab` and above (rarer words) count as UNK. An adaptive softmax (Grave et al.
    2017) keeps the `HEAD` most frequent ids in its head, so that most tokens never pay for
    the whole vocabulary.
    """

    HEAD = 2000

    def __init__(self, hidden: int, bidirectional: bool, vocab: int, dim: int):
        super().__init__()
        self.hidden = hidden
        self.vocab = vocab

        def head() -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    "hidden": nn.Sequential(nn.Linear(hidden, dim), nn.Tanh()),
                    "softmax": nn.AdaptiveLogSoftmaxWithLoss(
                        dim, vocab, cutoffs=[min(self.HEAD, vocab // 2)], div_value=4.0
                    ),
                }
            )

        self.next = head()
        self.previous = head() if bidirectional else None

    def forward(self, h: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of both directions' words over every real pair."""
        targets = words.masked_fill(words >= self.vocab, 1)  # 1 is UNK
        pairs = [(self.next, h[:, :-1, : self.hidden], targets[:, 1:], mask[:, 1:])]
        if self.previous is not None:
            pairs.append((self.previous, h[:, 1:, self.hidden :], targets[:, :-1], mask[:, 1:]))
        total = h.new_zeros(())
        for head, states, target, real in pairs:
            # mask[:, t + 1] is true only where both t and t + 1 are real tokens
            out = head["softmax"](head["hidden"](states[real]), target[real])
            total = total - out.output.sum()
        return total


class RNNTagger(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        num_words: int,
        num_chars: int,
        num_tags: int,
        word_dim: int,
        constraints: tuple[list, list, list] | None = None,
        lexicon_types: int = 0,
    ):
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(num_words, word_dim, padding_idx=0)
        size = word_dim
        self.casing = None
        if cfg.casing_dim:
            self.casing = nn.Embedding(len(CASING), cfg.casing_dim, padding_idx=0)
            size += cfg.casing_dim
        if cfg.case_shares:
            size += CASE_SHARES
        self.chars: nn.Module | None = None
        if cfg.char_encoder == "cnn":
            self.chars = CharCNN(
                num_chars, cfg.char_dim, cfg.char_hidden, cfg.char_kernel, cfg.dropout
            )
        elif cfg.char_encoder == "lstm":
            self.chars = CharLSTM(num_chars, cfg.char_dim, cfg.char_hidden, cfg.dropout)
        if self.chars is not None:
            size += self.chars.out_dim
        self.lexicon: nn.Embedding | None = None
        if cfg.lexicon:  # one small embedding per (lexicon type, match code)
            if not lexicon_types:
                raise ValueError("model.lexicon is set: give the lexicon's number of types")
            self.lexicon = nn.Embedding(lexicon_types * CODES, cfg.lexicon_dim)
            size += lexicon_types * cfg.lexicon_dim
        self.dropout = make_dropout(cfg.dropout, cfg.locked_dropout)
        self.encoder = Encoder(
            cfg.cell,
            size,
            cfg.hidden_size,
            cfg.layers,
            cfg.bidirectional,
            cfg.dropout,
            cfg.locked_dropout,
        )
        size = self.encoder.out_dim * (2 if cfg.repeat_pooling else 1)
        self.pooled: Encoder | None = None
        if cfg.pool_layers:
            self.pooled = Encoder(
                cfg.cell,
                size,
                cfg.hidden_size,
                cfg.pool_layers,
                cfg.bidirectional,
                cfg.dropout,
                cfg.locked_dropout,
            )
            size = self.pooled.out_dim
        self.proj = nn.Linear(size, num_tags)
        self.lm: NeighbourWords | None = None
        if cfg.lm_weight > 0:
            self.lm = NeighbourWords(
                cfg.hidden_size, cfg.bidirectional, min(cfg.lm_vocab + 2, num_words), cfg.lm_dim
            )
        self.crf = CRF(num_tags, *(constraints or ())) if cfg.output == "crf" else None
        if cfg.freeze_embeddings:
            self.words.weight.requires_grad_(False)
        # For pretrained_dropout: the original vectors and which rows have one. Not saved: a
        # trained model never needs them, and training (or resuming) rebuilds them.
        self.pretrained: torch.Tensor | None
        self.has_pretrained: torch.Tensor | None
        self.register_buffer("pretrained", None, persistent=False)
        self.register_buffer("has_pretrained", None, persistent=False)
        # For singleton_unk: which rows are words seen once in train. Not saved either.
        self.singleton: torch.Tensor | None
        self.register_buffer("singleton", None, persistent=False)
        # The share of the loss that follows the teachers' marginals when a batch carries
        # them (train.distill_weight; set by training, which alone gives batches soft targets).
        self.distill_weight = 0.0

    def keep_pretrained(self, vectors: torch.Tensor, known: torch.Tensor) -> None:
        """Keep the original vectors, and which rows have one, for `pretrained_dropout`."""
        device = self.words.weight.device
        self.pretrained = vectors.to(device, self.words.weight.dtype).clone()
        self.has_pretrained = known.to(device, torch.bool)

    def keep_singletons(self, once: torch.Tensor) -> None:
        """Mark the rows of words seen once in train, for `singleton_unk`."""
        self.singleton = once.to(self.words.weight.device, torch.bool)

    def emissions(self, b: Batch) -> torch.Tensor:
        return self.readout(self.encode(b)[-1], b)

    def encode(self, b: Batch) -> list[torch.Tensor]:
        """The recurrent encoder's states, layer by layer, from the token features."""
        return self.encoder.layer_states(self.token_features(b), b.lengths)

    def char_features(self, b: Batch) -> torch.Tensor | None:
        """The character encoder's vector for each distinct token of the batch (None
        without a character encoder)."""
        return self.chars(b.chars, b.char_lengths) if self.chars is not None else None

    def token_features(self, b: Batch, per_type: torch.Tensor | None = None) -> torch.Tensor:
        """The recurrent encoder's input [B, T, size]: word vectors (with word dropout,
        singleton UNK and pretrained dropout in training), casing and character features
        (`per_type`, computed here unless given), dropped out."""
        words = b.words
        if self.training and self.cfg.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.cfg.word_dropout
            words = words.masked_fill(drop & b.mask, 1)  # 1 is UNK
        if self.training and self.cfg.singleton_unk > 0 and self.singleton is not None:
            drop = torch.rand(words.shape, device=words.device) < self.cfg.singleton_unk
            words = words.masked_fill(drop & self.singleton[words] & b.mask, 1)
        parts = [self.words(words)]
        if self.training and self.cfg.pretrained_dropout > 0 and self.pretrained is not None:
            assert self.has_pretrained is not None
            swap = torch.rand(words.shape, device=words.device) < self.cfg.pretrained_dropout
            swap = (swap & self.has_pretrained[words]).unsqueeze(2)
            parts[0] = torch.where(swap, self.pretrained[words], parts[0])
        if self.casing is not None:
            parts.append(self.casing(b.casing))
        if self.cfg.case_shares:
            parts.append(case_shares(b.casing).to(parts[0].dtype))
        if self.lexicon is not None:
            assert b.lexicon is not None, "a model with a lexicon needs encoded match codes"
            offsets = torch.arange(b.lexicon.shape[2], device=b.lexicon.device) * CODES
            vectors = self.lexicon(b.lexicon + offsets)  # [B, T, types, dim]
            parts.append(vectors.flatten(2))
        if self.chars is not None:
            if per_type is None:
                per_type = self.char_features(b)  # once per distinct token
            assert per_type is not None
            parts.append(per_type[b.char_index])
        return self.dropout(torch.cat(parts, dim=2))

    def readout(self, h: torch.Tensor, b: Batch) -> torch.Tensor:
        """Tag scores from the recurrent states (with repeat pooling, from their pools too)."""
        if self.cfg.repeat_pooling:
            # char_index: the same row for the same spelling; lower: the same up to case
            keys = b.lower if self.cfg.repeat_key == "lowercase" else b.char_index
            h = torch.cat([h, repeat_mean(h, keys, b.mask)], dim=2)
            if self.pooled is not None:
                h = self.pooled(self.dropout(h), b.lengths)
        return self.proj(self.dropout(h))

    def loss(self, b: Batch) -> torch.Tensor:
        """Mean over sentences of the CRF negative log-likelihood, or of the summed token
        cross-entropy, so that learning rates mean the same for both heads; with soft
        targets, mixed with the posterior loss by `distill_weight`; plus the auxiliary
        language model's summed loss, weighted, when there is one."""
        states = self.encode(b)
        em = self.readout(states[-1], b)
        total = self.output_loss(em, b)
        w = self.distill_weight
        if b.soft is not None and w > 0:  # weight 0 computes no marginals
            total = (1 - w) * total + w * self.posterior_loss(em, b)
        if self.lm is not None:
            total = total + self.lm_loss(states[0], b)
        return total / em.shape[0]

    def output_loss(self, em: torch.Tensor, b: Batch) -> torch.Tensor:
        """The output layer's loss summed over the batch: CRF negative log-likelihood, or
        token cross-entropy (through the noisy channel of `b.trust` when it is given)."""
        assert b.tags is not None
        if self.crf is not None:
            return self.crf.nll(em, b.tags, b.mask, b.trust)
        if b.trust is not None:  # the CRF's noisy channel, token by token
            channel = label_channel(b.tags, b.trust, em.shape[2])
            nll = -torch.logsumexp(em.log_softmax(2) + channel, dim=2)
            return (nll * b.mask).sum()
        ce = nn.functional.cross_entropy(em.transpose(1, 2), b.tags, reduction="none")
        return (ce * b.mask).sum()

    def posterior_loss(self, em: torch.Tensor, b: Batch) -> torch.Tensor:
        """Token-level distillation (Wang et al. 2020, posterior form): the cross-entropy of
        the model's tag marginals (the CRF's by forward-backward, or the softmax) against the
        soft targets `b.soft`, summed over tokens and the batch."""
        assert b.soft is not None
        crf = self.crf
        log_p = crf.log_marginals(em, b.mask) if crf is not None else em.log_softmax(2)
        return -(b.soft * log_p * b.mask.unsqueeze(2)).sum()

    def lm_loss(self, first: torch.Tensor, b: Batch) -> torch.Tensor:
        """The auxiliary language model's weighted loss from the first layer's states."""
        assert self.lm is not None
        return self.cfg.lm_weight * self.lm(self.dropout(first), b.words, b.mask)

    @torch.no_grad()
    def decode(self, b: Batch) -> torch.Tensor:
        em = self.emissions(b)
        if self.crf is not None:
            return self.crf.decode(em, b.mask)
        return em.argmax(dim=2)


# --- FLOPs -----------------------------------------------------------------------------------
# An analytic count of the network above, kept beside it so that a change of architecture
# changes its count in the same place (`rnner bench` turns it into a utilization).

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight matrices per recurrent cell


def model_flops(
    m: ModelConfig,
    word_dim: int,
    num_tags: int,
    char_positions_per_token: float,
    lexicon_types: int = 0,
) -> dict[str, float]:
    """Forward FLOPs per token (2 per multiply-add), by part; training counted as 3x forward.

    Embedding lookups, dropout, gathers and elementwise gate activations count as free.
    `char_positions_per_token` is how many character positions the character encoder runs
    over per token of the batch (it runs once per distinct token, over the padded width for
    the CNN, over the real characters for the packed LSTM); `char_positions` measures it.
    """
    char = 0.0
    size = word_dim + m.casing_dim + (lexicon_types * m.lexicon_dim if m.lexicon else 0)
    size += CASE_SHARES if m.case_shares else 0
    if m.char_encoder == "cnn":
        char = char_positions_per_token * 2 * m.char_dim * m.char_hidden * m.char_kernel
        size += m.char_hidden
    elif m.char_encoder == "lstm":
        h = m.char_hidden // 2
        char = char_positions_per_token * 2 * (GATES["lstm"] * (m.char_dim * h + h * h) * 2)
        size += 2 * h
    directions = 2 if m.bidirectional else 1
    rnn = 0.0
    for layer in range(m.layers + m.pool_layers):  # validate: pool layers need pooling
        if layer == m.layers:  # the pool layers read each state beside its pool
            size *= 2
        rnn += directions * GATES[m.cell] * (size * m.hidden_size + m.hidden_size**2) * 2
        size = directions * m.hidden_size
    pooled_proj = m.repeat_pooling and not m.pool_layers
    proj = 2.0 * size * num_tags * (2 if pooled_proj else 1)
    # CRF forward algorithm: per token a [K, K] add, exp and sum; softmax: about 3 per tag.
    output = 3.0 * num_tags**2 if m.output == "crf" else 3.0 * num_tags
    forward = char + rnn + proj + output
    return {
        "char": char,
        "rnn": rnn,
        "proj": proj,
        "output": output,
        "forward": forward,
        "train": 3 * forward,
    }


def char_positions(batches: Sequence[Batch], char_encoder: str) -> float:
    """Character positions the char encoder processes per token, over these batches."""
    tokens = sum(b.num_tokens for b in batches)
    if char_encoder == "cnn":
        done = sum(b.chars.numel() for b in batches)
    elif char_encoder == "lstm":
        done = sum(int(b.char_lengths.clamp(min=1).sum()) for b in batches)
    else:
        return 0.0
    return done / max(tokens, 1)
