import torch

from model.ladder import cosine_alpha_bars, sub_ladder, uniform_ladder


def test_uniform_ladder_statistics():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((2000, 1, 28, 28), generator=g)
    a = 0.3
    levels = uniform_ladder(x0, steps=12, a=a, generator=g)
    assert levels.shape == (13, 2000, 1, 28, 28)
    assert torch.equal(levels[0], x0)
    assert levels.min() >= 0 and levels.max() <= 1
    # E[x_{k+1}] = (E[x_k] + a/2) / (1 + a): the mean climbs to the fixed point 0.5
    mean = x0.mean().item()
    for k in range(12):
        mean = (mean + a / 2) / (1 + a)
        assert abs(levels[k + 1].mean().item() - mean) < 2e-3
    # aligned pairs: each level is its predecessor plus bounded noise, image by image
    diff = levels[1] * (1 + a) - levels[0]
    assert diff.min() >= -1e-6 and diff.max() <= a + 1e-6


def test_ladder_is_reproducible_under_a_seed():
    x0 = torch.rand((4, 1, 28, 28))
    a = uniform_ladder(x0, 3, 0.3, torch.Generator().manual_seed(5))
    b = uniform_ladder(x0, 3, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_cosine_alpha_bars_and_sub_ladder():
    ab = cosine_alpha_bars(8)
    assert ab.shape == (9,) and ab[0] == 1 and ab[-1] < 1e-3
    assert (ab[1:] < ab[:-1]).all()
    assert sub_ladder(8, 8) == list(range(8, -1, -1))
    assert sub_ladder(8, 4) == [8, 6, 4, 2, 0]
    assert sub_ladder(8, 1) == [8, 0]
    for steps in range(1, 9):
        idx = sub_ladder(8, steps)
        assert idx[0] == 8 and idx[-1] == 0 and len(idx) == steps + 1
        assert all(a > b for a, b in zip(idx, idx[1:]))
