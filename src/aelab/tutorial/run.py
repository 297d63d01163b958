"""The CNTK 105 tutorial end to end: train the simple and the deep autoencoder
on MNIST and show everything the tutorial shows, as files in one folder.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..evaluation import plots
from ..api import train_model
from ..data import Dataset, load_dataset
from ..device import describe_device, resolve_device
from ..errors import OptionError
from ..fileio import ensure_dir, remove_empty_tree, write_text
from ..locking import folder_lock
from ..terminal import stop_pool
from ..evaluation.evaluate import format_image_stats, image_stats
from ..models.inference import encode, reconstruct
from ..evaluation.similarity import similarity_rows
from .report import write_report
from ..evaluation.report import model_section, report_page
from ..models.checkpoint import load_checkpoint
from ..training.loop import TrainConfig, TrainResult

if TYPE_CHECKING:
    import torch

FAST_SWEEPS = 5
SLOW_SWEEPS = 100
EVAL_IMAGES = 50        # the tutorial looks at the first 50 test images
TSNE_FILE = "tsne.png"


def pick_tutorial_image() -> int:
    """The tutorial's ``np.random.seed(0); np.random.choice(50)``: test image 44."""
    return int(np.random.RandomState(0).choice(EVAL_IMAGES))


@dataclass
class TsneJob:
    """A t-SNE map being computed in the background: the embedding, then the picture."""

    name: str
    path: Path
    labels: np.ndarray
    points: "Task"  # -> ((n, 2) array, seconds)
    class_names: list[str] | None = None  # the data's, to name the classes on the map


class Background:
    """Where the tutorial's side work runs: t-SNE embeddings and figures.

    Training at minibatch 64 keeps one core busy; a helper can use the
    other. ``pool`` is that helper: a process pool takes the figures too; a
    thread pool only the t-SNE embeddings (scikit-learn's loop releases the
    interpreter lock; matplotlib's drawing is Python that would hold it
    against the training loop, which takes it around every PyTorch call).
    Without a pool, or if the helper cannot start, everything runs at once.
    ``wait`` waits for the submitted work and raises the first failure.
    """

    def __init__(self, pool: Executor | None = None) -> None:
        self.pool = pool
        self.figures_too = isinstance(pool, ProcessPoolExecutor)
        self.pending: list[Task] = []

    def submit(self, fn: Callable, *args, figure: bool = False, here: bool = False, **kwargs) -> "Task":
        """Run ``fn`` on the helper (unless ``here``, or it is a ``figure`` and the helper is a thread)."""
        if self.pool is not None and not here and (self.figures_too or not figure):
            try:
                task = Task(self.pool.submit(fn, *args, **kwargs), fn, args, kwargs)
                self.pending.append(task)
                return task
            except (BrokenExecutor, OSError, RuntimeError):
                self.pool = None  # no helper here: do the work in this process
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return Task(done, fn, args, kwargs)

    def draw(self, fn: Callable, *args, here: bool = False, **kwargs) -> None:
        self.submit(fn, *args, figure=True, here=here, **kwargs)

    def wait(self, count: int | None = None) -> None:
        """Wait for the work submitted so far (its first ``count`` tasks, if given)."""
        for _ in range(len(self.pending) if count is None else min(count, len(self.pending))):
            self.pending.pop(0).result()


@dataclass
class Task:
    """Work handed to the helper; if the helper dies (killed, out of memory), ``result`` does it here."""

    future: Future
    fn: Callable
    args: tuple
    kwargs: dict

    def result(self):
        try:
            return self.future.result()
        except BrokenExecutor:
            done: Future = Future()
            done.set_result(self.fn(*self.args, **self.kwargs))
            self.future = done  # once: a second result() returns the same
            return done.result()


HELPERS = ("process", "thread", "none")
HELPER_GRACE_SECONDS = 2.0  # how long a terminated helper may take to remove its temporary files


