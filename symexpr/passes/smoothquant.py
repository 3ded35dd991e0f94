"""SmoothQuant smoothing (Xiao et al., 2023): move activation outliers into the weights, exactly.

For the activation ``x`` (..., K) that one or more linear sites read, with
``max|X_j|`` from calibration and ``max|W_j|`` the largest weight of input
channel ``j`` over every site reading ``x``::

    s_j = clip(max|X_j| ** alpha / max|W_j| ** (1 - alpha), 1e-5, 1e5)
    x @ W  ==  (x / s) @ (diag(s) W)

By default (``sites="norm_fed"``, the paper's choice) only activations that a
LayerNorm or RMSNorm produces are smoothed; ``sites="all"`` smooths every
linear's input.  Each site's weight becomes ``diag(s) W``.  ``x / s`` is folded into the op
producing ``x`` where that is exact and nothing else reads ``x``: a LayerNorm
or RMSNorm with constant affine parameters (divide them), a linear layer with
a constant weight (divide its output columns), and elementwise programs that
are positively homogeneous in their inputs (bias adds, ReLU: ``max(s*a, 0) ==
s*max(a, 0)`` for ``s > 0``), folded through recursively.  Anywhere else (a
post-LN transformer's LayerNorm output is also the residual stream) it stays
an explicit ``x * (1/s)``, which fusion merges into the activation quantizer.

``alpha="auto"`` searches alpha in 0, 0.05, ..., 1 for each activation, on the
calibration samples, minimising the squared error of the sites' outputs
after fake quantization with the given :class:`~symexpr.passes.w8a8.QuantScheme`;
an activation none of them improves on is left unsmoothed.
"""

from __future__ import annotations

import numbers

import numpy as np

from symexpr.graph.basic import Constant, Variable
from symexpr.ops import elemwise as ew
from symexpr.ops.matmul import MatMul
from symexpr.ops.nnet import LayerNorm, RMSNorm
from symexpr.ops.shape import Reshape
from symexpr.passes.fusion import program_of
from symexpr.passes.linear_sites import (
    distinct_weights,
    linear_sites,
    quant_notes,
    read_only_by_sites,
    sites_by_activation,
    weight_key,
)
from symexpr.passes.w8a8 import QuantScheme, fake_quant_error

#: Bounds on a smoothing factor (the reference clamps below at 1e-5; above, a channel calibration
#: never saw active would otherwise be amplified without limit).
SCALE_BOUNDS = (1e-5, 1e5)
#: Which activations the pass smooths: ``"norm_fed"`` (the paper's choice: outputs of a LayerNorm or
#: RMSNorm) or ``"all"`` (every activation a linear site reads).
SITE_POLICIES = ("norm_fed", "all")
#: The alphas ``alpha="auto"`` tries.
AUTO_ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 21))

_LINEAR_SCALAR_OPS = {"add", "sub", "maximum", "minimum"}
_PASS_THROUGH_OPS = {"neg", "identity", "relu", "abs"}


def smoothing_scales(act_max, w_max, alpha: float, dtype="float32") -> np.ndarray:
    """``clip(act_max ** alpha / w_max ** (1 - alpha), *SCALE_BOUNDS)`` as float32 (inputs clamped at 1e-5).

    For a ``dtype`` narrower than float32 (float16) ``s`` is also kept where
    ``1/s`` is a normal number and ``W_j * s_j`` cannot overflow.
    """
    act = np.maximum(np.asarray(act_max, np.float64), 1e-5)
    w = np.maximum(np.asarray(w_max, np.float64), 1e-5)
    lo, hi = SCALE_BOUNDS
    info = np.finfo(np.dtype(dtype)) if np.issubdtype(np.dtype(dtype), np.floating) else np.finfo(np.float32)
    if info.bits < 32:
        hi = np.minimum(min(hi, 1.0 / float(info.tiny)), float(info.max) / 2 / w)
    return np.clip(act**alpha / w ** (1.0 - alpha), lo, hi).astype(np.float32)


