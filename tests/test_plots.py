"""Tests for aelab.evaluation.plots: every picture is a valid PNG, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab.data import images
from aelab.evaluation import plots
from aelab.errors import OptionError, OutputError


def _digits(n: int = 4, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _png(path: Path) -> Image.Image:
    """Open ``path``, check that it is a complete PNG, and return it (loaded)."""
    assert path.is_file()
    with Image.open(path) as im:
        im.verify()
    im = Image.open(path)
    im.load()
    assert im.format == "PNG"
    assert im.width > 0 and im.height > 0
    return im


def _figure_png(path: Path, min_w: int = 100, min_h: int = 60) -> Image.Image:
    im = _png(path)
    assert im.mode in ("RGB", "RGBA")
    assert min_w <= im.width <= 4000 and min_h <= im.height <= 4000
    return im


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _similarity_rows(n: int = 2) -> list[dict]:
    imgs = _digits(4 * n)
    return [{"title": f"Pair {i}", "a": imgs[4 * i], "b": imgs[4 * i + 1],
             "a_decoded": imgs[4 * i + 2] / 255.0, "b_decoded": imgs[4 * i + 3] / 255.0,
             "cos_original": 0.4, "cos_decoded": 0.55, "cos_code": 0.9} for i in range(n)]


# ---------------------------------------------------------------- save_png(s)


def test_save_png_round_trips_uint8_exactly(tmp_path: Path) -> None:
    img = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7  # not square: checks orientation
    out = images.save_png(tmp_path / "x.png", img)
    assert out == tmp_path / "x.png"
    im = _png(out)
    assert im.mode == "L" and im.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(im), img)


def test_save_png_maps_floats_to_0_255(tmp_path: Path) -> None:
    img = np.array([[0.0, 0.5, 1.0], [0.2, 1.0001, -0.0001]], dtype=np.float32)
    im = _png(images.save_png(tmp_path / "f.png", img))
    assert im.mode == "L"
    np.testing.assert_array_equal(np.asarray(im), [[0, 128, 255], [51, 255, 0]])


def test_save_png_float_round_trip_of_uint8_values(tmp_path: Path) -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    im = _png(images.save_png(tmp_path / "f.png", img.astype(np.float64) / 255))
    np.testing.assert_array_equal(np.asarray(im), img)


@pytest.mark.parametrize("bad", [
    np.zeros((2, 3, 4)),                 # many images where one is wanted
    np.zeros(9),                         # flat vector
    np.full((3, 3), 255.0),              # float 0..255
    np.array([[0.0, np.nan]]),           # NaN
    np.array([[300, 0]], dtype=np.int32),
    np.array([["a"]]),
])
def test_save_png_rejects_bad_images(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(OptionError, match="image"):
        images.save_png(tmp_path / "bad.png", bad)
    assert list(tmp_path.iterdir()) == []


def test_save_pngs_names_and_pixels(tmp_path: Path) -> None:
    imgs = _digits(3, 6, 5)
    paths = images.save_pngs(tmp_path / "dec", imgs, prefix="dec", start=10)
    assert [p.name for p in paths] == ["dec-00010.png", "dec-00011.png", "dec-00012.png"]
    for p, img in zip(paths, imgs):
        np.testing.assert_array_equal(np.asarray(_png(p)), img)
    with pytest.raises(OptionError, match="images"):
        images.save_pngs(tmp_path, imgs[0])
    with pytest.raises(OptionError, match="prefix"):
        images.save_pngs(tmp_path, imgs, prefix="a/b")
    with pytest.raises(OptionError, match="start"):
        images.save_pngs(tmp_path, imgs, start=-1)



def test_png_names_sort_in_number_order_from_100000_images_on(tmp_path: Path) -> None:
    paths = images.save_pngs(tmp_path / "dec", _digits(3, 6, 5), start=99_998)  # the last three of 100,001
    assert [p.name for p in paths] == ["img-099998.png", "img-099999.png", "img-100000.png"]
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == [p.name for p in paths]
    names = [images.png_name("img", i, 100_000) for i in (0, 9, 99_999, 100_000)]
    assert names == sorted(names) == ["img-000000.png", "img-000009.png", "img-099999.png", "img-100000.png"]
    assert images.png_name("img", 7, 99_999) == "img-00007.png"  # up to 100,000 images: five digits, as before



def _stopping_after(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """images.save_png writes ``count`` files, then the user presses Ctrl-C."""
    real, calls = images.save_png, []

    def save_png(path, image):
        if len(calls) == count:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, image)
    monkeypatch.setattr(images, "save_png", save_png)


def test_pngs_stopped_part_way_leave_no_new_folder_and_an_old_output_as_it_was(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in `aelab reconstruct` left thousands of PNGs and no grid, mixed with the earlier output's."""
    old = images.save_pngs(tmp_path / "old", _digits(5))
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    _stopping_after(3, monkeypatch)
    for folder in (tmp_path / "new", tmp_path / "old"):
        with pytest.raises(KeyboardInterrupt):
            images.save_pngs(folder, _digits(7, seed=1))
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before  # no hidden folder either
    assert [p.name for p in old] == sorted(before)


