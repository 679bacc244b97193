"""Evaluation metrics, the evaluate command, the sample command and the bench command."""

import json

import numpy as np
import pytest
import torch

from model.improved import ImprovedChain
from model.io import save_weights
from model.original import OriginalChains
from train.classifier import Classifier
from train.evaluate import frechet, spread


def test_frechet_and_spread_on_known_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    assert frechet(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet(a, a + 2.0) == pytest.approx(16.0, rel=1e-3)  # |mu1 - mu2|^2 = 4 * 2^2
    labels = np.repeat([0, 1], 2000)
    same = np.zeros((4000, 4))
    assert spread(same, labels) == 0.0  # every sample identical -> no diversity
    assert spread(a, labels) > 1.0


@pytest.fixture()
def weights(tmp_path, monkeypatch):
    """Tiny chains and a tiny classifier in a temporary assets folder."""
    import model.io
    import train.classifier

    torch.manual_seed(0)
    save_weights(ImprovedChain(ch=8, emb_dim=32, latent_dim=4, levels=4, default_steps=2), tmp_path / "improved")
    save_weights(OriginalChains(width=0.0625, digits=list(range(10))), tmp_path / "original")
    save_weights(Classifier(ch=4, feat=8), tmp_path / "classifier")
    monkeypatch.setattr(model.io, "ASSETS", tmp_path)
    monkeypatch.setattr(train.classifier, "ASSETS", tmp_path)
    return tmp_path


def test_evaluate_command_writes_all_numbers(weights, mnist_root, tmp_path, capsys):
    from train.__main__ import main

    out = tmp_path / "eval" / "orig.json"
    assert (
        main(["evaluate", "--chain", "original", "--per-digit", "6", "--data-root", str(mnist_root), "--out", str(out)])
        == 0
    )
    result = json.loads(out.read_text())
    for key in ("accuracy", "fid", "floor", "diversity"):
        assert isinstance(result[key], float)
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 60
    assert out.with_suffix(".png").exists()
    assert "FID floor" in capsys.readouterr().out


def test_sample_command_npz_png_gif(weights, tmp_path):
    from model.__main__ import main

    npz = tmp_path / "s.npz"
    assert (
        main(
            [
                "sample",
                "--chain",
                "original",
                "--prompt",
                "0123456789",
                "--repeat",
                "3",
                "--seed",
                "0",
                "--out",
                str(npz),
            ]
        )
        == 0
    )
    data = np.load(npz)
    assert data["images"].shape == (30, 28, 28) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == [d for d in range(10) for _ in range(3)]
    assert main(["sample", "--prompt", "42", "--steps", "3", "--repeat", "2", "--out", str(tmp_path / "r.png")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "r.png").size == (53 * 2, 56 * 2)
    assert main(["sample", "--prompt", "7", "--out", str(tmp_path / "s.gif")]) == 0
    assert Image.open(tmp_path / "s.gif").n_frames == 3  # noise + 2 default steps


def test_sample_command_bad_input(weights, tmp_path, capsys):
    from model.__main__ import main

    assert main(["sample", "--prompt", "4x", "--out", str(tmp_path / "a.npz")]) == 2
    assert "'4x'" in capsys.readouterr().err
    assert main(["sample", "--prompt", "4", "--steps", "9", "--out", str(tmp_path / "a.npz")]) == 2
    assert main(["sample", "--prompt", "4", "--chain", "original", "--steps", "2"]) == 2
    assert main(["sample", "--prompt", "4", "--source", str(tmp_path / "nope")]) == 2
    assert "no such weights directory" in capsys.readouterr().err


def test_bench_prints_median_and_p95(weights, capsys):
    from train.__main__ import main

    assert main(["bench", "--chain", "improved", "--steps", "1", "2", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("median") == 2 and "p95" in out


def test_sweep_command_scores_each_setting(weights, mnist_root, tmp_path, capsys):
    from train.__main__ import main

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps([
        {"steps": 2, "g": 1.0},
        {"steps": 3, "g": 2.0, "interval": [0.5, 100], "levels": [4, 3, 1, 0], "eta": 0, "order": 2},
        {"steps": 2, "auto_g": 2.0, "auto_int": [0, 1e9]},
        {"steps": 2, "eta": [1, 0]},
    ]))  # fmt: skip
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", str(settings), "--per-digit", "3", "--data-root", str(mnist_root), "--out", str(out),
                 "--guide", str(weights / "improved")]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # sigma of levels 4, 3, 1: 100, 2.4, 0.43, so two of the three steps are guided: 5 passes; autoguidance at both: 4
    assert [r["nfe"] for r in rows] == [2, 5, 4, 2] and rows[3]["eta"] == [1, 0]
    assert all(0 <= r["accuracy"] <= 1 and r["fid"] >= 0 for r in rows)
    assert capsys.readouterr().out.count("passes") == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"steps": 2, "levels": [4, 0]}]))
    with pytest.raises(SystemExit, match="levels"):
        main(["sweep", str(bad), "--per-digit", "1", "--data-root", str(mnist_root)])
    bad.write_text(json.dumps([{"steps": 2, "eta": [1, 0, 0]}]))
    with pytest.raises(SystemExit, match="one number from 0 to 1 per step"):
        main(["sweep", str(bad), "--per-digit", "1", "--data-root", str(mnist_root)])


def test_random_affine_is_per_image_and_identity_at_zero():
    from train.classifier import random_affine

    x = torch.zeros(6, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # the same bar in every image
    same = random_affine(x, degrees=0.0, scale=0.0, shift=0.0)
    assert torch.allclose(same, x, atol=1e-5)
    moved = random_affine(x, generator=torch.Generator().manual_seed(0))
    assert moved.shape == x.shape
    assert not torch.allclose(moved[0], moved[1])  # each image gets its own rotation / scale / shift


def test_classifier_command_trains_and_loads(mnist_root, tmp_path, capsys):
    from train.__main__ import main
    from train.classifier import load_classifier

    out = tmp_path / "clf"
    assert main(["classifier", "--data-root", str(mnist_root), "--epochs", "1", "--out", str(out)]) == 0
    clf = load_classifier(out)
    assert clf.features(torch.zeros(2, 1, 28, 28)).shape == (2, 128)
    assert "MNIST test accuracy" in capsys.readouterr().out
    (out / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="model.safetensors"):
        load_classifier(out)
