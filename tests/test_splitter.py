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
