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
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

__all__ = ["Predictor", "PredictorRun", "fit_predictor", "HIDDEN", "EPOCHS"]

HIDDEN = 256        # units per hidden layer: 10% fewer bytes for mnist-conv at 7 bits (1024: 13%, 4x the work)
EPOCHS = 20
WEIGHT_BITS = 15    # weights are integers of at most 15 bits (plus sign)
ACTIVATION_BITS = 12  # hidden activations are scaled to about 12 bits on the training codes ...
CLAMP = float(1 << 20)  # ... and clamped at 20, so no sum can reach 2**53: exactness holds for any input
MAX_INPUT = 1 << 16  # components are symbols minus the zero level: |q| < 2**16 at 16 bits
CHUNK = 4096  # images per pass: a pass holds CHUNK x (2 H + d) float64 numbers (about 18 MB at H = 256)


@dataclass(frozen=True, eq=False)
class Predictor:
    """An integer MADE (see the module docstring). Weights are int64 arrays; ``shifts`` holds the
    right shifts after hidden layers 1 and 2 and of the output (the output is the prediction times
    ``2**shifts[2]``)."""

    degrees: np.ndarray  # (H,) non-decreasing, 0 .. d-2
    w1: np.ndarray       # (H, d), zero where component > degree
    b1: np.ndarray       # (H,)
    w2: np.ndarray       # (H, H), zero where the input unit's degree > the unit's
    b2: np.ndarray       # (H,)
    w3: np.ndarray       # (d, H), zero where the unit's degree >= k
    b3: np.ndarray       # (d,)
    shifts: np.ndarray   # (3,)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)
        for name in ("degrees", "w1", "b1", "w2", "b2", "w3", "b3", "shifts"):  # frozen, as the table's digest
            value = np.array(getattr(self, name), dtype=np.int64, copy=True)
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def size(self) -> int:
        return int(self.w1.shape[1])

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype=np.int64)
                for name in ("degrees", "w1", "b1", "w2", "b2", "w3", "b3", "shifts")}

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
        """Per component k: the slice of hidden units of degree k - 1 and the contiguous weight blocks
        that compute them (as column vectors of biases, for the decoder's units-by-images layout)
        and prediction k."""
        t = self._float
        end = np.searchsorted(self.degrees, np.arange(self.size), side="right")  # units of degree <= g
        steps = [(0, 0, None, None, None, None, None, float(t["b3"][0]))]
        for k in range(1, self.size):
            g = k - 1
            lo, hi = (int(end[g - 1]) if g else 0), int(end[g])
            steps.append((lo, hi, t["w1"][lo:hi, :g + 1].contiguous(), t["b1"][lo:hi, None].clone(),
                          t["w2"][lo:hi, :hi].contiguous(), t["b2"][lo:hi, None].clone(),
                          t["w3"][k, :hi].contiguous(), float(t["b3"][k])))
        return steps

    def predict(self, q: np.ndarray) -> np.ndarray:
        """Predictions (int64 (n, d)) for components ``q`` (integers (n, d)), the encoder's way: all
        at once, in whole matrix products (chunks of CHUNK images bound the memory)."""
        values = np.asarray(q, dtype=np.int64)
        if values.size and np.abs(values).max() > MAX_INPUT:
            raise ValueError("predictor input out of range")
        t = self._float
        out = np.empty(values.shape, np.int64)
        for start in range(0, len(values), CHUNK):
            x = torch.from_numpy(values[start:start + CHUNK].astype(np.float64))
            h = torch.addmm(t["b1"], x, t["w1"].T).clamp_(min=0).mul_(2.0 ** -int(self.shifts[0]))
            h = torch.floor_(h).clamp_(max=CLAMP)
            h = torch.addmm(t["b2"], h, t["w2"].T).clamp_(min=0).mul_(2.0 ** -int(self.shifts[1]))
            h = torch.floor_(h).clamp_(max=CLAMP)
            mu = torch.addmm(t["b3"], h, t["w3"].T)
            out[start:start + len(x)] = _rounded(mu, int(self.shifts[2])).numpy()
        return out


    def residuals(self, symbols: np.ndarray, zero: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """What the range-ar coder codes, the encoder's way (all predictions in one pass): int32 (n, d)
        ``(symbol - zero - prediction) mod levels``, the prediction made from ``symbols - zero``.
        :meth:`PredictorRun.undo_residuals` is its inverse."""
        q = np.asarray(symbols, dtype=np.int64) - np.asarray(zero, dtype=np.int64)
        return np.mod(q - self.predict(q), levels).astype(np.int32)


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
    if (p.shifts < 0).any() or (p.shifts > 62).any():
        return "predictor shifts out of range"
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
    return None


def _rounded(mu: torch.Tensor, shift: int) -> torch.Tensor:
    """int64 round(mu / 2**shift), halves up: exact for integer-valued float64 below 2**52."""
    half = 2.0 ** (shift - 1) if shift > 0 else 0.0
    return torch.floor((mu + half) * 2.0 ** -shift).to(torch.int64)


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
        self.half, self.unscale = (2.0 ** (shift - 1) if shift > 0 else 0.0), 2.0 ** -shift
        # every entry is written before it is read: units of degree < k and components < k by step k
        self.x = torch.empty(predictor.size, n, dtype=torch.float64)
        self.h1 = torch.empty(len(predictor.degrees), n, dtype=torch.float64)
        self.h2 = torch.empty_like(self.h1)
        self.mu = torch.empty(n, dtype=torch.float64)

    def feed(self, k: int, q: np.ndarray) -> None:
        values = np.asarray(q, dtype=np.int64)
        if values.size and np.abs(values).max() > MAX_INPUT:
            raise ValueError("predictor input out of range")
        self.x[k] = torch.from_numpy(values.astype(np.float64))

    def prediction(self, k: int) -> np.ndarray:
        """int64 (n,): the prediction of component k; computes the hidden units of degree k - 1."""
        return self._prediction(k).to(torch.int64).numpy()

    def _prediction(self, k: int) -> torch.Tensor:
        """float64 (n,), integer-valued: the prediction of component k (a buffer the next call reuses)."""
        lo, hi, w1, b1, w2, b2, w3, b3 = self.steps[k]
        if hi > lo:
            for h, w, b, inputs, scale in ((self.h1, w1, b1, self.x[:k], self.scale[0]),
                                           (self.h2, w2, b2, self.h1[:hi], self.scale[1])):
                units = h[lo:hi]
                torch.addmm(b, w, inputs, out=units)
                units.clamp_(min=0).mul_(scale).floor_().clamp_(max=CLAMP)
        if hi:
            torch.mv(self.h2[:hi].T, w3, out=self.mu)
            self.mu.add_(b3 + self.half)
        else:
            self.mu.fill_(b3 + self.half)
        return self.mu.mul_(self.unscale).floor_()  # round(mu / 2**shift), halves up, as _rounded

    def undo_residuals(self, residuals: np.ndarray, zero: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The decoder's whole loop: symbols (int32 (n, d)) from ``residuals`` (n, d), the range-ar
        coder's ``(symbol - zero - prediction) mod levels`` (:meth:`Predictor.residuals`). Component by component: the prediction
        from the symbols so far, the symbol, which is fed back (as ``symbol - zero``, below
        ``levels <= MAX_INPUT`` in size, so it needs no check)."""
        zero = np.asarray(zero, dtype=np.float64)
        shifted = torch.from_numpy(np.asarray(residuals, dtype=np.float64).T + zero[:, None])
        for k in range(self.p.size):
            x = self.x[k]
            torch.add(shifted[k], self._prediction(k), out=x)
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

    optimizer = torch.optim.Adam([*weights, *biases], 2e-3)
    steps = (n + batch - 1) // batch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs * steps))
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps):
            rows = order[i * batch:(i + 1) * batch]
            loss = ((forward(x[rows]) - x[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        w = [(wi * m).double() for wi, m in zip(weights, masks)]
        b = [bi.double() for bi in biases]
    s = scale.double()
    w[0] = w[0] / s[None, :]                             # the net read q / scale: read q
    w[2], b[2] = w[2] * s[:, None], b[2] * s             # ... and predicted q / scale: predict q
    return _as_integers(degrees.numpy(), w, b, torch.tensor(q, dtype=torch.float64))


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
