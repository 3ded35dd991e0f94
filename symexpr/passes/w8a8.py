"""W8A8 insertion: ``x @ W`` with a constant ``W`` becomes an int8 contraction with fused (de)quantization.

Each linear site (:mod:`symexpr.passes.linear_sites`) becomes::

    xq, sx = quantize_activation(x)                  # per token, per tensor, or a static scale
    y = qlinear(xq, Wq, sx, sw)                       # int8 x int8 -> int32 -> (acc * sx) * sw

with ``W`` quantized once, now, to ``Wq`` (per output channel or per tensor,
8-bit or 7-bit).  Sites reading one activation share its quantizer.  The pass
ends by running elementwise and reduction fusion again, so that the
quantizer's arithmetic merges with the op producing ``x`` (and a smoothing
``x * (1/s)``) and its row maxima become one fused reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.ops import elemwise as ew
from symexpr.ops import scalar as ps
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.quant import (
    ACTIVATION_GRANULARITIES,
    WEIGHT_BITS,
    WEIGHT_GRANULARITIES,
    absmax_scale,
    qlinear,
    quantize_activation,
    quantize_rows,
    quantize_values,
    quantize_weight,
)
from symexpr.passes.fusion import elementwise_expression, fuse_elemwise, fuse_reductions, program_of
from symexpr.passes.linear_sites import (
    distinct_weights,
    linear_sites,
    quant_notes,
    read_only_by_sites,
    sites_by_activation,
)
from symexpr.passes.qlinear_epilogue import fuse_qlinear_epilogues


@dataclass(frozen=True)
class QuantScheme:
    """How weights and activations are quantized.

    Attributes
    ----------
    weights : {"per_channel", "per_tensor"}
    activations : {"per_token", "per_tensor"}
    static : bool
        Per-tensor activation scales fixed at calibration (needs statistics) instead of computed per call.
    weight_bits : {8, 7}
    """

    weights: str = "per_channel"
    activations: str = "per_token"
    static: bool = False
    weight_bits: int = 8

    def __post_init__(self):
        for name, value, choices in (
            ("weights", self.weights, WEIGHT_GRANULARITIES),
            ("activations", self.activations, ACTIVATION_GRANULARITIES),
            ("weight_bits", self.weight_bits, WEIGHT_BITS),
        ):
            if value not in choices:
                raise ValueError(f"QuantScheme: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if self.static and self.activations != "per_tensor":
            raise ValueError("QuantScheme: static activation scales are per tensor (activations='per_tensor')")

    def describe(self) -> str:
        kind = "static" if self.static else "dynamic"
        return f"W{self.weight_bits} {self.weights} / A8 {self.activations} {kind}"


#: The paper's efficiency levels (Table 2) and the default per-channel / per-token scheme.
SCHEMES = {
    "per_channel_per_token": QuantScheme("per_channel", "per_token"),
    "O1": QuantScheme("per_tensor", "per_token"),
    "O2": QuantScheme("per_tensor", "per_tensor"),
    "O3": QuantScheme("per_tensor", "per_tensor", static=True),
}


def resolve_scheme(scheme, weight_bits: int | None = None) -> QuantScheme:
    """A :class:`QuantScheme` from a name in :data:`SCHEMES` or a scheme, with ``weight_bits`` if given."""
    if isinstance(scheme, str):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}")
        scheme = SCHEMES[scheme]
    elif not isinstance(scheme, QuantScheme):
        raise TypeError(f"scheme must be a scheme name or a QuantScheme, got {type(scheme).__name__}")
    if weight_bits is not None and weight_bits != scheme.weight_bits:
        scheme = QuantScheme(scheme.weights, scheme.activations, scheme.static, weight_bits)
    return scheme


def fake_quant_activation(x, scheme: QuantScheme, static_max=None) -> np.ndarray:
    """NumPy: ``x`` (r, K) quantized and dequantized as the compiled quantizer does."""
    x = np.asarray(x, np.float32)
    if static_max is not None:
        scale = absmax_scale(static_max)
    elif scheme.activations == "per_token":
        scale = absmax_scale(np.max(np.abs(x), axis=-1, keepdims=True))
    else:
        scale = absmax_scale(np.max(np.abs(x)))
    return quantize_values(x, scale).astype(np.float32) * scale


def fake_quant_weight(w, scheme: QuantScheme) -> np.ndarray:
    """NumPy: ``w`` (K, N) quantized and dequantized under ``scheme``."""
    wq, sw = quantize_weight(w, scheme.weights, scheme.weight_bits)
    return wq.astype(np.float32) * sw


def fake_quant_error(x, w, scheme: QuantScheme, s=None) -> float:
    """Error of ``x @ w`` computed with ``x / s`` and ``diag(s) w`` fake-quantized (``s`` None: no smoothing).

    The sum over rows of each row's squared error relative to the row's squared
    norm: every token counts alike (a plain squared error lets the few tokens
    with huge activations decide, and picked alphas that made MiniLM's
    embeddings worse).
    """
    x = np.asarray(x, np.float32)
    w = np.asarray(w, np.float32)
    xs, ws = (x, w) if s is None else (x / s, w * s[:, None])
    static_max = float(np.max(np.abs(xs))) if scheme.static else None
    got = fake_quant_activation(xs, scheme, static_max) @ fake_quant_weight(ws, scheme)
    ref = x @ w
    norms = np.maximum(np.sum(ref.astype(np.float64) ** 2, axis=-1), 1e-30)
    return float(np.sum(np.sum((got - ref).astype(np.float64) ** 2, axis=-1) / norms))


class W8A8:
    """The int8 insertion pass: call it on a FunctionGraph (``passes=[..., W8A8(stats, scheme)]``).

    Parameters
    ----------
    stats : CalibrationStats, optional
        Needed for static activation scales (O3), and reported when given.
    scheme : str or QuantScheme
        A name in :data:`SCHEMES` or a scheme (default per-channel weights, per-token activations).
    """

    name = "w8a8"

    def __init__(self, stats=None, scheme="per_channel_per_token"):
        self.stats = stats
        self.scheme = resolve_scheme(scheme)

    def __repr__(self):
        return f"W8A8({self.scheme.describe()})"

    def __call__(self, fgraph) -> None:
        notes = quant_notes(fgraph)
        distinct_weights(fgraph)
        changed = False
        # One activation at a time: a replacement is taken as built, so a later site's replacement
        # must be built on the graph the earlier ones left.
        while True:
            groups = sites_by_activation(linear_sites(fgraph))
            if not groups:
                break
            self._quantize_group(fgraph, groups[0], notes)
            changed = True
        if changed:
            fuse_elemwise(fgraph)
            fuse_reductions(fgraph)
            fuse_qlinear_epilogues(fgraph)

    def _quantize_group(self, fgraph, group, notes) -> None:
        scheme = self.scheme
        quantizer = None
        replacements = {}
        for site in group:
            smoothed = notes["smoothed"].get(site.key)
            original = smoothed["original"] if smoothed else site.key
            static_max = self._static_max(site, smoothed, original) if scheme.static else None
            if quantizer is None:
                quantizer = self._quantizer(fgraph, group, static_max)
            xq, sx = quantizer
            wq, sw = quantize_weight(site.weight, scheme.weights, scheme.weight_bits)
            y = qlinear(xq, Constant(wq), sx, Constant(sw), weight_bits=scheme.weight_bits)
            if y.dtype != site.output.dtype:
                y = ew.cast(y, site.output.dtype)
            replacements[site.output] = y
            notes["sites"][original] = {
                "shape": tuple(site.weight.shape),
                "scheme": scheme.describe(),
                "smoothing": smoothed,
                "weight_scale": (float(np.min(sw)), float(np.max(sw))),
                "activation_scale": None if static_max is None else float(absmax_scale(static_max)),
            }
        fgraph.replace_all(replacements, reason="w8a8", pass_name="w8a8")

    def _quantizer(self, fgraph, group, static_max):
        """``(xq, sx)`` of the group's activation.

        Per-token dynamic scales use :class:`~symexpr.ops.quant.QuantizeRows`,
        which absorbs the elementwise expression producing ``x`` when nothing
        else reads ``x`` (``x`` is then never stored); the other schemes use the
        composite quantizer, which takes an explicit smoothing multiply in.
        """
        x = group[0].x
        if self.scheme.activations == "per_token" and static_max is None:
            program, inputs = (((ps.identity, (("in", 0),)),), [x])
            if read_only_by_sites(group, fgraph.clients):
                whole = elementwise_expression(x, fgraph)
                if _cheap(whole[0]):
                    program, inputs = whole
                elif x.owner is not None and isinstance(x.owner.op, Elemwise) and _cheap(program_of(x.owner.op)):
                    program, inputs = program_of(x.owner.op), list(x.owner.inputs)
            return quantize_rows(program, inputs)
        source, multiplier = _smoothing_multiply(x)
        source = ew.cast(source, "float32") if source.dtype != "float32" else source
        scale = None if static_max is None else Constant(absmax_scale(static_max))
        return quantize_activation(source, self.scheme.activations, scale, multiplier)

    def _static_max(self, site, smoothed, original) -> float:
        if self.stats is None or original not in self.stats:
            raise ValueError(
                f"w8a8: static activation scales ({self.scheme.describe()}) need calibration statistics "
                f"for every linear site; none for the (K, N) = {site.weight.shape} weight"
            )
        channel_max = self.stats[original].channel_max
        if smoothed is not None:
            channel_max = channel_max / smoothed["s"]
        return float(np.max(channel_max))


def _smoothing_multiply(x):
    """``(y, c)`` when ``x`` is ``y * c`` with ``c`` a positive constant vector over the last axis, else ``(x, None)``.

    That is the explicit ``x * (1/s)`` smoothing leaves; the quantizer then
    reads ``y`` and applies ``c`` itself, so ``y * c`` is never stored.
    """
    node = x.owner
    if node is None or not isinstance(node.op, Elemwise) or node.op.scalar_op.name != "mul":
        return x, None
    for y, c in (node.inputs, node.inputs[::-1]):
        if isinstance(c, Constant) and c.ndim == 1 and c.type.shape[0] == x.type.shape[-1] and y.ndim == x.ndim:
            data = np.asarray(c.data)
            if np.issubdtype(data.dtype, np.floating) and np.all(data > 0) and y.type.shape == x.type.shape:
                return y, data.astype(np.float32)
    return x, None


#: Scalar ops cheap enough for the quantizer to evaluate twice per element (once for the row
#: maximum, once for the values) rather than read a stored result: measured on a (4096, 1536)
#: activation, absorbing ``gelu(x + b) * c`` took 35 ms against 24 ms for storing the GELU.
_CHEAP_SCALAR_OPS = {"add", "sub", "mul", "neg", "identity", "maximum", "minimum", "relu", "abs", "cast"}


def _cheap(program) -> bool:
    return all(scalar_op.name in _CHEAP_SCALAR_OPS for scalar_op, _ in program)

