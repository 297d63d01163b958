"""Good by default: the residual model starts as PCA, early stopping keeps the best weights, the budget
bounds the time, and `aelab train --data PATH` alone chooses settings for the data and says so."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from aelab.cli import main
from aelab.models.checkpoint import load_checkpoint
from aelab.data import Dataset, Split, load_dataset
from aelab.errors import CheckpointError, OptionError
from aelab.evaluation.baseline import PCABaseline
from aelab.models import inference
from aelab.models import pca
from aelab.models.networks import ModelConfig, build_model, model_config
from aelab.models.pca import pca_basis
from aelab.training import TrainConfig, train
from aelab.training.auto import choose, conv_channels, table_code_size
from aelab.runconfig import parse_duration
from aelab.training import loop
from aelab.training import validation as validation_module
from aelab.training.loop import _restore_early_stopping
from aelab.training.validation import MARGIN, EarlyStopping, margin, measured_rows, split_rows


def curved_table(n: int = 600, columns: int = 12, seed: int = 0) -> Dataset:
    """Rows on a curved 2-D surface in 12 columns, standardised: a nonlinear code of 2 beats PCA's."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, (n, 2))
    basis = rng.normal(size=(5, columns))
    features = np.column_stack([t[:, 0], t[:, 1], np.sin(2 * t[:, 0]), t[:, 0] * t[:, 1], np.cos(2 * t[:, 1])])
    x = features @ basis + 0.05 * rng.normal(size=(n, columns))
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    labels = (t[:, 0] > 0).astype(np.int64) + 2 * (t[:, 1] > 0)
    split = int(0.8 * n)
    return Dataset("curved", Split(x[:split], labels[:split]), Split(x[split:], labels[split:]), sha256="c" * 64,
                   num_classes=4)


def mse(model, rows: np.ndarray) -> float:
    return float(np.mean((inference.reconstruct(model, rows) - rows) ** 2))


def pca_mse(train_rows: np.ndarray, test_rows: np.ndarray, k: int) -> float:
    mean, components, _ = pca_basis(torch.from_numpy(train_rows), k)
    out = (torch.from_numpy(test_rows) - mean) @ components.t() @ components + mean
    return float(((out - torch.from_numpy(test_rows)) ** 2).mean())