def helper_pool(kind: str) -> Executor | None:
    """The side-work helper of ``Background``: ``"process"``, one spawned worker process (it imports
    the caller's main module, so that module must guard its work with ``if __name__ == "__main__"``,
    as the ``aelab`` command does), ``"thread"``, one worker thread, or ``"none"``."""
    if kind not in HELPERS:
        raise OptionError(f"unknown helper {kind!r}", hint=f"choose one of: {', '.join(HELPERS)}")
    if kind == "none":
        return None
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="aelab-tutorial")
    try:
        with _interrupts_ignored():  # inherited by the worker from its first instruction on
            pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=plots.start_helper)
            pool.submit(plots.preload)  # starts the worker; matplotlib and scikit-learn load meanwhile
        return pool
    except (OSError, RuntimeError, ValueError):
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="aelab-tutorial")


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """Ignore Ctrl-C in this process for a moment (in the main thread only, where handlers live), so that
    a process started meanwhile ignores it from the start: Ctrl-C is the main process's to handle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def finish_tsne(job: TsneJob, say: Callable[[str], None], background: Background) -> None:
    """Wait for the embedding, then have the map drawn."""
    points, seconds = job.points.result()
    background.draw(plots.save_tsne_map, job.path, points, job.labels, class_names=job.class_names,
                    title=f"t-SNE map of the {job.name} autoencoder's codes ({len(points)} test images)")
    say(f"t-SNE map of the {job.name} model's codes for {len(points)} test images: {job.path} "
        f"(embedded in {seconds:.1f} s, beside the other work)")


def start_tsne(name: str, model: "torch.nn.Module", data: Dataset, folder: Path, samples: int, seed: int,
               background: Background) -> TsneJob | None:
    """Encode the first ``samples`` test images and start embedding their codes (None: no map to draw)."""
    if samples <= 0 or data.test.labels is None:
        return None
    n = min(samples, data.test.n)
    codes = encode(model, data.test.images[:n])
    return TsneJob(name, folder / TSNE_FILE, data.test.labels[:n], background.submit(plots.tsne_2d_timed, codes, seed),
                   data.class_names)


def run_model(name: str, data: Dataset, out: Path, config: TrainConfig, tsne_samples: int,
              log: Callable[[str], None] | None, progress_bar: bool,
              background: Background | None = None, draw_here: bool = True) -> tuple[dict, TsneJob | None]:
    """Train one model and write all of its outputs; returns its summary entry, and its t-SNE job.

    The t-SNE embedding (scikit-learn) is handed to ``background``
    (``finish_tsne`` draws the map once it is embedded), and the figures too
    (unless ``draw_here``, all but the similarity figure); the caller waits for them with ``background.wait()``.
    """
    background = background or Background(None)
    say = log or (lambda _msg: None)
    say(f"\n=== {name} autoencoder ===")
    folder = out / name
    tsne_jobs: list[TsneJob | None] = []

    def start_tsne_first(result: TrainResult) -> None:  # before the evaluation: the t-SNE runs longest
        ensure_dir(folder)
        tsne_jobs.append(start_tsne(name, result.model, data, folder, tsne_samples, config.seed, background))

    trained = train_model(data, config, folder / "checkpoint", log=log, progress_bar=progress_bar,
                          on_trained=start_tsne_first)
    result, scores, model = trained.result, trained.scores, trained.result.model
    tsne_job = tsne_jobs[0]
    say(f"Average test error: {scores['test_error_pct']:.2f}%")
    say(f"Test BCE per pixel: {scores['test_bce']:.4f}, MSE: {scores['test_mse']:.4f}, "
        f"PSNR: {scores['test_psnr_db']:.2f} dB")

    idx = pick_tutorial_image() % data.test.n  # a test split smaller than the tutorial's: still one of its images
    original = data.test.images[idx].astype(np.float64)
    decoded = reconstruct(model, data.test.images[idx:idx + 1])[0] * 255.0
    stats = {"index": idx, "original": image_stats(original), "decoded": image_stats(decoded)}
    say("Original image statistics:\n" + format_image_stats(stats["original"]))
    say("Decoded image statistics:\n" + format_image_stats(stats["decoded"]))
    background.draw(plots.save_image_pair, folder / "pair.png", original / 255.0, decoded / 255.0,
                    suptitle=f"{name} autoencoder, test image {idx}", here=draw_here)
    first = data.test.images[:10]
    background.draw(plots.save_reconstruction_grid, folder / "grid.png", first, reconstruct(model, first),
                    labels=None if data.test.labels is None else data.test.labels[:10],
                    class_names=data.class_names, title=f"{name} autoencoder: first 10 test images", here=draw_here)

    sims = similarity_rows(model, data.test.images, data.test.labels)
    code_index = sims[0]["index_a"] if sims else 0
    code = encode(model, data.test.images[code_index:code_index + 1])[0]
    say(f"Length of the original image is {data.input_dim:3d} and the encoded image is {code.size:3d}")
    say(f"The encoded image (test image {code_index}):\n{np.array2string(code, precision=4, max_line_width=88)}")
    for row in sims:
        say(f"Cosine similarity, {row['title']} (test images {row['index_a']} and {row['index_b']}): "
            f"originals {row['cos_original']:.3f}, decoded {row['cos_decoded']:.3f}, codes {row['cos_code']:.3f}")
    if sims:
        # on the helper even when the others are drawn here: it is the helper's turn once the last t-SNE is done
        background.draw(plots.save_similarity_figure, folder / "similarity.png", sims)

    return {
        "train_error_pct": result.train_error_pct,
        "test_error_pct": scores["test_error_pct"],
        "test_bce": scores["test_bce"],
        "test_mse": scores["test_mse"],
        "test_psnr_db": scores["test_psnr_db"],
        "train_seconds": result.seconds,
        "samples_per_second": result.samples_per_second,
        "sweeps": config.sweeps,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": result.train_loss,
        "progress": result.progress,
        "image_stats": stats,
        "code": {"index": code_index, "values": [float(v) for v in code]},
        "similarities": [{k: v for k, v in row.items() if k.startswith(("title", "index", "cos"))} for row in sims],
        "files": {"checkpoint": f"{name}/checkpoint", "pair": f"{name}/pair.png", "grid": f"{name}/grid.png",
                  "similarity": f"{name}/similarity.png" if sims else None,
                  "tsne": f"{name}/{TSNE_FILE}" if tsne_job else None},
    }, tsne_job


HTML_REPORT = "report.html"
SUMMARY_FILE = "summary.json"
TOP_LEVEL_OUTPUTS = (SUMMARY_FILE, "report.md", HTML_REPORT, "training.png")


def _refuse_outputs_of_others(out: Path, models: tuple[str, ...]) -> None:
    """The tutorial writes over an earlier tutorial's outputs in ``out``, never over files of the same
    names that something else wrote (a user's notes in report.md, another program's summary.json)."""
    if not out.is_dir() or _holds_a_tutorial(out, models):
        return
    taken = [name for name in (*TOP_LEVEL_OUTPUTS, *models) if os.path.lexists(out / name)]
    if taken:
        raise OptionError(f"the folder holds {', '.join(taken)}, which the tutorial would replace, and is not the "
                          "output of an earlier tutorial", path=out, hint="choose another --out")


def _holds_a_tutorial(out: Path, models: tuple[str, ...]) -> bool:
    if any((out / name / "checkpoint").is_dir() for name in models):  # the tutorial's layout, finished or not
        return True
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and isinstance(summary.get("models"), dict) and "mode" in summary


def write_html_report(out: Path, data: Dataset, summary: dict, jobs: dict[str, TsneJob]) -> None:
    """``out/report.html``: every model's section (see :mod:`aelab.evaluation.report`), its map the
    t-SNE embedding the run made already (none when the run skipped the maps), its grid and similarity
    figures the pictures the run drew already."""
    sections = []
    for name, entry in summary["models"].items():
        model = load_checkpoint(out / entry["files"]["checkpoint"]).model
        curve = ([r["examples"] for r in entry["progress"]], [r["loss_since_last"] for r in entry["progress"]])
        points = jobs[name].points.result()[0] if name in jobs else None
        drawn = {key: (out / entry["files"][key]).read_bytes()
                 for key in ("grid", "similarity") if entry["files"][key]}
        sections.append(model_section(name, model, data, curve=curve if entry["progress"] else None,
                                      scores=entry, points=points, limit=0 if points is None else len(points),
                                      figures=drawn))
    write_text(out / HTML_REPORT, report_page(f"aelab tutorial: {data.name}", sections,
                                              f"{summary['mode']} mode, {summary['device']}"))


def run_mode(sweeps: float) -> str:
    """"fast" and "slow" are the tutorial's 5 and 100 sweeps; anything else is "custom"."""
    return {FAST_SWEEPS: "fast", SLOW_SWEEPS: "slow"}.get(sweeps, "custom")


