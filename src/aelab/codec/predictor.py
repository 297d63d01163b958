"""The codec's autoregressive predictor: each quantised code component from the earlier ones, in
integer arithmetic, so that the encoder and every decoder compute exactly the same predictions.

The ``"range-ar"`` coder codes ``(symbol - prediction) mod levels`` instead of the symbol: the
codec's components are decorrelated but not independent, and the earlier components say a good
deal about the later ones (13% fewer bytes for mnist-conv at 7 bits with a wide predictor; see
``benchmarks/entropy_study.py``).

The predictor is a MADE (a masked MLP): components in, two hidden layers of ReLU units, one
prediction per component out. Hidden unit j has a degree ``g_j`` (the units are sorted by it); in
the first layer it sees the components ``i <= g_j``, in the second the first layer's units of
degree ``<= g_j``; prediction k sees the second layer's units of degree ``< k``. So prediction k
depends on components ``< k`` only, and a decoder can compute it once those are decoded.

The ``"range-ctx"`` coder's predictor is wider and has a second head, the spread head, which scores
how far off each prediction is likely to be; the score puts each component of each image into one
of a few spread classes, and each class has its own probability table (:func:`fit_spread_head`).

It is trained in float32 and stored as integers: every weight and bias an integer, every scale a
power of two. It is evaluated in float64 on integer values whose sums stay below 2**53, so each
product and sum is exact in whatever order a BLAS library adds, and ``floor(x / 2**s)`` is exact
too: the same integers on every machine. So the encoder may compute all predictions in one pass
of whole matrix products (:meth:`Predictor.predict`), while the decoder must go component by
component (:class:`PredictorRun`): masked weights add exact zeros, and both give the same integers
(the tests hold them to it).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

__all__ = ["Predictor", "PredictorRun", "fit_predictor", "fit_spread_head", "HIDDEN", "EPOCHS",
           "SPREAD_CLASSES"]

HIDDEN = 256        # units per hidden layer: 10% fewer bytes for mnist-conv at 7 bits (1024: 13%, 4x the work)
EPOCHS = 20
WEIGHT_BITS = 15    # weights are integers of at most 15 bits (plus sign)
ACTIVATION_BITS = 12  # hidden activations are scaled to about 12 bits on the training codes ...
CLAMP = float(1 << 20)  # ... and clamped at 20, so no sum can reach 2**53: exactness holds for any input
MAX_INPUT = 1 << 16  # components are symbols minus the zero level: |q| < 2**16 at 16 bits
SPREAD_CLASSES = 8  # the range-ctx coder's tables per component
CHUNK = 4096  # images per pass: a pass holds CHUNK x (2 H + d) float64 numbers (about 18 MB at H = 256)


@dataclass(frozen=True, eq=False)
class Predictor:
    """An integer MADE (see the module docstring). Weights are int64 arrays; ``shifts`` holds the
    right shifts after hidden layers 1 and 2 and of the output (the output is the prediction times
    ``2**shifts[2]``).

    Optionally a second head, the spread head (``w4``, ``b4``, masked like ``w3``): for component k
    an integer score ``w4[k] . h2 + b4[k]``, high where the prediction is expected to miss by more,
    and ``edges`` (d, classes - 1), non-decreasing integers: component k's spread class is the
    number of its edges at or below its score (0 .. classes - 1). The range-ctx coder codes each
    component's residual under the probability table of its class."""

    degrees: np.ndarray  # (H,) non-decreasing, 0 .. d-2
    w1: np.ndarray       # (H, d), zero where component > degree
    b1: np.ndarray       # (H,)
    w2: np.ndarray       # (H, H), zero where the input unit's degree > the unit's
    b2: np.ndarray       # (H,)
    w3: np.ndarray       # (d, H), zero where the unit's degree >= k
    b3: np.ndarray       # (d,)
    shifts: np.ndarray   # (3,)
    w4: np.ndarray | None = None     # (d, H), zero where the unit's degree >= k: the spread head
    b4: np.ndarray | None = None     # (d,)
    edges: np.ndarray | None = None  # (d, classes - 1), each row non-decreasing

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)
        for name in self.names():  # frozen, as the table's digest
            value = np.array(getattr(self, name), dtype=np.int64, copy=True)
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @staticmethod
    def field_names(spread: bool = False) -> tuple[str, ...]:
        """The array fields, with or without the spread head's."""
        return ("degrees", "w1", "b1", "w2", "b2", "w3", "b3", "shifts") + (("w4", "b4", "edges") if spread else ())

    def names(self) -> tuple[str, ...]:
        return self.field_names(self.has_spread)

    @property
    def has_spread(self) -> bool:
        return self.w4 is not None

    @property
    def classes(self) -> int:
        """Spread classes: 1 without the spread head."""
        return int(self.edges.shape[1]) + 1 if self.has_spread else 1

    @property
    def size(self) -> int:
        return int(self.w1.shape[1])

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype=np.int64) for name in self.names()}

    def digest_bytes(self) -> bytes:
        h = hashlib.sha256(b"aelab-predictor\0")
        for name, value in self.tensors().items():
            h.update(name.encode() + b"\0" + str(value.shape).encode() + b"\0" + value.astype("<i8").tobytes())
        return h.digest()

    @cached_property
    def _float(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v.astype(np.float64)) for k, v in self.tensors().items()}

    @cached_property
    def _steps(self) -> list[tuple]:
        """Per component k: the slice of hidden units of degree k - 1, the contiguous weight blocks
        that compute them (biases as columns, for the decoder's units-by-images layout), and the
        heads' weights from those units to components k.. as one ((d - k) heads, units) block."""
        t = self._float
        end = np.searchsorted(self.degrees, np.arange(self.size), side="right")  # units of degree <= g
        heads_w = torch.stack([t["w3"], t["w4"]], dim=1) if self.has_spread else t["w3"][:, None]  # (d, heads, H)
        steps = [(0, 0, None, None, None, None, None)]
        for k in range(1, self.size):
            g = k - 1
            lo, hi = (int(end[g - 1]) if g else 0), int(end[g])
            steps.append((lo, hi, t["w1"][lo:hi, :g + 1].contiguous(), t["b1"][lo:hi, None].clone(),
                          t["w2"][lo:hi, :hi].contiguous(), t["b2"][lo:hi, None].clone(),
                          heads_w[k:, :, lo:hi].reshape((self.size - k) * heads_w.shape[1], hi - lo).contiguous()))
        return steps

    @cached_property
    def _head_biases(self) -> torch.Tensor:
        """(d, heads, 1): the heads' biases, the prediction's plus half of its output scale (for rounding)."""
        t = self._float
        shift = int(self.shifts[2])
        biases = torch.stack([t["b3"], t["b4"]], dim=1) if self.has_spread else t["b3"][:, None].clone()
        biases[:, 0] += 2.0 ** (shift - 1) if shift > 0 else 0.0
        return biases[:, :, None].contiguous()

    @cached_property
    def _edges(self) -> list[torch.Tensor]:
        """Per component, its spread edges as float64 (exact: integers below 2**52)."""
        return [self._float["edges"][k].contiguous() for k in range(self.size)]

    def predict(self, q: np.ndarray) -> np.ndarray:
        """Predictions (int64 (n, d)) for components ``q`` (integers (n, d)), the encoder's way: all
        at once, in whole matrix products (chunks of CHUNK images bound the memory)."""
        return self.predict_with_classes(q)[0]

    def predict_with_classes(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """:meth:`predict`'s predictions and, with the spread head, each component's spread class
        (int64 (n, d)) and whether its prediction was rounded up (bool (n, d)); else None, None."""
        values = np.asarray(q, dtype=np.int64)
        if values.size and np.abs(values).max() > MAX_INPUT:
            raise ValueError("predictor input out of range")
        t = self._float
        shift = int(self.shifts[2])
        out = np.empty(values.shape, np.int64)
        classes = np.empty(values.shape, np.int64) if self.has_spread else None
        up = np.empty(values.shape, bool) if self.has_spread else None
        for start in range(0, len(values), CHUNK):
            h = self._hidden(torch.from_numpy(values[start:start + CHUNK].astype(np.float64)))
            mu = torch.addmm(t["b3"], h, t["w3"].T)
            out[start:start + len(h)] = _rounded(mu, shift).numpy()
            if classes is not None:
                score = torch.addmm(t["b4"], h, t["w4"].T)
                classes[start:start + len(h)] = _classes(score.numpy(), self.edges)
                up[start:start + len(h)] = _rounded_up(mu, shift).numpy()
        return out, classes, up

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The second hidden layer's (integer-valued) activations for components ``x`` (float64 (n, d))."""
        t = self._float
        h = torch.addmm(t["b1"], x, t["w1"].T).clamp_(min=0).mul_(2.0 ** -int(self.shifts[0]))
        h = torch.floor_(h).clamp_(max=CLAMP)
        h = torch.addmm(t["b2"], h, t["w2"].T).clamp_(min=0).mul_(2.0 ** -int(self.shifts[1]))
        return torch.floor_(h).clamp_(max=CLAMP)

    def residuals(self, symbols: np.ndarray, zero: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """What the range-ar coder codes, the encoder's way (all predictions in one pass): int32 (n, d)
        ``(symbol - zero - prediction) mod levels``, the prediction made from ``symbols - zero``
        (mirrored where it was rounded up, with the spread head: :meth:`residuals_and_classes`).
        :meth:`PredictorRun.undo_residuals` is its inverse."""
        return self.residuals_and_classes(symbols, zero, levels)[0]

    def residuals_and_classes(self, symbols: np.ndarray, zero: np.ndarray,
                              levels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`residuals` and, with the spread head, each component's spread class (int64 (n, d)).
        With the spread head, a residual whose prediction was rounded up is mirrored, ``-residual
        mod levels``: the symbol then lies more often below the prediction than above it, and
        mirrored, all residuals lean the same way, which one table per class can use."""
        q = np.asarray(symbols, dtype=np.int64) - np.asarray(zero, dtype=np.int64)
        predictions, classes, up = self.predict_with_classes(q)
        residuals = q - predictions
        if up is not None:
            residuals = np.where(up, -residuals, residuals)
        return np.mod(residuals, levels).astype(np.int32), classes


def _classes(score: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """int64 (n, d): per component, how many of its ``edges`` (d, c) lie at or below ``score`` (n, d)."""
    return (score[:, :, None] >= edges[None, :, :]).sum(axis=2, dtype=np.int64)


def _problem(p: Predictor) -> str | None:
    arrays = [p.degrees, p.w1, p.b1, p.w2, p.b2, p.w3, p.b3, p.shifts]
    if not all(isinstance(a, np.ndarray) and a.dtype.kind == "i" for a in arrays):
        return "predictor arrays must be integer numpy arrays"
    if p.w1.ndim != 2:
        return "predictor w1 must be 2-D"
    units, d = p.w1.shape
    shapes = [(units,), (units, d), (units,), (units, units), (units,), (d, units), (d,), (3,)]
    if units < 1 or d < 2 or [a.shape for a in arrays] != shapes:
        return "predictor arrays have inconsistent shapes"
    if (np.diff(p.degrees) < 0).any() or p.degrees.min() < 0 or p.degrees.max() > d - 2:
        return "predictor degrees out of order or range"
    if (p.shifts < 0).any() or (p.shifts > 62).any() or p.shifts[2] < 1:
        return "predictor shifts out of range"  # the output keeps a fractional bit: rounding (and mirroring) need it
    # every sum must stay exact in float64 for any input: the largest possible |sum| below 2**52
    # (in float64 from the start: int64's abs and sums can wrap around)
    w1, b1, w2, b2, w3, b3 = (a.astype(np.float64) for a in arrays[1:7])
    if any(np.abs(a).max() >= 2.0 ** 52 for a in (w1, b1, w2, b2, w3, b3)):
        return "predictor weights too large for exact arithmetic"
    largest = [MAX_INPUT * np.abs(w1).sum(axis=1) + np.abs(b1), CLAMP * np.abs(w2).sum(axis=1) + np.abs(b2),
               CLAMP * np.abs(w3).sum(axis=1) + np.abs(b3) + 2.0 ** p.shifts[2]]
    if any(a.max() >= 2.0 ** 52 for a in largest):
        return "predictor weights too large for exact arithmetic"
    g = p.degrees
    if ((p.w1 != 0) & (np.arange(d)[None, :] > g[:, None])).any() \
            or ((p.w2 != 0) & (g[None, :] > g[:, None])).any() \
            or ((p.w3 != 0) & (g[None, :] >= np.arange(d)[:, None])).any():
        return "predictor weights see components they must not"
    return _spread_problem(p, units, d)


def _spread_problem(p: Predictor, units: int, d: int) -> str | None:
    spread = [p.w4, p.b4, p.edges]
    if all(a is None for a in spread):
        return None
    if not all(isinstance(a, np.ndarray) and a.dtype.kind == "i" for a in spread):
        return "the spread head needs w4, b4 and edges, integer numpy arrays"
    if p.w4.shape != (d, units) or p.b4.shape != (d,) or p.edges.ndim != 2 or p.edges.shape[0] != d \
            or not 1 <= p.edges.shape[1] < 256:
        return "predictor spread head has inconsistent shapes"
    if (np.diff(p.edges, axis=1) < 0).any():
        return "predictor spread edges out of order"
    w4, b4, edges = (a.astype(np.float64) for a in spread)
    if np.abs(b4).max() >= 2.0 ** 52 or np.abs(edges).max() >= 2.0 ** 52 \
            or (CLAMP * np.abs(w4).sum(axis=1) + np.abs(b4)).max() >= 2.0 ** 52:
        return "predictor weights too large for exact arithmetic"
    if ((p.w4 != 0) & (p.degrees[None, :] >= np.arange(d)[:, None])).any():
        return "predictor weights see components they must not"
    return None


def _rounded(mu: torch.Tensor, shift: int) -> torch.Tensor:
    """int64 round(mu / 2**shift), halves up: exact for integer-valued float64 below 2**52."""
    half = 2.0 ** (shift - 1) if shift > 0 else 0.0
    return torch.floor((mu + half) * 2.0 ** -shift).to(torch.int64)


def _rounded_up(mu: torch.Tensor, shift: int) -> torch.Tensor:
    """Whether :func:`_rounded` rounded ``mu / 2**shift`` up (to a value above it): exact, as it."""
    half = 2.0 ** (shift - 1) if shift > 0 else 0.0
    v = (mu + half) * 2.0 ** -shift
    return (v - torch.floor(v)) < 0.5


class PredictorRun:
    """The predictions for ``n`` images, the decoder's way: ``prediction(k)`` once components
    ``< k`` have been fed with ``feed`` (each prediction computes the hidden units it newly can).
    Calls must go in order, k = 0, 1, ...: each step reads what the earlier ones wrote.

    It keeps units by images (each unit's values contiguous), so that a step writes its new units
    in place and reads the earlier ones as one block, with no copies."""

    def __init__(self, predictor: Predictor, n: int) -> None:
        self.p = predictor
        self.steps = predictor._steps
        self.scale = [2.0 ** -int(s) for s in predictor.shifts[:2]]
        shift = int(predictor.shifts[2])
        self.unscale = 2.0 ** -shift
        # every entry is written before it is read: units of degree < k and components < k by step k
        self.x = torch.empty(predictor.size, n, dtype=torch.float64)
        self.h1 = torch.empty(len(predictor.degrees), n, dtype=torch.float64)
        self.h2 = torch.empty_like(self.h1)
        # the heads of every component (d, heads, n), their biases to start with, summed up as units come
        biases = predictor._head_biases  # (a copy: for n = 1, expand().contiguous() would be these very numbers)
        self.heads = torch.empty(*biases.shape[:2], n, dtype=torch.float64).copy_(biases.expand(-1, -1, n))
        self.frac = torch.empty(n, dtype=torch.float64)
        self.up = torch.empty(n, dtype=torch.bool) if predictor.has_spread else None

    def feed(self, k: int, q: np.ndarray) -> None:
        values = np.asarray(q, dtype=np.int64)
        if values.size and np.abs(values).max() > MAX_INPUT:
            raise ValueError("predictor input out of range")
        self.x[k] = torch.from_numpy(values.astype(np.float64))

    def prediction(self, k: int) -> np.ndarray:
        """int64 (n,): the prediction of component k; computes the hidden units of degree k - 1."""
        return self._prediction(k).to(torch.int64).numpy()

    def _prediction(self, k: int) -> torch.Tensor:
        """float64 (n,), integer-valued: the prediction of component k (a view into the run's heads,
        which this call scales in place: call it once per k, in order); with the spread head it also
        finishes component k's spread score (for :meth:`_spread_class`) and ``up``."""
        lo, hi, w1, b1, w2, b2, heads_w = self.steps[k]
        if hi > lo:
            for h, w, b, inputs, scale in ((self.h1, w1, b1, self.x[:k], self.scale[0]),
                                           (self.h2, w2, b2, self.h1[:hi], self.scale[1])):
                units = h[lo:hi]
                torch.addmm(b, w, inputs, out=units)
                units.mul_(scale).clamp_(0.0, CLAMP).floor_()  # = min(floor(relu * scale), CLAMP): CLAMP is whole
            # the new units' share of every later component's heads, added now while they are in the
            # caches: each unit is read once, not once per later component (exact sums: any order)
            later = self.heads[k:].view(-1, self.heads.shape[2])
            later.addmm_(heads_w, self.h2[lo:hi])
        mu = self.heads[k, 0].mul_(self.unscale)
        if self.up is not None:  # as _rounded_up (v - floor(v), not torch.frac: that is negative below 0)
            torch.sub(mu, torch.floor(mu, out=self.frac), out=self.frac)
            torch.lt(self.frac, 0.5, out=self.up)
        return mu.floor_()  # round(mu / 2**shift), halves up, as _rounded

    def _spread_class(self, k: int) -> torch.Tensor:
        """int64 (n,): component k's spread class; after ``_prediction(k)``, which computed its score."""
        return torch.bucketize(self.heads[k, 1], self.p._edges[k], right=True)  # edges at or below: as _classes

    def undo_residuals(self, residuals: np.ndarray, zero: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The decoder's whole loop: symbols (int32 (n, d)) from ``residuals`` (n, d), what
        :meth:`Predictor.residuals` gives."""
        by_component = torch.from_numpy(np.ascontiguousarray(np.asarray(residuals, dtype=np.float64).T))
        return self.undo(lambda k, classes: by_component[k], zero, levels)

    def undo(self, residual_of: Callable[[int, torch.Tensor | None], torch.Tensor], zero: np.ndarray,
             levels: np.ndarray) -> np.ndarray:
        """Symbols (int32 (n, d)), component by component: the prediction from the symbols so far
        (and with the spread head, the spread classes), then ``residual_of(k, classes)``, component
        k's residuals as :meth:`Predictor.residuals_and_classes` gives them (float64 (n,); with the
        spread head mirrored back here), which give the symbols; those are fed back (as ``symbol -
        zero``, below ``levels <= MAX_INPUT`` in size, so they need no check)."""
        zero = np.asarray(zero, dtype=np.float64)
        for k in range(self.p.size):
            mu = self._prediction(k)
            x = self.x[k]
            if self.up is None:
                torch.add(residual_of(k, None), mu, out=x)
            else:
                residual = residual_of(k, self._spread_class(k))
                torch.add(torch.where(self.up, -residual, residual), mu, out=x)
            x.add_(zero[k])
            torch.remainder(x, float(levels[k]), out=x)
            x.sub_(zero[k])
        return (self.x.T.numpy() + zero).astype(np.int32)


def fit_predictor(q: np.ndarray, *, hidden: int = HIDDEN, epochs: int = EPOCHS, seed: int = 0,
                  batch: int = 256) -> Predictor:
    """Train a float MADE to predict each component of ``q`` (integers (n, d), the training codes'
    components) from the earlier ones (mean squared error), then store it as integers."""
    n, d = q.shape
    generator = torch.Generator().manual_seed(seed)
    degrees = torch.sort(torch.arange(hidden) % (d - 1)).values
    masks = [(degrees[:, None] >= torch.arange(d)[None, :]).float(), (degrees[:, None] >= degrees[None, :]).float(),
             (torch.arange(d)[:, None] > degrees[None, :]).float()]
    shapes = [(hidden, d), (hidden, hidden), (d, hidden)]
    weights = []
    for shape in shapes:
        bound = 1.0 / shape[1] ** 0.5
        weights.append(torch.nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound))
    biases = [torch.nn.Parameter(torch.zeros(shape[0])) for shape in shapes]
    # at least one symbol: a component that hardly varies (or never: a dead code unit) would otherwise
    # blow up its weights once folded into the integer net, and with them the scale of all the others
    scale = torch.tensor(np.maximum(q.std(axis=0), 1.0), dtype=torch.float32)
    x = torch.tensor(q, dtype=torch.float32) / scale

    def forward(inputs):
        h = inputs
        for i, (w, b, m) in enumerate(zip(weights, biases, masks)):
            h = torch.nn.functional.linear(h, w * m, b)
            h = torch.relu(h) if i < 2 else h
        return h

    _train([*weights, *biases], lambda rows: ((forward(x[rows]) - x[rows]) ** 2).mean(), n,
           epochs=epochs, batch=batch, generator=generator)
    with torch.no_grad():
        w = [(wi * m).double() for wi, m in zip(weights, masks)]
        b = [bi.double() for bi in biases]
    s = scale.double()
    w[0] = w[0] / s[None, :]                             # the net read q / scale: read q
    w[2], b[2] = w[2] * s[:, None], b[2] * s             # ... and predicted q / scale: predict q
    return _as_integers(degrees.numpy(), w, b, torch.tensor(q, dtype=torch.float64))


def _train(parameters: list[torch.Tensor], batch_loss: Callable[[torch.Tensor], torch.Tensor], n: int, *,
           epochs: int, batch: int, generator: torch.Generator) -> None:
    """Adam (2e-3) with a cosine schedule over ``epochs`` shuffled passes of ``n`` rows in minibatches
    of ``batch``; ``batch_loss(rows)`` is the loss of the rows with those indices."""
    optimizer = torch.optim.Adam(parameters, 2e-3)
    steps = (n + batch - 1) // batch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs * steps))
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps):
            loss = batch_loss(order[i * batch:(i + 1) * batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def _power_of_two_scale(w: torch.Tensor) -> int:
    """e such that max |w| * 2**e is at most 2**WEIGHT_BITS."""
    top = float(w.abs().max())
    return int(np.floor(np.log2((1 << WEIGHT_BITS) / top))) if top > 0 else 0


def _as_integers(degrees: np.ndarray, w: list[torch.Tensor], b: list[torch.Tensor], q: torch.Tensor) -> Predictor:
    """Integer weights and power-of-two shifts for a float MADE; ``q`` (its training inputs) sets the
    shifts that bring each hidden layer to about ACTIVATION_BITS bits."""
    ints_w, ints_b, shifts = [], [], []
    inputs, exponent = q, 0  # inputs are the float values times 2**exponent
    for layer in range(3):
        e = _power_of_two_scale(w[layer])
        wi = torch.round(w[layer] * 2.0 ** e)
        bi = torch.round(b[layer] * 2.0 ** (e + exponent))
        ints_w.append(wi)
        ints_b.append(bi)
        a = inputs @ wi.T + bi
        if layer < 2:
            top = float(a.clamp(min=0).max())
            shift = max(0, int(np.ceil(np.log2(top / (1 << ACTIVATION_BITS)))) if top > 0 else 0)
            inputs = torch.floor(a.clamp(min=0) * 2.0 ** -shift).clamp(max=CLAMP)
            exponent = exponent + e - shift
        else:
            shift = exponent + e  # the output is the prediction times 2**shift
            if shift < 1:  # keep at least one fractional bit for rounding: scale the last layer up
                ints_w[-1] = ints_w[-1] * 2.0 ** (1 - shift)
                ints_b[-1] = ints_b[-1] * 2.0 ** (1 - shift)
                shift = 1
        shifts.append(shift)
    as_int = lambda t: t.numpy().astype(np.int64)  # noqa: E731
    return Predictor(degrees=degrees.astype(np.int64), w1=as_int(ints_w[0]), b1=as_int(ints_b[0]),
                     w2=as_int(ints_w[1]), b2=as_int(ints_b[1]), w3=as_int(ints_w[2]), b3=as_int(ints_b[2]),
                     shifts=np.array(shifts, dtype=np.int64))


def fit_spread_head(predictor: Predictor, q: np.ndarray, levels: np.ndarray, *,
                    classes: int = SPREAD_CLASSES, epochs: int = 10, seed: int = 0, batch: int = 256) -> Predictor:
    """``predictor`` with a spread head learned from ``q`` (integers (n, d), the training codes'
    components): a masked linear layer on the second hidden layer's integer activations, trained
    for the log-scale of a Laplace distribution of each component's residual, stored as integers;
    each component's ``classes - 1`` edges are quantiles of its integer scores on ``q``, so that
    its classes hold about equal shares of the training codes."""
    n, d = q.shape
    values = np.asarray(q, dtype=np.int64)
    levels = np.asarray(levels, dtype=np.int64)
    wrapped = np.mod(values - predictor.predict(values), levels)
    miss = torch.tensor(np.abs(np.where(wrapped > levels // 2, wrapped - levels, wrapped)), dtype=torch.float32)
    hidden = torch.cat([predictor._hidden(torch.from_numpy(values[s:s + CHUNK].astype(np.float64)))
                        for s in range(0, n, CHUNK)])
    features = (hidden * 2.0 ** -ACTIVATION_BITS).float()
    mask = torch.tensor(predictor.degrees[None, :] < np.arange(d)[:, None], dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.nn.Parameter(torch.zeros(d, len(predictor.degrees)))
    bias = torch.nn.Parameter(torch.log(miss.mean(dim=0) + 0.5))

    def laplace_loss(rows: torch.Tensor) -> torch.Tensor:
        # Laplace negative log-likelihood; |r| + 0.3 keeps a residual of 0 from driving the scale to 0
        log_scale = torch.nn.functional.linear(features[rows], weight * mask, bias)
        return ((miss[rows] + 0.3) * torch.exp(-log_scale) + log_scale).mean()

    _train([weight, bias], laplace_loss, n, epochs=epochs, batch=batch, generator=generator)
    with torch.no_grad():
        w = (weight * mask).double()
        e = _power_of_two_scale(w)
        w4 = torch.round(w * 2.0 ** e)
        b4 = torch.round(bias.double() * 2.0 ** (e + ACTIVATION_BITS))  # the score is about 2**(e + 12) log-scales
        scores = torch.addmm(b4, hidden, w4.T).numpy()
    quantiles = np.arange(1, classes) / classes
    edges = np.stack([np.quantile(scores[:, k], quantiles, method="higher") for k in range(d)])
    fields = {name: getattr(predictor, name) for name in Predictor.field_names()}
    return Predictor(**fields, w4=w4.numpy().astype(np.int64), b4=b4.numpy().astype(np.int64),
                     edges=np.rint(edges).astype(np.int64))