class SmoothQuant:
    """The smoothing pass: call it on a FunctionGraph (``passes=[..., SmoothQuant(stats)]``).

    Parameters
    ----------
    stats : CalibrationStats
        From :func:`symexpr.quant.calibrate` on the same graph.
    alpha : float or "auto" or dict
        Migration strength in [0, 1]; ``"auto"`` searches it per activation;
        a dict maps weight keys to alphas (others get 0.5).
    scheme : QuantScheme, optional
        The quantization ``alpha="auto"`` measures error under (default
        per-channel weights, per-token activations).
    sites : {"norm_fed", "all"}
        ``"norm_fed"`` (default) smooths only activations a LayerNorm or
        RMSNorm produces, as the paper and its reference code do; ``"all"``
        also smooths the inputs of the other linears (a GELU's output, an
        attention output).
    """

    name = "smoothquant"

    def __init__(self, stats, alpha=0.5, scheme: QuantScheme | None = None, sites: str = "norm_fed"):
        values = list(alpha.values()) if isinstance(alpha, dict) else [] if isinstance(alpha, str) and alpha == "auto" else [alpha]
        for value in values:
            if value is None and isinstance(alpha, dict):
                continue  # this activation stays unsmoothed
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"smooth: alpha must be a number in [0, 1], 'auto' or a dict of them, got {alpha!r}")
        if sites not in SITE_POLICIES:
            raise ValueError(f"smooth: sites must be one of {', '.join(map(repr, SITE_POLICIES))}, got {sites!r}")
        self.stats = stats
        self.alpha = alpha
        self.sites = sites
        self.scheme = scheme or QuantScheme()

    def __repr__(self):
        return f"SmoothQuant(alpha={self.alpha!r}, sites={self.sites!r})"

    def __call__(self, fgraph) -> None:
        notes = quant_notes(fgraph)
        distinct_weights(fgraph)
        skipped: set = set()
        # One activation at a time, each on the graph the previous ones left: folding into a linear
        # producer rescales that producer's (possibly already smoothed) weight.
        while True:
            group = next(
                (g for g in sites_by_activation(linear_sites(fgraph))
                 if not any(site.key in notes["smoothed"] or site.key in skipped for site in g)),
                None,
            )
            if group is None:
                return
            if not all(site.key in self.stats for site in group):
                skipped.update(site.key for site in group)
                continue
            self._smooth(fgraph, group, notes)

    def _smooth(self, fgraph, group, notes) -> None:
        clients = fgraph.clients
        x = group[0].x
        act_max = np.max([self.stats[site.key].channel_max for site in group], axis=0)
        w_max = np.max([np.max(np.abs(site.weight), axis=1) for site in group], axis=0)
        act_max = np.nan_to_num(act_max, nan=0.0)
        if self.sites == "norm_fed" and not _norm_output(x):
            alpha, why = None, "none (not a norm's output)"
        else:
            # None: alpha="auto" found smoothing does not help, or the alpha dict says not to smooth.
            alpha, why = self._alpha(group, act_max, w_max), "none"
        if alpha is None:
            ones = np.ones_like(act_max, dtype=np.float32)
            for site in group:
                notes["smoothed"][site.key] = {"original": site.key, "s": ones, "alpha": None, "where": why}
            return
        s = smoothing_scales(act_max, w_max, alpha, x.dtype)
        inv_s = (np.float32(1) / s).astype(x.dtype)
        folded = _fold(x, inv_s, clients, notes) if read_only_by_sites(group, clients) else None
        where = _describe_fold(x) if folded is not None else "explicit x * (1/s)"
        x_new = folded if folded is not None else ew.mul(x, Constant(inv_s))
        replacements = {}
        for site in group:
            w_new = Constant((site.weight.astype(np.float64) * s[:, None]).astype(site.weight.dtype))
            replacements[site.output] = MatMul()(x_new, w_new)
            notes["smoothed"][weight_key(w_new)] = {"original": site.key, "s": s, "alpha": alpha, "where": where}
        fgraph.replace_all(replacements, reason="smoothquant", pass_name="smoothquant")

    def _alpha(self, group, act_max, w_max) -> float | None:
        if isinstance(self.alpha, dict):
            alpha = self.alpha.get(group[0].key, 0.5)
            return None if alpha is None else float(alpha)
        if self.alpha != "auto":
            return float(self.alpha)
        samples = [self.stats[site.key].samples for site in group]
        x = next((a for a in samples if a.size), None)
        if x is None:
            return 0.5
        best = None
        best_err = sum(fake_quant_error(x, site.weight, self.scheme) for site in group)
        for alpha in AUTO_ALPHAS:
            s = smoothing_scales(act_max, w_max, alpha, group[0].x.dtype)
            err = sum(fake_quant_error(x, site.weight, self.scheme, s) for site in group)
            if err < best_err:
                best, best_err = alpha, err
        return best