def run_tutorial(out: str | os.PathLike = "aelab-out", *, data: str | os.PathLike | Dataset | None = None,
                 slow: bool = False, sweeps: float | None = None, device: str = "auto", seed: int = 0,
                 tsne_samples: int = 1000, models: tuple[str, ...] = ("simple", "deep"),
                 log: Callable[[str], None] | None = print, progress_bar: bool = True,
                 helper: str = "thread") -> dict:
    """Run the tutorial and write its outputs into ``out``; returns the summary (also ``out/summary.json``).

    ``helper`` says where the side work (t-SNE, figures) runs while the next
    model trains: ``"thread"`` (t-SNE only), ``"process"`` (everything; the
    ``aelab`` command's choice, about 2 s faster; see ``helper_pool`` for
    what it asks of the calling script) or ``"none"``.
    """
    started = time.perf_counter()
    if tsne_samples < 0:
        raise OptionError(f"--tsne-samples must be >= 0, got {tsne_samples}")
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if dataset.kind != "images":
        raise OptionError(f"the tutorial draws images, and {dataset.name!r} is a table",
                          hint="train a model on it with `aelab train --data PATH`")
    if tsne_samples > 0 and dataset.test.labels is not None and min(tsne_samples, dataset.test.n) <= plots.TSNE_PERPLEXITY:
        raise OptionError(f"a t-SNE map needs more than {plots.TSNE_PERPLEXITY:g} test images, got "
                          f"{min(tsne_samples, dataset.test.n)}", hint="raise --tsne-samples, or 0 to skip the map")
    made = not Path(out).exists()
    _refuse_outputs_of_others(Path(out), models)
    out = ensure_dir(out)  # after the data's checks: a refused run leaves no folder behind
    sweeps = sweeps if sweeps is not None else (SLOW_SWEEPS if slow else FAST_SWEEPS)
    say = log or (lambda _msg: None)
    device_name = describe_device(resolve_device(device))
    say(f"Device: {device_name}")
    say(f"Data: {dataset.name} ({dataset.train.n} training, {dataset.test.n} test images of "
        f"{dataset.image_shape[0]}x{dataset.image_shape[1]}), sha256 {dataset.sha256[:16]}...")
    summary: dict = {"data": {"name": dataset.name, "train": dataset.train.n, "test": dataset.test.n,
                              "sha256": dataset.sha256},
                     "device": device_name, "mode": run_mode(sweeps), "models": {}}
    try:
        with folder_lock(out):  # one tutorial writing into `out` at a time
            return _run_locked(out, dataset, sweeps, device, seed, tsne_samples, models, log, progress_bar, helper,
                               say, summary, started)
    except BaseException:
        if made:  # refused once under way (too few samples for a minibatch): no empty folders left
            remove_empty_tree(out)
        raise


