import pytest
import torch

from zonkey.splitter import force_coverage, make_windows, sample_boundaries
from zonkey.stitcher import place


def _random_split(seed, b=3, n=40, s=6, d=5):
    g = torch.Generator().manual_seed(seed)
    beta = torch.rand(b, n, generator=g) * 0.4
    lengths = torch.tensor([n, n - 7, 11])[:b]
    bos = force_coverage(sample_boundaries(beta, lengths, generator=g), lengths, s)
    x = torch.randn(b, n, d, generator=g)
    return x, beta, bos, lengths, s


def test_forced_coverage_leaves_no_long_gap_and_no_uncovered_position():
    for seed in range(5):
        x, beta, bos, lengths, s = _random_split(seed)
        for i in range(len(lengths)):
            pos = bos[i].nonzero().flatten().tolist() + [int(lengths[i])]
            assert pos[0] == 0
            assert max(b - a for a, b in zip(pos, pos[1:])) <= s
            assert not bos[i, int(lengths[i]) :].any()


def test_share_weights_sum_to_one_and_nothing_past_the_end():
    for seed in range(5):
        x, beta, bos, lengths, s = _random_split(seed)
        w = make_windows(x, beta, bos, lengths, s)
        n = x.shape[1]
        tot = torch.zeros(len(lengths), n + s)
        pos = w.start[:, None] + torch.arange(s)
        tot.index_put_((w.doc[:, None].expand_as(pos), pos), w.share * w.valid, accumulate=True)
        for i, length in enumerate(lengths.tolist()):
            assert torch.allclose(tot[i, :length], torch.ones(length), atol=1e-5)
            assert tot[i, length:].abs().max() == 0
        assert (w.logp.exp()[~w.valid] < 1e-5).all()  # existence ends at the document end


def test_stitcher_rebuilds_document_from_ground_truth_windows_and_offsets():
    for seed in range(4):
        x, beta, bos, lengths, s = _random_split(seed)
        w = make_windows(x, beta, bos, lengths, s)
        for i, length in enumerate(lengths.tolist()):
            sel = w.doc == i
            starts = w.start[sel]
            offsets = torch.cat([starts[1:] - starts[:-1], torch.tensor([length]) - starts[-1:]])
            rebuilt = place(w.x[sel], offsets)
            assert torch.equal(rebuilt, x[i, :length])


def _direct_local_attention(q, k, v, real, pos, h):
    """The BOS head's local attention written per query window (the definition)."""
    import math

    import torch.nn.functional as F

    b, n, d = q.shape
    w, e = pos.shape[0], d // h
    half = w // 2
    q = q.view(b, n, h, e) + pos[half]
    kp = F.pad(k, (0, 0, half, half)).unfold(1, w, 1).reshape(b, n, h, e, w) + pos.t()
    vp = F.pad(v, (0, 0, half, half)).unfold(1, w, 1).reshape(b, n, h, e, w)
    kreal = F.pad(real, (half, half)).unfold(1, w, 1)  # (b, n, w)
    att = (q[..., None] * kp).sum(-2) / math.sqrt(e)
    att = att.clamp(-60, 60).masked_fill(~kreal[:, :, None], -1e9).softmax(-1)
    return (att[:, :, :, None] * vp).sum(-1).reshape(b, n, d)


def test_blockwise_local_attention_equals_the_per_query_window():
    from zonkey.attention import sinusoid_table
    from zonkey.splitter import local_attention

    g = torch.Generator().manual_seed(0)
    # block smaller, equal and larger than the sequence; windows shorter and longer than a block
    cases = ((3, 70, 16, 2, 9, 32), (2, 64, 16, 4, 17, 32), (2, 5, 8, 2, 17, 4), (1, 33, 32, 4, 5, 8))
    for b, n, d, h, w, block in cases:
        q, k, v = (torch.randn(b, n, d, generator=g, requires_grad=True) for _ in range(3))
        lengths = torch.randint(1, n + 1, (b,), generator=g)
        real = torch.arange(n)[None] < lengths[:, None]
        pos = sinusoid_table(w, d // h)
        ref = _direct_local_attention(q, k, v, real, pos, h)
        out = local_attention(q, k, v, real, pos, h, block=block)
        m = real[..., None]
        assert torch.allclose(out * m, ref * m, atol=1e-5)
        g_ref = torch.autograd.grad((ref * m).square().sum(), (q, k, v))
        g_out = torch.autograd.grad((out * m).square().sum(), (q, k, v))
        for a, c in zip(g_ref, g_out):
            assert torch.allclose(a, c, atol=1e-4)


def test_splitter_regularizers_do_not_depend_on_the_padding_after_a_document():
    from zonkey.splitter import splitter_regularizers

    g = torch.Generator().manual_seed(1)
    beta = torch.rand(3, 40, generator=g) * 0.5
    lengths = torch.tensor([40, 25, 7])  # the first fills its buffer
    terms, r = splitter_regularizers(beta, lengths, 16, 4, 0.25)
    padded = torch.nn.functional.pad(beta, (0, 30), value=0.3)  # arbitrary values past the ends
    terms2, r2 = splitter_regularizers(padded, lengths, 16, 4, 0.25)
    assert torch.allclose(r, r2)
    for key in terms:
        assert torch.allclose(terms[key], terms2[key], atol=1e-6), key
    assert terms["short"] > 0 and terms["patch"] > 0


def test_short_segment_floor_is_n_latents_unless_short_len_sets_it():
    from zonkey.config import LevelConfig
    from zonkey.splitter import splitter_regularizers

    assert LevelConfig(n_latents=4).min_segment == 4
    assert LevelConfig(n_latents=4, short_len=3).min_segment == 3
    with pytest.raises(ValueError, match="short_len=17"):
        LevelConfig(short_len=17)
    # segments of exactly 3 positions (BOS at 0, 3, 6, ...): free under a floor of 3, penalized under 4
    n = 30
    beta = torch.full((1, n), 1e-6)
    beta[0, ::3] = 1.0
    lengths = torch.tensor([n])
    s3 = splitter_regularizers(beta, lengths, 16, 3, 0.25)[0]["short"]
    s4 = splitter_regularizers(beta, lengths, 16, 4, 0.25)[0]["short"]
    assert s3 < 1e-4 and s4 > 0.9


def test_architecture_leaves_out_loss_settings():
    from zonkey.config import LevelConfig

    a = LevelConfig()
    assert a.architecture() == LevelConfig(short_len=3, target_rate=0.25, compression_penalty=0.1).architecture()
    assert a.architecture() != LevelConfig(n_latents=2).architecture()
    assert "d_model" in a.architecture() and "short_len" not in a.architecture()
