"""The original recipe: assembly, freezing, stages end to end, resume, save/load, rendering."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.api import OriginalChain
from model.errors import CheckpointError
from model.io import load_weights, save_weights
from model.networks import Connection, Denoiser
from model.original import OriginalChains, assembly_indices
from model.render import compose_row, row_width
from train.config import make_config
from train.data import DataError, load_mnist
from train.loop import Fit, ResumeError
from train.original import DigitRun, train_original

TINY = dict(width=0.0625, per_digit=16, epochs1=1, epochs2=1, epochs4=1, epochs5=1, batch_size=8, grid=2)


def test_networks_shapes_and_range():
    x = torch.randn(3, 1, 28, 28)
    for net in (Denoiser(0.0625), Connection(0.0625), Denoiser(1.0)):
        y = net.eval()(x)
        assert y.shape == (3, 1, 28, 28) and y.min() >= 0 and y.max() <= 1


def test_faithful_widths_match_the_description():
    convs = [m for m in Denoiser(1.0).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [m.out_channels for m in convs] == [256, 128, 64, 128, 128, 128, 128, 1]
    assert [m.kernel_size for m in convs if isinstance(m, torch.nn.ConvTranspose2d)] == [(4, 4), (4, 4)]
    convs = [m for m in Connection(1.0).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [m.out_channels for m in convs] == [128, 128, 128, 1]


def test_every_second_assembly():
    order = assembly_indices("every_second", 12)
    assert order == [(k, i) for i in (0, 2, 4, 6, 8, 10) for k in ("denoiser", "connection")]
    assert len(order) == 12
    assert assembly_indices("all", 12)[-1] == ("denoiser", 11) and len(assembly_indices("all", 12)) == 23
    with pytest.raises(ValueError, match="Unknown assembly"):
        assembly_indices("some", 12)


def test_digit_run_blocks_are_the_trained_pieces():
    cfg = replace(make_config("original", "smoke"), **TINY)
    run = DigitRun(
        "3", torch.zeros(4, 28, 28, dtype=torch.uint8), cfg, __import__("pathlib").Path("/nonexistent"), "cpu", False
    )
    assert [id(b) for b in run.blocks] == [id(run.den[i] if k == "denoiser" else run.con[i]) for k, i in run.order]
    assert [id(b) for b in run.blocks][::2] == [id(run.den[i]) for i in (0, 2, 4, 6, 8, 10)]


def _params(mods):
    return [p.detach().clone() for m in mods for p in m.parameters()]


def _changed(before, mods):
    return any(not torch.equal(a, b) for a, b in zip(before, _params(mods)))


def test_stage4_trains_only_connections_and_stage5_everything(tmp_path):
    cfg = replace(make_config("original", "smoke"), **TINY)
    imgs = torch.randint(0, 255, (16, 28, 28), dtype=torch.uint8)
    run = DigitRun("1", imgs, cfg, tmp_path, "cpu", False)
    den0, con0 = _params(run.den), _params(run.con)
    run.chain_stage(4)
    assert not _changed(den0, run.den), "stage 4 must not touch the denoisers"
    assert _changed(con0, run.con), "stage 4 must train the connections"
    assert all(not p.requires_grad for p in run.den.parameters())
    den1, con1 = _params(run.den), _params(run.con)
    run.chain_stage(5)
    assert _changed(den1, run.den) and _changed(con1, run.con), "stage 5 trains everything"
    assert all(p.requires_grad for p in run.den.parameters())


def test_stage2_trains_only_its_connection(tmp_path):
    cfg = replace(make_config("original", "smoke"), **TINY)
    run = DigitRun("2", torch.randint(0, 255, (16, 28, 28), dtype=torch.uint8), cfg, tmp_path, "cpu", False)
    den0, con0 = _params(run.den), _params(run.con)
    run.stage2()
    assert not _changed(den0, run.den)
    assert all(_changed(_params([c]), [c]) is False for c in run.con)  # sanity of the helper
    assert _changed(con0, run.con)


def test_smoke_preset_end_to_end_writes_every_file(mnist_root, tmp_path):
    cfg = replace(make_config("original", "smoke"), per_digit=8, batch_size=8)
    out = tmp_path / "run"
    model_dir = train_original(cfg, [0, 7], mnist_root, out, progress=False, download=False)
    for d in ("0", "7"):
        for stage in (3, 4, 5):
            assert (out / f"digit_{d}" / f"stage{stage}" / "model.safetensors").exists()
            assert (out / f"digit_{d}" / f"stage{stage}" / "config.json").exists()
        assert (out / f"digit_{d}" / "samples.gif").exists()
        assert (out / f"digit_{d}" / "loss.png").exists()
    assert (out / "metrics.jsonl").read_text().count("\n") > 10
    chain = OriginalChain(load_weights("original", model_dir), "test")
    g = chain.generate("707", seed=0)
    assert g.digits == [7, 0, 7] and g.row.shape == (28, row_width(3))
    assert len(g.steps) == 13 and np.array_equal(g.steps[-1], g.row)
    with pytest.raises(ValueError, match="no chain for digit 3"):
        chain.generate("3", seed=0)
    # a second run into the same directory must not overwrite it silently
    with pytest.raises(ResumeError, match="--resume"):
        train_original(cfg, [0, 7], mnist_root, out, progress=False, download=False)
    # a later stage alone resumes from the saved states
    train_original(cfg, [0, 7], mnist_root, out, stage="5", resume=True, progress=False, download=False)


def test_unconditional_chain(mnist_root, tmp_path):
    cfg = replace(make_config("original", "smoke"), per_digit=2, batch_size=8)
    model_dir = train_original(cfg, None, mnist_root, tmp_path / "u", progress=False, download=False)
    model = load_weights("original", model_dir)
    assert list(model.chains) == ["all"]
    assert OriginalChain(model, "t").generate("0 9", seed=1).digits == [0, 9]


def test_later_stage_alone_needs_earlier_ones(mnist_root, tmp_path):
    cfg = replace(make_config("original", "smoke"), per_digit=4, batch_size=8)
    with pytest.raises(ResumeError, match="not trained yet"):
        train_original(cfg, [1], mnist_root, tmp_path / "r", stage="4", progress=False, download=False)


def _fit(tmp_path, name, net):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    return Fit(name, {"net": net}, opt, 40, 2, 8, tmp_path / f"{name}.pt", tmp_path / "m.jsonl", save_every_s=1e9)


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path):
    data = torch.randn(40, 3)

    def step_for(net, stop_at=None):
        calls = {"n": 0}

        def step(idx):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            return (net(data[idx]) ** 2).mean()

        return step

    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    _fit(tmp_path, "ref", ref).run(step_for(ref), progress=False)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, "run", net).run(step_for(net, stop_at=7), progress=False)  # mid-epoch 2
    resumed = torch.nn.Linear(3, 2)  # fresh weights: everything must come from the saved state
    hist = _fit(tmp_path, "run", resumed).run(step_for(resumed), progress=False)
    assert len(hist) == 10
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.allclose(a, b)


def test_save_load_round_trip_and_determinism(tmp_path):
    model = OriginalChains(width=0.0625, digits=[0, 1, 2]).eval()
    save_weights(model, tmp_path / "w")
    loaded = load_weights("original", tmp_path / "w")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    c1, c2 = OriginalChain(model, "a"), OriginalChain(loaded, "b")
    g1, g2 = c1.generate("210", seed=42), c2.generate("210", seed=42)
    assert np.array_equal(g1.row, g2.row)
    assert not np.array_equal(c1.generate("210", seed=43).steps[0], g1.steps[0])
    assert c1.generate("2", seed=None).seed >= 0


def test_corrupt_and_mismatched_checkpoints_name_the_file(tmp_path):
    save_weights(OriginalChains(width=0.0625, digits=[0]), tmp_path / "ok")
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_weights("original", tmp_path / "ok")
    save_weights(OriginalChains(width=0.125, digits=[0]), tmp_path / "wide")
    cfg = (tmp_path / "wide" / "config.json").read_text().replace('"width": 0.125', '"width": 0.0625')
    (tmp_path / "wide" / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match="size mismatch|model.safetensors"):
        load_weights("original", tmp_path / "wide")
    with pytest.raises(CheckpointError, match="no such weights directory"):
        load_weights("original", tmp_path / "missing")
    (tmp_path / "noconf").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_weights("original", tmp_path / "noconf")
    save_weights(OriginalChains(width=0.0625, digits=[0]), tmp_path / "kind")
    with pytest.raises(CheckpointError, match="'original' chain, not 'improved'"):
        load_weights("improved", tmp_path / "kind")


def test_row_composition():
    digits = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    row = compose_row(digits)
    assert row.shape == (28, 28 + 25 + 25) == (28, row_width(3))
    assert np.array_equal(row[:, :28], digits[0])
    assert np.array_equal(row[:, 28:53], digits[1][:, 2:27])
    assert compose_row(digits[:1]).shape == (28, 28)


def test_missing_data_root_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path / "nowhere", download=False)
    assert "nowhere" in str(e.value) and "--data-root" in str(e.value)


def test_cli_errors_are_one_line(tmp_path, capsys):
    from train.__main__ import main

    assert (
        main(
            [
                "original",
                "--preset",
                "smoke",
                "--data-root",
                str(tmp_path),
                "--no-download",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "MNIST (train) was not found" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="Unknown preset"):
        main(["original", "--preset", "huge", "--data-root", str(tmp_path)])
    with pytest.raises(SystemExit, match="--digits"):
        main(["original", "--digits", "12x"])


def test_resume_may_lengthen_a_schedule_but_not_change_the_recipe(tmp_path):
    from train.config import make_config
    from train.original import check_run_dir

    cfg = make_config("improved", "smoke")
    check_run_dir(tmp_path, cfg, resume=False, recipe="improved")
    check_run_dir(tmp_path, replace(cfg, iters=cfg.iters * 2), resume=True, recipe="improved")
    with pytest.raises(ResumeError, match="different config"):
        check_run_dir(tmp_path, replace(cfg, ch=cfg.ch * 2), resume=True, recipe="improved")