def _run_locked(out: Path, dataset: Dataset, sweeps: float, device: str, seed: int, tsne_samples: int,
                models: tuple[str, ...], log: Callable[[str], None] | None, progress_bar: bool, helper: str,
                say: Callable[[str], None], summary: dict, started: float) -> dict:
    pool = helper_pool(helper)
    background, jobs = Background(pool), []
    try:
        for i, name in enumerate(models):
            config = TrainConfig(model=name, sweeps=sweeps, seed=seed, device=device)
            # the last model's figures are drawn here, beside its t-SNE on the helper
            entry, job = run_model(name, dataset, out, config, tsne_samples, log, progress_bar, background,
                                   draw_here=i == len(models) - 1)
            summary["models"][name] = entry
            jobs += [job] if job else []
        models_work = len(background.pending)  # their figures and embeddings
        if jobs:
            say("")
        for job in jobs:
            finish_tsne(job, say, background)
        curves = {name: ([r["examples"] for r in m["progress"]], [r["metric"] for r in m["progress"]])
                  for name, m in summary["models"].items() if m["progress"]}
        if curves:
            background.draw(plots.save_training_curve, out / "training.png", curves,
                            ylabel="average classification error",
                            title="Training progress (CNTK's metric, average since start)")
        background.wait(models_work)  # the models' figures are on disk: the HTML report shows them
        write_html_report(out, dataset, summary, {job.name: job for job in jobs})  # while the helper draws the maps
        background.wait()
    except BaseException:
        if pool is not None:  # Ctrl-C or an error: drop the queued work, do not wait for it
            stop_pool(pool, HELPER_GRACE_SECONDS)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    summary["total_seconds"] = time.perf_counter() - started
    write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    write_report(out, summary)
    say(f"\nWrote {out / 'summary.json'}, {out / 'report.md'} and {out / HTML_REPORT} "
        f"({summary['total_seconds']:.1f} s in all)")
    return summary