def _norm_output(x: Variable) -> bool:
    """Whether ``x`` is a LayerNorm/RMSNorm output, possibly reshaped with its channel axis kept."""
    while x.owner is not None and isinstance(x.owner.op, Reshape):
        source = x.owner.inputs[0]
        if source.type.shape[-1:] != x.type.shape[-1:] or None in x.type.shape[-1:]:
            return False
        x = source
    return x.owner is not None and isinstance(x.owner.op, (LayerNorm, RMSNorm))


def _describe_fold(x: Variable) -> str:
    node = x.owner
    return f"folded into {node.op.display_name()}"


def _fold(var: Variable, inv_s: np.ndarray, clients, notes) -> Variable | None:
    """``var * inv_s`` computed by rebuilding ``var``'s producer with scaled constants, or None when not exact.

    ``var``'s own consumers are the caller's concern; the producers folded
    through here must have no consumer but the one being rebuilt.
    """
    if isinstance(var, Constant):
        data = np.asarray(var.data)
        if data.ndim and data.shape[-1] not in (1, inv_s.shape[0]):
            return None
        return Constant((data * inv_s).astype(data.dtype)) if data.ndim else None
    node = var.owner
    if node is None:
        return None
    op = node.op
    if isinstance(op, (LayerNorm, RMSNorm)):
        params = node.inputs[1:]
        has_weight = op.has_weight
        if not all(isinstance(p, Constant) for p in params):
            return None
        scaled = [(np.asarray(p.data) * inv_s).astype(p.dtype) for p in params]
        if not has_weight:
            scaled.insert(0, inv_s.astype(var.dtype))
        if isinstance(op, LayerNorm):
            return LayerNorm(op.eps, True, op.has_bias)(node.inputs[0], *scaled)
        return RMSNorm(op.eps, True)(node.inputs[0], *scaled)
    if isinstance(op, MatMul):
        h, w = node.inputs
        if not isinstance(w, Constant) or w.ndim != 2:
            return None
        data = np.asarray(w.data)
        scaled = Constant((data * inv_s[None, :]).astype(data.dtype))
        key = weight_key(w)
        if key in notes["smoothed"]:  # a smoothed site whose output columns now carry the next one's 1/s
            notes["smoothed"][weight_key(scaled)] = notes["smoothed"][key]
        return MatMul()(h, scaled)
    program = program_of(op)
    if program is None or not _homogeneous(program):
        return None
    new_inputs = []
    for v in node.inputs:
        if not isinstance(v, Constant) and any(c == "output" or c[0] is not node for c in clients.get(v, [])):
            return None
        folded = _fold(v, inv_s, clients, notes)
        if folded is None:
            return None
        new_inputs.append(folded)
    out = op.make_node(*new_inputs).outputs[0]
    return out if out.type.shape == var.type.shape else None


def _homogeneous(program) -> bool:
    """Whether the program is positively homogeneous of degree 1 when every input is scaled alike."""
    degrees = []
    for scalar_op, args in program:
        ds = []
        for a in args:
            if a[0] == "in":
                ds.append(1)
            elif a[0] == "tmp":
                ds.append(degrees[a[1]])
            else:
                ds.append("zero" if np.asarray(a[1]) == 0 else 0)
        name = scalar_op.name
        if name in _LINEAR_SCALAR_OPS:
            kinds = {1 if d == "zero" else d for d in ds}
            if kinds != {1} and kinds != {0}:
                return False
            degrees.append(kinds.pop())
        elif name in _PASS_THROUGH_OPS:
            degrees.append(1 if ds[0] == "zero" else ds[0])
        elif name == "mul":
            total = sum(0 if d == "zero" else d for d in ds)
            if total > 1:
                return False
            degrees.append(total)
        elif name in ("true_divide", "divide") and (ds[1] == 0):
            degrees.append(0 if ds[0] == "zero" else ds[0])
        elif all(d in (0, "zero") for d in ds):
            degrees.append(0)
        else:
            return False
    return bool(degrees) and degrees[-1] == 1