@pytest.mark.parametrize("limit", [None, 1000])  # the exact eigendecomposition, and the randomised SVD above
def test_pca_basis_matches_the_exact_pca_and_its_randomised_form_agrees(limit, monkeypatch):
    if limit is not None:
        monkeypatch.setattr(pca, "PCA_EXACT_LIMIT", limit)
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.normal(size=(300, 6)) @ rng.normal(size=(6, 1100)) + 0.01 * rng.normal(
        size=(300, 1100))).astype(np.float32))
    mean, components, scale = pca_basis(x, 4)
    centred = (x - x.mean(0)).double()
    exact = torch.linalg.svd(centred, full_matrices=False).Vh[:4]
    overlap = (components.double() @ exact.t()).abs()  # the same subspace: an orthogonal 4x4 matrix
    assert torch.allclose(overlap @ overlap.t(), torch.eye(4, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(mean, x.mean(0), atol=1e-5) and bool((scale > 0).all())
    if limit is None:  # exact: each direction itself, up to its sign
        torch.testing.assert_close(overlap, torch.eye(4, dtype=torch.float64), atol=1e-4, rtol=0)


def test_pca_rows_are_capped_by_count_and_by_values_seeded_sorted_and_distinct(monkeypatch):
    monkeypatch.setattr(pca, "PCA_ROWS", 300)
    monkeypatch.setattr(pca, "PCA_VALUES", 50_000)
    assert np.array_equal(pca.pca_row_index(250, 0, inputs=100), np.arange(250))  # under both limits: all
    for n, inputs, expected in [(1000, 100, 300), (1000, 1000, 50), (1000, 10**9, 2)]:
        index = pca.pca_row_index(n, 5, inputs)
        assert len(index) == len(np.unique(index)) == expected and np.all(np.diff(index) > 0) and index[-1] < n
        assert np.array_equal(index, pca.pca_row_index(n, 5, inputs))
        assert not np.array_equal(index, pca.pca_row_index(n, 6, inputs))


def test_pca_basis_leaves_its_rows_as_they_were():
    rows = torch.from_numpy(np.random.default_rng(2).normal(3.0, 1.0, size=(50, 8)))  # float64: no copy by dtype
    before = rows.clone()
    mean, components, _ = pca_basis(rows, 3)
    assert torch.equal(rows, before)
    torch.testing.assert_close(pca_basis(rows.float(), 3)[1], components)


def test_the_residual_model_starts_as_the_pca_of_its_training_rows():
    data = curved_table()
    config = model_config("residual", input_shape=(12,), code_size=2, hidden=(16,), loss="mse", input_max=1.0)
    model = build_model(config, seed=0)
    model.fit_linear(torch.from_numpy(data.train.images))
    assert mse(model, data.test.images) == pytest.approx(pca_mse(data.train.images, data.test.images, 2), rel=1e-5)


@pytest.mark.parametrize("limit", ["PCA_ROWS", "PCA_VALUES"])
def test_the_residual_models_start_is_the_baseline_pca_when_both_draw_rows(monkeypatch, limit):
    # fewer than the 480 training rows (of 12 values): both fit on a seeded draw
    monkeypatch.setattr(pca, limit, 100 if limit == "PCA_ROWS" else 100 * 12)
    data = curved_table()
    config = model_config("residual", input_shape=(12,), code_size=2, hidden=(16,), loss="mse", input_max=1.0)
    model = build_model(config, seed=0)
    model.fit_linear(loop._pca_rows(config, data, seed=3), seed=3)
    _, baseline = PCABaseline(config, data.train.images, seed=3).reconstruct_rows(data.test.images)
    np.testing.assert_allclose(inference.reconstruct(model, data.test.images), baseline.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("step", [1.0, 0.1])
def test_the_residual_models_linear_path_moves_by_its_linear_step(step):
    config = model_config("residual", input_shape=(12,), code_size=2, hidden=(16,), loss="mse", input_max=1.0,
                          linear_step=step)
    model = build_model(config, seed=0)
    model.fit_linear(torch.from_numpy(curved_table().train.images))
    with torch.no_grad():
        model.encoder_delta.normal_()
        model.decoder_delta.normal_()
    x = torch.from_numpy(curved_table().test.images[:5])
    codes = (x - model.mean) @ (model.components + step * model.encoder_delta).t()
    with torch.no_grad():  # the nonlinear part's last layers start at zero: the codes are the linear path's
        torch.testing.assert_close(model.encode(x), codes)
        decoded = model.mean + codes @ (model.components + step * model.decoder_delta)
        torch.testing.assert_close(model.decode(codes), decoded)


def test_new_residual_models_take_the_full_linear_step_and_older_descriptions_read_as_a_tenth():
    config = model_config("residual", input_shape=(12,), code_size=2, loss="mse")
    assert config.linear_step == 1.0 and config.to_dict()["linear_step"] == 1.0
    assert ModelConfig.from_dict(config.to_dict()) == config
    older = {k: v for k, v in config.to_dict().items() if k != "linear_step"}  # saved before the field existed
    assert ModelConfig.from_dict(older).linear_step == 0.1
    assert "linear_step" not in model_config("conv").to_dict()
    with pytest.raises(OptionError, match="linear step applies to the residual model"):
        model_config("conv", linear_step=1.0)


def test_the_residual_model_refuses_bce():
    with pytest.raises(OptionError, match="linear outputs"):
        build_model(model_config("residual", input_shape=(12,), code_size=2, loss="bce"))


def test_early_stopping_keeps_the_best_validation_weights_and_beats_pca_on_a_curved_table():
    data = curved_table()
    result = train(data, TrainConfig(model="residual", code_size=2, hidden=(64, 32), recipe="fit", sweeps=60,
                                     minibatch_size=32, loss="mse", validation=0.15), log=None, progress_bar=False)
    validation = result.validation
    curve = [loss for _, loss in validation["curve"]]
    assert validation["curve"][0][0] == 0  # the PCA start is measured
    assert validation["best_loss"] == min(curve) <= curve[0]
    keep, held = split_rows(data.train.n, 0.15, 0)
    held_rows = data.train.images[held]
    assert mse(result.model, held_rows) == pytest.approx(validation["best_loss"], rel=1e-5)  # the best, restored
    assert mse(result.model, data.test.images) < 0.8 * pca_mse(data.train.images[keep], data.test.images, 2)


@pytest.mark.parametrize("rows, quantile", [(2, 12.7062), (3, 4.3027), (10, 2.2622), (31, 2.0423)])
def test_the_margin_is_students_t_on_few_rows(rows, quantile):
    assert margin(rows) == pytest.approx(quantile, abs=1e-4)  # printed tables: one-sided 2.5%, rows - 1 dof


def test_the_margin_never_drops_below_two_standard_errors():
    assert [margin(n) for n in (62, 100, 2048)] == [MARGIN] * 3
    assert all(margin(n) >= margin(n + 1) for n in range(2, 200))


def gain_of(rows: int, standard_errors: float) -> tuple[list[float], torch.Tensor]:
    """Starting errors and later ones whose per-row gains have a mean of ``standard_errors`` standard errors."""
    gain = torch.from_numpy(np.random.default_rng(rows).normal(size=rows))
    gain = (gain - gain.mean()) / gain.std() + standard_errors / rows ** 0.5  # std 1: mean is the SE count
    start = torch.full((rows,), 10.0, dtype=torch.float64)
    return start.tolist(), start - gain


@pytest.mark.parametrize("rows, standard_errors, accepted",
                         [(5, 30.0, False), (9, 30.0, False), (10, 2.2, False), (20, 2.2, True), (200, 2.5, True)])
def test_a_gain_over_a_pca_start_counts_only_when_it_clears_the_margin_on_enough_rows(rows, standard_errors,
                                                                                      accepted):
    early = EarlyStopping(torch.zeros(rows, 2), total_steps=100, record={}, baseline_start=True)
    early.start, errors = gain_of(rows, standard_errors)
    assert early.clearly_better_than_start(errors) is accepted


@pytest.mark.parametrize("rows, standard_errors, accepted", [(3, 2.5, True), (3, 1.5, False), (5, 30.0, True)])
def test_a_random_start_is_left_behind_at_two_standard_errors_on_a_few_rows(rows, standard_errors, accepted):
    early = EarlyStopping(torch.zeros(rows, 2), total_steps=100, record={})  # a named model: nothing worth keeping
    early.start, errors = gain_of(rows, standard_errors)
    assert early.clearly_better_than_start(errors) is accepted


@pytest.mark.parametrize("share, sweeps, held", [(0.15, 200, 5), (0.1, 20, 3)])
def test_a_named_model_on_a_few_validation_rows_keeps_its_training(share, sweeps, held):
    data = curved_table(40)  # 32 training rows, a few of them held out
    result = train(data, TrainConfig(model="dense", code_size=2, hidden=(16,), recipe="adam", sweeps=sweeps,
                                     minibatch_size=8, loss="mse", validation=share), log=None, progress_bar=False)
    assert result.validation["rows"] == held and result.validation["best_step"] > 0


@pytest.mark.parametrize("labelled", [True, False])
def test_a_tiny_table_stays_the_pca_where_a_gain_on_three_validation_rows_did_not_hold(tmp_path, labelled):
    """Linnerud: 20 rows, 16 trained on, 3 of them held out. With a flat two-standard-error margin the
    default model kept a gain measured on those 3 rows and ended 1.16 times PCA's test error (labelled,
    a stratified split); without labels, even Student's t let through one at 2.35 times."""
    from sklearn.datasets import load_linnerud
    linnerud = load_linnerud()
    path = tmp_path / "linnerud.csv"
    heavy = (linnerud.target[:, 0] > 180).astype(int)  # a label, for a stratified split
    np.savetxt(path, np.column_stack([linnerud.data, heavy]) if labelled else linnerud.data, delimiter=",", fmt="%g")
    data = load_dataset(path, label_column=3 if labelled else None, scale="standard", test_fraction=0.2, seed=0)
    config = choose(data, TrainConfig(seed=0), code_size=2).config
    torch.manual_seed(0)
    result = train(data, config, log=None, progress_bar=False)
    assert result.validation["rows"] == 3 and result.validation["best_step"] == 0
    test = data.test.images
    assert mse(result.model, test) == pytest.approx(pca_mse(data.train.images, test, 2), rel=1e-4)


@pytest.mark.parametrize("only_pca, only_model, worse", [(0, 0, False), (2, 0, True), (5, 3, False), (12, 10, False),
                                                     (30, 10, True), (10, 30, False)])
def test_codes_classify_clearly_worse_only_past_a_standard_error_of_the_paired_difference(only_pca, only_model, worse):
    both = 50  # rows both get right, and rows both get wrong, count for neither
    pca_right = np.array([True] * (only_pca + both) + [False] * only_model + [False] * both)
    model_right = np.array([False] * only_pca + [True] * both + [True] * only_model + [False] * both)
    assert validation_module.clearly_fewer(model_right, pca_right) is worse


def test_neighbours_are_compared_only_where_both_splits_have_labels_of_two_classes_or_more():
    data = curved_table(200)
    model = build_model(model_config("residual", input_shape=(12,), code_size=2, hidden=(8,), loss="mse"), seed=0)
    model.eval()
    held = Split(data.test.images, data.test.labels)
    found = validation_module.neighbour_accuracies(model, model, data.train, held)
    assert found["k"] == 5 and found["rows"] == 40 and found["model"] == found["pca"] and not found["worse"]
    assert validation_module.neighbour_accuracies(model, model, data.train, Split(data.test.images, None)) is None
    one_class = Split(data.train.images, np.zeros(data.train.n, np.int64))
    assert validation_module.neighbour_accuracies(model, model, one_class, held) is None


@pytest.mark.parametrize("worse", [True, False])
def test_a_model_whose_codes_classify_clearly_worse_than_the_pca_falls_back_to_it(worse, monkeypatch):
    """The residual model that reconstructs better but whose codes tell the validation split's classes apart
    clearly worse than its PCA start's is dropped for the PCA (refitted on the whole training split, its
    held-out scores those of the PCA that had not seen them); otherwise it is kept."""
    data = curved_table()
    seen = {}

    def compared(model, pca_start, train_split, held):
        seen["pca_mse"] = mse(pca_start, held.images)
        return {"k": 5, "rows": held.n, "model": 0.5, "pca": 0.9 if worse else 0.5, "worse": worse}
    monkeypatch.setattr(loop, "neighbour_accuracies", compared)
    config = TrainConfig(model="residual", code_size=2, hidden=(64, 32), recipe="fit", sweeps=20,
                         minibatch_size=32, validation=0.2, seed=0)
    lines: list[str] = []
    result = train(data, config, log=lines.append, progress_bar=False)
    assert result.validation["best_step"] > 0  # the model beat the PCA in reconstruction
    assert result.validation["neighbours"]["kept"] == ("pca" if worse else "model")
    said = [line for line in lines if line.startswith("Kept the PCA")]
    assert said == (["Kept the PCA: its codes' 5-NN accuracy on the validation split (90.0%) is clearly above the "
                     "trained model's (50.0%)"] if worse else [])
    fitted, held, _ = validation_module.carve(data, 0.2, 0)
    assert seen["pca_mse"] == pytest.approx(pca_mse(fitted.train.images, held.images, 2), rel=1e-4)
    test = data.test.images
    pca_error = pca_mse(data.train.images, test, 2)
    if worse:
        assert mse(result.model, test) == pytest.approx(pca_error, rel=1e-4)
        mean, components, _ = pca_basis(torch.from_numpy(fitted.train.images), 2)
        x = torch.from_numpy(held.images)
        unseen = ((x - mean) @ components.t() @ components + mean - x).square().mean(dim=1).double()
        np.testing.assert_allclose(result.validation["scores"], np.sort(unseen.numpy()), rtol=1e-4)
    else:
        assert mse(result.model, test) < 0.8 * pca_error


def test_a_large_validation_split_is_measured_on_evenly_spaced_rows_that_keep_every_class():
    rows = torch.arange(1000).repeat_interleave(3).reshape(-1, 3)  # row i holds i: a file sorted by class i // 100
    assert measured_rows(rows, 1000) is rows
    chosen = measured_rows(rows, 50)[:, 0]
    assert len(chosen) == 50 and chosen[0] == 0 and chosen[-1] == 999 and bool((chosen.diff() > 0).all())
    assert set((chosen // 100).tolist()) == set(range(10))
    assert chosen.diff().max() - chosen.diff().min() <= 1  # evenly spaced


def test_early_stopping_measures_at_most_its_row_limit_and_keeps_the_best_on_those_rows(monkeypatch):
    monkeypatch.setattr(validation_module, "MEASURED_ROWS", 16)
    data = curved_table()
    result = train(data, TrainConfig(model="residual", code_size=2, hidden=(64, 32), recipe="fit", sweeps=20,
                                     minibatch_size=32, loss="mse", validation=0.15), log=None, progress_bar=False)
    validation = result.validation
    held = split_rows(data.train.n, 0.15, 0)[1]
    assert validation["rows"] == len(held) > 16 and validation["measured_rows"] == 16
    measured = measured_rows(torch.from_numpy(data.train.images[held]), 16).numpy()
    assert validation["best_loss"] == min(loss for _, loss in validation["curve"])
    assert mse(result.model, measured) == pytest.approx(validation["best_loss"], rel=1e-5)


def test_a_resume_file_measured_on_other_rows_is_refused_with_a_hint():
    early = EarlyStopping(torch.zeros(40, 3), total_steps=100, record={})
    state = {"curve": [[0, 1.0]], "best_loss": 1.0, "best_step": 0, "since_best": 0, "stopped_at": None,
             "start": [0.5] * 30}
    saved = type("Saved", (), {"validation": state, "best": None})()
    with pytest.raises(CheckpointError, match="measures 40"):
        _restore_early_stopping(early, saved, "resume.safetensors")


def test_the_validation_split_is_seeded_disjoint_and_at_least_one_row():
    keep, held = split_rows(100, 0.1, 3)
    assert len(held) == 10 and not set(keep) & set(held) and len(keep) + len(held) == 100
    assert np.array_equal(held, split_rows(100, 0.1, 3)[1]) and not np.array_equal(held, split_rows(100, 0.1, 4)[1])
    assert len(split_rows(5, 0.01, 0)[1]) == 1
    with pytest.raises(OptionError, match="validation"):
        split_rows(2, 0.5, 0)


def test_a_budget_stops_the_run_early_and_says_so():
    data = curved_table()
    result = train(data, TrainConfig(model="residual", code_size=2, hidden=(16,), recipe="fit", sweeps=1000,
                                     loss="mse", validation=0.1, budget=0.5), log=None, progress_bar=False)
    assert result.validation["budget_spent"] is True
    assert result.minibatches < 1000 * 432 // 64


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5m", "0", "ten minutes", "inf"])
def test_unreadable_durations_are_refused(text):
    with pytest.raises(OptionError, match="duration"):
        parse_duration(text)


def test_the_choice_follows_the_data():
    table = choose(curved_table())
    assert table.config.model == "residual" and table.config.code_size == table_code_size(12) < 12
    assert table.config.channels is None and table.config.hidden and "12 columns" in table.reason
    images = Dataset("img", Split(np.zeros((500, 32, 32, 3), np.uint8)), Split(np.zeros((50, 32, 32, 3), np.uint8)),
                     sha256="0" * 64)
    chosen = choose(images, code_size=16)
    assert chosen.config.channels and chosen.config.code_size == 16 and "colour" in chosen.reason
    assert chosen.config.res_blocks == 1 and chosen.config.norm == "group" and "residual block" in chosen.reason
    small = Dataset("img", Split(np.zeros((500, 8, 8), np.uint8)), Split(np.zeros((50, 8, 8), np.uint8)),
                    sha256="0" * 64)
    assert choose(small).config.channels is None  # too small for convolutions: dense layers
    assert choose(small).config.res_blocks is None and table.config.res_blocks is None
    assert choose(small).config.norm is None and table.config.norm is None
    for choice in (table, chosen):
        assert choice.config.recipe == "fit" and choice.config.validation > 0 and choice.config.budget


@pytest.mark.parametrize("side", [16, 17, 24, 28, 31, 32, 33, 64, 100, 128, 1000])
def test_conv_stages_halve_down_to_four_pixels_or_stop_at_four_stages(side):
    sides = [side]
    for _ in conv_channels(side):
        sides.append((sides[-1] + 1) // 2)
    stages = len(sides) - 1
    assert 1 <= stages <= 4 and (sides[-1] <= 4 or stages == 4)
    assert sides[-2] > 4  # no stage halves a map that was already small enough
    model_config("residual", input_shape=(side, side), channels=conv_channels(side), res_blocks=1, loss="mse")


def test_train_with_only_data_chooses_says_so_once_and_saves_the_choice(tmp_path, capsys):
    data = curved_table(300)
    table = tmp_path / "t.csv"
    np.savetxt(table, np.column_stack([data.train.images, data.train.labels]), delimiter=",",
               header=",".join([f"f{i}" for i in range(12)] + ["label"]), comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--label-column", "label", "--sweeps", "20", "--out", str(out),
                 "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Chose")]
    assert len(lines) == 1 and "residual" in lines[0] and "validation" in lines[0]
    saved = (out / "run.toml").read_text()
    assert 'model = "residual"' in saved and 'recipe = "fit"' in saved and "validation = 0.2" in saved  # a small set
    info = json.loads((out / "config.json").read_text())
    assert info["training"]["chosen"] == lines[0] and info["training"]["validation_split"]["rows"] == 43  # 20% of the 216 training rows
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r for r in rows if r["val_loss"]][0]["step"] == "0"
    # the saved run.toml repeats the run without choosing again
    capsys.readouterr()
    assert main(["train", "--config", str(out / "run.toml"), "--out", str(tmp_path / "again")]) == 0
    assert "Chose" not in capsys.readouterr().out
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_evaluate_shows_pca_with_the_same_code_size(tmp_path, capsys, tiny_npz):
    out = tmp_path / "m"
    assert main(["train", "--model", "simple", "--sweeps", "0.01", "--data", str(tiny_npz), "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(tiny_npz), "--knn", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    pca = scores["pca"]
    assert pca["code_size"] == 32 and 0 < pca["mse"] < scores["test_mse"] and 0 <= pca["knn_acc"] <= 1
    assert pca["psnr_db"] == pytest.approx(-10 * np.log10(pca["mse"]))
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(tiny_npz)]) == 0
    assert "PCA with 32 components on the same split: MSE" in capsys.readouterr().out


def test_score_fpr_flags_at_that_rate_on_the_held_out_normal_data(tmp_path, capsys):
    from aelab.evaluation.anomaly import threshold_for_fpr
    assert threshold_for_fpr(np.arange(100.0), 0.01) == 98.0  # one of 100 normal scores lies above
    with pytest.warns(UserWarning, match="10 scores .* 1 in 11"):
        assert threshold_for_fpr(np.arange(10.0), 0.01) == 9.0  # none may: the largest
    data = curved_table(300)
    table = tmp_path / "t.csv"
    np.savetxt(table, np.column_stack([data.train.images, data.train.labels]), delimiter=",",
               header=",".join([f"f{i}" for i in range(12)] + ["label"]), comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--label-column", "label", "--sweeps", "5", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    normal = json.loads((out / "config.json").read_text())["training"]["validation_split"]["scores"]
    assert len(normal) == 43 and normal == sorted(normal)
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(out), "--data", str(table), "--fpr", "0.1", "-o",
                 str(tmp_path / "s.csv")]) == 0
    assert f"above {normal[-5]:.6g}" in capsys.readouterr().out  # 4 of 43 normal scores (9%) lie above
    simple = tmp_path / "simple"
    assert main(["train", "--model", "simple", "--data", str(table), "--label-column", "label", "--scale", "minmax",
                 "--sweeps", "1", "--out", str(simple), "--device", "cpu", "--quiet"]) == 0
    assert main(["score", "--checkpoint", str(simple), "--data", str(table), "--fpr", "0.1", "-o",
                 str(tmp_path / "s2.csv")]) == 2
    assert "--contamination" in capsys.readouterr().err


def test_fpr_scores_are_held_out_even_when_the_model_is_refitted_on_the_whole_split(tmp_path):
    """A model that stays the PCA is refitted on the whole training split, validation rows included; the
    scores --fpr sets its threshold from must be those rows' errors under the PCA that had not seen them.
    (They were in-sample: on 150 such rows --fpr 0.05 flagged 17% of new normal rows.)"""
    rng = np.random.default_rng(5)
    rows = (rng.normal(size=(150, 5)) @ rng.normal(size=(5, 30)) + rng.normal(size=(150, 30)))
    table = tmp_path / "lowrank.csv"
    np.savetxt(table, rows, delimiter=",", header=",".join(f"x{i}" for i in range(30)), comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    split = json.loads((out / "config.json").read_text())["training"]["validation_split"]
    assert split["best_step"] == 0  # nothing beat the PCA: refitted
    data = load_dataset(table, scale="standard")
    fitted, held, _ = validation_module.carve(data, split["share"], 0)
    mean, components, _ = pca_basis(torch.from_numpy(fitted.train.images), 8)
    x = torch.from_numpy(held.images)
    unseen = ((x - mean) @ components.t() @ components + mean - x).square().mean(dim=1).double()
    np.testing.assert_allclose(split["scores"], np.sort(unseen.numpy()), rtol=1e-4)
    refitted = validation_module.sample_errors(load_checkpoint(out).model, x)
    assert float(refitted.mean()) < 0.9 * float(unseen.mean())  # in-sample errors are markedly lower


def test_a_false_positive_rate_below_one_in_the_held_out_count_is_warned_about(tmp_path, capsys):
    data = curved_table(60)
    table = tmp_path / "t.csv"
    np.savetxt(table, data.train.images, delimiter=",", header=",".join(f"f{i}" for i in range(12)), comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--sweeps", "5", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    held = len(json.loads((out / "config.json").read_text())["training"]["validation_split"]["scores"])
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(out), "--data", str(table), "--fpr", "0.01", "-o",
                 str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert f"{held} scores of held-out normal data" in err and "highest" in err
    assert main(["score", "--checkpoint", str(out), "--data", str(table), "--fpr", "0.5", "-o",
                 str(tmp_path / "s.csv")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_report_shows_pca_beside_the_model():
    from aelab.evaluation.report import _scores_table
    table = _scores_table({"test_mse": 0.01, "test_psnr_db": 20.0, "pca": {"code_size": 8, "mse": 0.02,
                                                                           "psnr_db": 17.0}})
    assert "PCA with 8 components: MSE per value</th><td>0.02" in table and "PCA with 8 components: PSNR" in table