def test_a_picture_folder_replaces_an_earlier_output_once_complete(tmp_path: Path) -> None:
    images.save_pngs(tmp_path / "out", _digits(4))
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with images.picture_folder(tmp_path / "out") as stage:
        images.save_pngs(stage, _digits(2, seed=1))
        assert sorted(p.name for p in (tmp_path / "out").glob("img-*.png")) == [f"img-0000{i}.png" for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img-00000.png", "img-00001.png", "notes.txt"]
    np.testing.assert_array_equal(np.asarray(_png(tmp_path / "out" / "img-00001.png")), _digits(2, seed=1)[1])


def test_ctrl_c_while_the_pictures_move_into_place_waits_until_they_all_have(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The moves took a second for 10,000 PNGs; Ctrl-C then left old and new pictures mixed."""
    import os
    import signal
    images.save_pngs(tmp_path / "out", _digits(6))
    real, moved = os.replace, []

    def replace(a, b):  # os.replace also writes each PNG atomically, inside the staging folder: not counted
        if Path(b).parent == tmp_path / "out":
            moved.append(b)
            if len(moved) == 2:
                os.kill(os.getpid(), signal.SIGINT)
        return real(a, b)
    monkeypatch.setattr(images.os, "replace", replace)
    new = _digits(4, seed=1)
    with pytest.raises(KeyboardInterrupt):
        images.save_pngs(tmp_path / "out", new)
    monkeypatch.undo()
    assert len(moved) == 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"img-0000{i}.png" for i in range(4)]
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(_png(tmp_path / "out" / f"img-0000{i}.png")), new[i])


def test_a_staging_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = out / f"{images.STAGE_PREFIX}999999999-abc123"  # no process has that id
    stale.mkdir(parents=True)
    images.save_png(stale / "img-00000.png", _digits(1)[0])
    images.save_pngs(out, _digits(2))
    assert sorted(p.name for p in out.iterdir()) == ["img-00000.png", "img-00001.png"]


def test_a_picture_folder_named_as_a_file_is_refused_unless_it_is_a_folder_already(tmp_path: Path) -> None:
    """`decode -o codes.npy` with an image model wrote PNGs into a folder named codes.npy."""
    for name in ("codes.npy", "out.CSV", "pictures.png"):
        with pytest.raises(OutputError, match="pictures go into a folder"):
            images.save_pngs(tmp_path / name, _digits(2))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "v2.npz").mkdir()  # the user's own folder of that name
    assert len(images.save_pngs(tmp_path / "v2.npz", _digits(2))) == 2
    assert len(images.save_pngs(tmp_path / "run-1.5", _digits(2))) == 2


# ---------------------------------------------------------------- figures


def test_save_image_pair(tmp_path: Path) -> None:
    a, b = _digits(2)
    out = plots.save_image_pair(tmp_path / "pair.png", a, b / 255.0, suptitle="Simple model")
    assert out == tmp_path / "pair.png"
    im = _figure_png(out)
    assert im.width > im.height
    with pytest.raises(OptionError, match="right"):
        plots.save_image_pair(tmp_path / "bad.png", a, b[:, :6])


def test_save_reconstruction_grid(tmp_path: Path) -> None:
    orig = _digits(6)
    dec = orig.astype(np.float32) / 255
    im = _figure_png(plots.save_reconstruction_grid(
        tmp_path / "grid.png", orig, dec, labels=np.arange(6), title="Reconstructions"))
    assert im.width > 2 * im.height
    _figure_png(plots.save_reconstruction_grid(tmp_path / "plain.png", orig[:1], dec[:1]),
                min_w=60)
    with pytest.raises(OptionError, match="decoded"):
        plots.save_reconstruction_grid(tmp_path / "bad.png", orig, dec[:5])
    with pytest.raises(OptionError, match="labels"):
        plots.save_reconstruction_grid(tmp_path / "bad.png", orig, dec, labels=[1, 2])
    assert not (tmp_path / "bad.png").exists()


def test_save_image_grid(tmp_path: Path) -> None:
    imgs = _digits(7)
    im = _figure_png(plots.save_image_grid(tmp_path / "g.png", imgs, ncols=3,
                                           labels=list(range(7)), title="Digits"))
    assert im.height > 60
    _figure_png(plots.save_image_grid(tmp_path / "one.png", imgs[:1]), min_w=40, min_h=40)
    with pytest.raises(OptionError, match="ncols"):
        plots.save_image_grid(tmp_path / "bad.png", imgs, ncols=0)
    with pytest.raises(OptionError, match="labels"):
        plots.save_image_grid(tmp_path / "bad.png", imgs, labels=np.zeros(3, int))


def test_save_similarity_figure(tmp_path: Path) -> None:
    im = _figure_png(plots.save_similarity_figure(tmp_path / "sim.png", _similarity_rows(2)),
                     min_w=500, min_h=200)
    assert im.width > im.height
    _figure_png(plots.save_similarity_figure(tmp_path / "one.png", _similarity_rows(1)))


@pytest.mark.parametrize("change, match", [
    ({"b_decoded": np.zeros((8, 7))}, r"b_decoded"),
    ({"cos_code": 1.7}, "cos_code"),
    ({"cos_decoded": "high"}, "cos_decoded"),
])
def test_save_similarity_figure_rejects_bad_rows(tmp_path: Path, change: dict, match: str) -> None:
    rows = _similarity_rows(2)
    rows[1].update(change)
    with pytest.raises(OptionError, match=match):
        plots.save_similarity_figure(tmp_path / "bad.png", rows)
    rows = _similarity_rows(1)
    del rows[0]["cos_original"]
    with pytest.raises(OptionError, match="cos_original"):
        plots.save_similarity_figure(tmp_path / "bad.png", rows)
    with pytest.raises(OptionError, match="rows"):
        plots.save_similarity_figure(tmp_path / "bad.png", [])


def test_save_tsne_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    points = rng.normal(size=(90, 2)) + labels[:, None] * 4
    im = _figure_png(plots.save_tsne_map(tmp_path / "map.png", points, labels),
                     min_w=300, min_h=300)
    assert 0.7 < im.width / im.height < 1.5
    with pytest.raises(OptionError, match="labels"):
        plots.save_tsne_map(tmp_path / "bad.png", points, labels[:-1])
    with pytest.raises(OptionError, match="points"):
        plots.save_tsne_map(tmp_path / "bad.png", points[:, :1], labels)



@pytest.mark.parametrize("losses", [[0.9, 0.8, 0.7, 0.62, 0.55],  # a table's: no 1, 2 or 5 x a power of ten inside
                                    [543.6, 519.6, 307.0, 218.6, 185.7],
                                    [543.6, 307.0, 145.1, 97.7, 90.7]])
def test_the_loss_curve_labels_its_y_axis(tmp_path: Path, monkeypatch, losses) -> None:
    """The report's curve (a log axis by request): at least two labelled ticks within the values' range."""
    seen = {}
    real_save = plots._save

    def keep_figure(fig, path):
        fig.canvas.draw()
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        seen["labels"] = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)
                          if t.get_text() and low <= t.get_position()[1] <= high]
        return real_save(fig, path)
    monkeypatch.setattr(plots, "_save", keep_figure)
    plots.save_training_curve(tmp_path / "c.png", {"m": ([64, 192, 448, 960, 1984], losses)},
                              ylabel="loss per sample", logy=True)
    assert len(seen["labels"]) >= 2, seen


def _texts_drawn(monkeypatch) -> list[str]:
    """The texts of every figure saved from now on (titles, labels, legends), collected as it is saved."""
    texts: list[str] = []
    real_save = plots._save

    def keep_texts(fig, path):
        fig.canvas.draw()
        texts.extend(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text())
        return real_save(fig, path)
    monkeypatch.setattr(plots, "_save", keep_texts)
    return texts


def test_figures_name_classes_where_the_data_names_them(tmp_path: Path, monkeypatch) -> None:
    texts = _texts_drawn(monkeypatch)
    names = ["cat", "dog", "fox"]
    imgs, labels = _digits(3, 8, 8), np.array([2, 0, 1])
    plots.save_reconstruction_grid(tmp_path / "g.png", imgs, imgs, labels=labels, class_names=names)
    assert {"cat", "dog", "fox"} <= set(texts) and not {"0", "1", "2"} & set(texts), texts
    texts.clear()
    plots.save_image_grid(tmp_path / "i.png", imgs, labels=labels, class_names=names)
    assert {"cat", "dog", "fox"} <= set(texts), texts
    texts.clear()
    points = np.random.default_rng(0).normal(size=(30, 2))
    plots.save_tsne_map(tmp_path / "t.png", points, np.arange(30) % 3, class_names=names)
    assert {"cat", "dog", "fox"} <= set(texts), texts
    texts.clear()
    plots.save_reconstruction_grid(tmp_path / "n.png", imgs, imgs, labels=labels)  # no names: numbers
    assert {"0", "1", "2"} <= set(texts), texts

def test_save_training_curve(tmp_path: Path) -> None:
    curves = {"simple": ([0, 100, 1000, 10000], [0.5, 0.3, 0.2, 0.1]),
              "deep": ([100, 1000, 10000], [0.6, 0.25, float("nan")])}
    _figure_png(plots.save_training_curve(tmp_path / "c.png", curves, "error", title="Error"))
    _figure_png(plots.save_training_curve(tmp_path / "l.png", curves, "loss", logy=True))
    with pytest.raises(OptionError, match="simple"):
        plots.save_training_curve(tmp_path / "bad.png", {"simple": ([1, 2], [0.5])}, "e")
    with pytest.raises(OptionError, match="curves"):
        plots.save_training_curve(tmp_path / "bad.png", {}, "e")


def test_a_training_curve_marks_the_kept_weights_in_its_legend(tmp_path: Path, monkeypatch) -> None:
    texts = _texts_drawn(monkeypatch)
    curves = {"training": ([64, 128, 256], [0.9, 0.5, 0.4]), "validation": ([64, 128, 256], [0.8, 0.6, 0.7])}
    plots.save_training_curve(tmp_path / "c.png", curves, "loss", mark=(128, "weights kept"))
    assert {"training", "validation", "weights kept"} <= set(texts), texts
    texts.clear()
    plots.save_training_curve(tmp_path / "z.png", curves, "loss", mark=(0, "weights kept"))  # before the log axis
    assert "weights kept" not in texts and {"training", "validation"} <= set(texts), texts
    with pytest.raises(OptionError, match="mark"):
        plots.save_training_curve(tmp_path / "bad.png", curves, "loss", mark=128)


def test_figures_leave_matplotlib_settings_alone(tmp_path: Path) -> None:
    import matplotlib

    keys = [k for k in matplotlib.rcParams if k != "backend"]  # reading backend may resolve it
    before = {k: matplotlib.rcParams[k] for k in keys}
    plots.save_image_pair(tmp_path / "p.png", *_digits(2))
    assert {k: matplotlib.rcParams[k] for k in keys} == before


# ---------------------------------------------------------------- failed writes


def test_output_folder_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError):
        plots.save_image_pair(blocker / "pair.png", *_digits(2))
    with pytest.raises(OutputError):
        images.save_png(blocker / "x.png", _digits(1)[0])
    with pytest.raises(OutputError):
        images.save_pngs(blocker, _digits(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert blocker.read_text() == "not a folder"


def test_target_is_a_folder_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "map.png").mkdir()
    with pytest.raises(OutputError):
        plots.save_tsne_map(tmp_path / "map.png", np.zeros((3, 2)) + np.arange(3)[:, None],
                            [0, 1, 2])
    assert _leftovers(tmp_path) == []
    assert (tmp_path / "map.png").is_dir()


def test_failure_while_rendering_keeps_old_picture(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    target = plots.save_image_pair(tmp_path / "pair.png", *_digits(2))
    old = target.read_bytes()

    def broken_savefig(self, f, **kwargs):
        f.write(b"\x89PNG half a picture")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        plots.save_image_pair(target, *_digits(2, seed=1))
    assert target.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_write_error_is_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        images.save_png(tmp_path / "x.png", _digits(1)[0])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- t-SNE


def test_tsne_2d_shape_and_determinism() -> None:
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(loc=c, size=(20, 8)) for c in (0.0, 5.0, 10.0)])
    a = plots.tsne_2d(codes, seed=3, perplexity=5)
    b = plots.tsne_2d(codes.astype(np.float64), seed=3, perplexity=5)
    assert a.shape == (60, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("codes, perplexity, match", [
    (np.zeros((1, 4)), 5.0, "at least 2"),
    (np.zeros((10, 4)), 10.0, "perplexity"),
    (np.zeros((10, 4)), 0.0, "perplexity"),
    (np.zeros(10), 5.0, "codes"),
    (np.full((10, 4), np.nan), 5.0, "codes"),
])
def test_tsne_2d_rejects_bad_input(codes: np.ndarray, perplexity: float, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        plots.tsne_2d(codes, perplexity=perplexity)


def test_tsne_2d_suggests_smaller_perplexity() -> None:
    with pytest.raises(OptionError) as info:
        plots.tsne_2d(np.zeros((10, 4)), perplexity=30)
    assert "try --perplexity 3" in str(info.value)
