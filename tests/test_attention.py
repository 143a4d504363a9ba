import torch
import torch.nn.functional as F

from zonkey.attention import existence_bias, log_existence


def _attn(q, k, v, bias=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def test_log_existence_is_prefix_survival():
    beta = torch.tensor([[1.0, 0.5, 0.5, 0.0]])
    p = log_existence(beta).exp()
    assert torch.allclose(p, torch.tensor([[1.0, 0.5, 0.25, 0.25]]), atol=1e-5)


def test_all_ones_existence_equals_plain_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    logp = torch.zeros(2, 7)  # existence 1 everywhere
    out = _attn(q, k, v, existence_bias(logp))
    assert torch.allclose(out, _attn(q, k, v), atol=1e-6)


def test_step_existence_equals_hard_masking_of_later_keys():
    g = torch.Generator().manual_seed(1)
    t, cut = 8, 5
    q, k, v = (torch.randn(1, 2, t, 4, generator=g) for _ in range(3))
    beta = torch.zeros(1, t)
    beta[0, cut] = 1.0  # a certain BOS at `cut`: keys from there on do not exist
    out = _attn(q, k, v, existence_bias(log_existence(beta)))
    hard = torch.zeros(1, 1, t, t)
    hard[..., cut:] = float("-inf")
    ref = _attn(q, k, v, hard)
    assert torch.allclose(out[..., :cut, :], ref[..., :cut, :], atol=1e-5)


def test_bos_gradient_only_through_straddling_keys():
    """d bias / d beta_m is non-zero only for pairs q < m <= k: query m..end or keys < m give none."""
    g = torch.Generator().manual_seed(2)
    t, m = 6, 3
    q, k, v = (torch.randn(1, 1, t, 4, generator=g) for _ in range(3))
    beta = torch.full((1, t), 0.3, requires_grad=True)
    out = _attn(q, k, v, existence_bias(log_existence(beta)))
    # rows of queries at or after m cannot depend on beta_m
    (gq_late,) = torch.autograd.grad(out[..., m:, :].sum(), beta, retain_graph=True)
    (g_all,) = torch.autograd.grad(out[..., :m, :].sum(), beta)
    assert g_all[0, m].abs() > 1e-3
    assert gq_late[0, m].abs() < 1e-6  # zero up to float rounding of the cumsum
    # if only keys before m existed, beta_m would not matter: check the bias directly
    bias = existence_bias(log_existence(beta))[0, 0]
    (gb,) = torch.autograd.grad(bias[:m, :m].sum(), beta)
    assert gb[0, m] == 0


def test_key_mask_blocks_padding_and_rows_stay_finite():
    logp = torch.zeros(1, 4)
    mask = torch.tensor([[True, True, False, False]])
    bias = existence_bias(logp, mask)
    assert torch.isinf(bias[0, 0, 0, 2]) and torch.isfinite(bias[0, 0, 2]).all()


def test_encoder_rows_equal_the_same_rows_of_the_full_output():
    """`rows` computes only some queries in the last block; values and gradients equal the full
    stack's rows. Float64, but the existence bias is float32 and CPU scaled-dot-product attention
    may take another kernel path for another query count: on some CPUs the two agree to about
    4e-8 (measured), so the tolerance is 1e-6; a wrong row differs by orders of magnitude more."""
    from zonkey.attention import Encoder

    torch.manual_seed(3)
    enc = Encoder(16, 4, n_layers=2).double()
    x = torch.randn(3, 9, 16, dtype=torch.float64, requires_grad=True)
    logp = log_existence(torch.rand(3, 9, dtype=torch.float64) * 0.5)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    for rows in (slice(0, 4), slice(4, None)):
        full, full_res = enc(x, logp, mask, return_residual=True)
        part, part_res = enc(x, logp, mask, return_residual=True, rows=rows)
        assert part.shape == full[:, rows].shape
        torch.testing.assert_close(part, full[:, rows], rtol=0, atol=1e-6)
        torch.testing.assert_close(part_res, full_res[:, rows], rtol=0, atol=1e-6)
        (g_full,) = torch.autograd.grad(full[:, rows].square().sum(), x)
        (g_part,) = torch.autograd.grad(part.square().sum(), x)
        torch.testing.assert_close(g_part, g_full, rtol=0, atol=1e-6)
