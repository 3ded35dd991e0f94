"""INT8 ops: symmetric absmax quantizers and the int8 contraction ``QLinear``.

The numerics follow SmoothQuant's reference (``fake_quant.py``): a scale is
``max(|x|) / qmax`` with ``max(|x|)`` clamped below at :data:`SCALE_FLOOR`,
``q = clip(round_half_even(x / scale), -qmax, qmax)``, no zero point.  ``qmax``
is 127 for 8-bit values and 63 for 7-bit weights (the AVX2 kernel's
``vpmaddubsw`` sums pairs of u8 x s8 products in saturating int16: with
weights in [-63, 63] no pair can saturate).

Activations are quantized in the graph by :func:`quantize_activation`, made
of ordinary elementwise and reduction ops that fusion merges with the op that
produces ``x``; weights are quantized once, at graph build time, by
:func:`quantize_weight`.  :class:`QLinear` is the contraction.
"""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Apply, Constant, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops import elemwise as ew
from symexpr.ops import reduction as red
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import broadcast_concrete, broadcast_static
from symexpr.ops.fused import _program_dtypes, run_program, short_program_text

#: ``max(|x|)`` is clamped to at least this before dividing by ``qmax`` (as SmoothQuant's ``clamp(min=1e-5)``).
SCALE_FLOOR = 1e-5
#: Weight bit widths :class:`QLinear` accepts.
WEIGHT_BITS = (8, 7)
#: Activation granularities: one scale per row (token) or one per tensor.
ACTIVATION_GRANULARITIES = ("per_token", "per_tensor")
#: Weight granularities: one scale per output channel (column of a (K, N) weight) or one per tensor.
WEIGHT_GRANULARITIES = ("per_channel", "per_tensor")


def qmax(bits: int) -> int:
    """The largest magnitude a symmetric ``bits``-bit value holds: 127 for 8, 63 for 7."""
    return 2 ** (int(bits) - 1) - 1


def absmax_scale(amax, bits: int = 8):
    """NumPy: the float32 scale ``max(amax, SCALE_FLOOR) / qmax(bits)`` (NaN stays NaN)."""
    amax = np.asarray(amax, dtype=np.float32)
    return (np.maximum(amax, np.float32(SCALE_FLOOR)) / np.float32(qmax(bits))).astype(np.float32)


def quantize_values(x, scale, bits: int = 8) -> np.ndarray:
    """NumPy: ``clip(round_half_even(x / scale), -qmax, qmax)`` as int8, 0 where ``x / scale`` is NaN.

    ``x`` and ``scale`` broadcast; both are taken as float32, as the compiled quantizer computes.
    """
    q = qmax(bits)
    with np.errstate(all="ignore"):
        v = np.clip(np.round(np.asarray(x, np.float32) / np.asarray(scale, np.float32)), -q, q)
    return np.where(np.isnan(v), 0, v).astype(np.int8)


def quantize_weight(w, granularity: str = "per_channel", bits: int = 8):
    """Quantize a (K, N) float weight: ``(wq int8 (K, N), scale float32 (N,) or ())``.

    Parameters
    ----------
    w : array_like
        The weight of ``x @ w``: K input channels by N output channels.
    granularity : {"per_channel", "per_tensor"}
        One scale per output channel (column), or one for the whole matrix.
    bits : {8, 7}
        8 gives values in [-127, 127]; 7 gives [-63, 63] (see the module docstring).
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize_weight: w must be a (K, N) matrix, got shape {w.shape}")
    _check_choice("quantize_weight", "granularity", granularity, WEIGHT_GRANULARITIES)
    _check_choice("quantize_weight", "bits", bits, WEIGHT_BITS)
    amax = np.max(np.abs(w), axis=0) if granularity == "per_channel" else np.max(np.abs(w))
    scale = absmax_scale(amax, bits)
    return quantize_values(w, scale, bits), scale


def quantize_activation(x, granularity: str = "per_token", scale=None, multiplier=None):
    """Symbolic int8 quantization of ``x`` over its last axis: ``(xq int8, scale float32)``.

    Parameters
    ----------
    x : Variable
        A float tensor (..., K).
    granularity : {"per_token", "per_tensor"}
        Dynamic scales: ``max|x|`` of each row (``scale`` shape (..., 1)) or of
        the whole tensor (shape ()).  Ignored when ``scale`` is given.
    scale : float or Variable, optional
        A static scale (calibrated, the paper's O3 scheme).
    multiplier : array_like, optional
        Positive float32 (K,): quantize ``x * multiplier`` (a smoothing factor's
        ``1/s``) without forming it: the maximum is taken of ``|x| * multiplier``
        and the values are ``round(x * (multiplier / scale))``, so the product
        is never written to memory.

    Returns
    -------
    (Variable, Variable)
        ``xq`` of ``x``'s shape and dtype int8, and the scale ``x`` was divided by.
    """
    x = as_tensor(x)
    if not np.issubdtype(np.dtype(x.dtype), np.floating):
        raise TypeError(f"quantize_activation: x must be a float tensor, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("quantize_activation: x must have at least one dimension, got a 0-d tensor")
    x = ew.cast(x, "float32") if x.dtype != "float32" else x
    if multiplier is not None:
        multiplier = np.asarray(multiplier, np.float32)
        if multiplier.ndim != 1 or (x.type.shape[-1] is not None and multiplier.shape[0] != x.type.shape[-1]):
            raise ValueError(
                f"quantize_activation: multiplier must be a vector of x's last dimension "
                f"{x.type.shape[-1]}, got shape {multiplier.shape}"
            )
        if not np.all(multiplier > 0):
            raise ValueError("quantize_activation: multiplier must be positive (a smoothing factor's 1/s)")
        multiplier = as_tensor(multiplier)
    magnitude = ew.abs(x) if multiplier is None else ew.abs(x) * multiplier
    if scale is None:
        _check_choice("quantize_activation", "granularity", granularity, ACTIVATION_GRANULARITIES)
        axis = (x.ndim - 1,) if granularity == "per_token" else tuple(range(x.ndim))
        amax = red.max(magnitude, axis=axis, keepdims=granularity == "per_token")
        scale = ew.maximum(amax, np.float32(SCALE_FLOOR)) / np.float32(qmax(8))
    else:
        scale = ew.cast(as_tensor(scale), "float32")
    q = np.float32(qmax(8))
    scaled = x / scale if multiplier is None else x * (multiplier / scale)
    xq = ew.cast(ew.clip(ew.round(scaled), -q, q), "int8")
    return xq, scale


class QuantizeRows(Op):
    """Per-row (per-token) dynamic quantization of an elementwise expression, in one pass over each row.

    ``program`` is a :class:`~symexpr.ops.fused.Fused` program over the
    inputs (broadcast together) giving ``x`` (..., K), which is never
    stored.  Outputs: ``xq`` int8 (..., K) and ``scale`` float32 (..., 1), with
    ``scale = max(max|x_row|, SCALE_FLOOR) / 127`` and ``xq = clip(round(x /
    scale), -127, 127)`` (0 where ``x / scale`` is NaN): exactly
    :func:`quantize_activation` of ``x``.  A compiled backend evaluates the
    program twice per row (once for the maximum, once for the values) while
    the row is in cache, instead of writing ``x`` and reading it twice.
    """

    __props__ = ("program",)

    def __init__(self, program: tuple):
        self.program = tuple(program)

    def display_name(self):
        return f"QuantizeRows{{{short_program_text(self.program)}}}"

    def make_node(self, *inputs) -> Apply:
        inputs = [as_tensor(v) for v in inputs]
        dtype = canonical_dtype(_program_dtypes(self.program, [v.dtype for v in inputs])[-1])
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(f"{self.display_name()}: the expression must be float, got {dtype}")
        shape = broadcast_static([v.type.shape for v in inputs], "quantize_rows")
        if not shape:
            raise ValueError(f"{self.display_name()}: the expression must have at least one dimension")
        return Apply(self, inputs, [TensorType("int8", shape), TensorType("float32", shape[:-1] + (1,))])

    def infer_shape(self, node, input_shapes):
        shape = tuple(broadcast_concrete(input_shapes))
        return [shape, shape[:-1] + (1,)]

    def perform(self, node, inputs):
        with np.errstate(all="ignore"):
            x = np.asarray(run_program(self.program, inputs), dtype=np.float32)
            x = np.broadcast_to(x, np.broadcast_shapes(x.shape, *(np.shape(a) for a in inputs)))
            if x.shape[-1] == 0:
                raise ValueError(f"{self.display_name()}: cannot quantize rows of length 0")
            scale = absmax_scale(np.max(np.abs(x), axis=-1, keepdims=True))
            return [quantize_values(x, scale), scale]


def quantize_rows(program, inputs) -> tuple:
    """``(xq, scale)``: :class:`QuantizeRows` of ``program`` over ``inputs``."""
    node = QuantizeRows(program).make_node(*inputs)
    return node.outputs[0], node.outputs[1]


def _check_choice(where, name, value, choices):
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


class QLinear(Op):
    """The int8 contraction ``xq @ wq`` with an int32 accumulator and a dequantizing epilogue.

    Inputs: ``xq`` int8 (..., K), ``wq`` int8 (K, N), then, when ``scaled``,
    ``sx`` float32 of shape (..., 1) or () and ``sw`` float32 of shape (N,) or
    (), then ``bias`` float32 (N,) when ``has_bias``.  The output is the
    int32 product when not ``scaled``, else float32
    ``(float32(acc) * sx) * sw (+ bias)``, evaluated in that order.

    ``weight_bits`` declares the range of ``wq``: 8 for [-127, 127], 7 for
    [-63, 63] (what the AVX2 kernel multiplies exactly); a constant ``wq``
    outside it is refused when the node is built.

    ``epilogue`` (scaled only) is a :class:`~symexpr.ops.fused.Fused` program
    applied to that result: its ``("in", 0)`` is the dequantized product and
    ``("in", i)`` the ``i``-th input after the standard ones (a bias, a residual),
    broadcast together as a ``Fused`` op would; it must give float32.  The
    elementwise work after a linear layer (bias, GELU, the residual add) then
    happens while the kernel's output tile is in cache.
    """

    __props__ = ("weight_bits", "scaled", "has_bias", "epilogue")

    def __init__(self, weight_bits: int = 8, scaled: bool = True, has_bias: bool = False, epilogue: tuple = ()):
        _check_choice("QLinear", "weight_bits", weight_bits, WEIGHT_BITS)
        if has_bias and not scaled:
            raise ValueError("QLinear: a bias needs the scaled (float32) epilogue")
        if epilogue and not scaled:
            raise ValueError("QLinear: an epilogue program needs the scaled (float32) epilogue")
        self.weight_bits = int(weight_bits)
        self.scaled = bool(scaled)
        self.has_bias = bool(has_bias)
        self.epilogue = tuple(epilogue)

    @property
    def n_standard(self) -> int:
        """How many inputs come before the epilogue's extra operands."""
        return 2 + (2 if self.scaled else 0) + (1 if self.has_bias else 0)

    def display_name(self):
        parts = [f"w{self.weight_bits}"] + (["scaled"] if self.scaled else ["int32"]) + (["bias"] if self.has_bias else [])
        if self.epilogue:
            parts.append(f"then {short_program_text(self.epilogue)}")
        return f"QLinear{{{', '.join(parts)}}}"

    def make_node(self, xq, wq, *rest) -> Apply:
        want = self.n_standard
        inputs = [as_tensor(v) for v in (xq, wq, *rest)]
        extras = []
        if self.epilogue:  # the inputs past the standard ones are the epilogue's operands
            inputs, extras = inputs[:want], inputs[want:]
        if len(inputs) != want:
            names = ["xq", "wq"] + (["sx", "sw"] if self.scaled else []) + (["bias"] if self.has_bias else [])
            raise TypeError(f"{self.display_name()}: expected inputs ({', '.join(names)}), got {len(inputs)} inputs")
        xq, wq = inputs[:2]
        for name, v in (("xq", xq), ("wq", wq)):
            if v.dtype != "int8":
                raise TypeError(f"{self.display_name()}: {name} must be int8, got {v.dtype}")
        if xq.ndim < 1 or wq.ndim != 2:
            raise ValueError(
                f"{self.display_name()}: xq must be (..., K) and wq (K, N), got {format_shape(xq.type.shape)} "
                f"and {format_shape(wq.type.shape)}"
            )
        k1, (k2, n) = xq.type.shape[-1], wq.type.shape
        if k1 is not None and k2 is not None and k1 != k2:
            raise ValueError(f"{self.display_name()}: xq has K={k1} columns but wq has {k2} rows")
        if isinstance(wq, Constant):
            q = qmax(self.weight_bits)
            data = np.asarray(wq.data)
            if data.size and int(np.max(np.abs(data.astype(np.int16)))) > q:
                raise ValueError(
                    f"{self.display_name()}: wq holds values outside [-{q}, {q}] "
                    f"(max |wq| = {int(np.max(np.abs(data.astype(np.int16))))}) for weight_bits={self.weight_bits}"
                )
        lead = tuple(xq.type.shape[:-1])
        if self.scaled:
            sx, sw = inputs[2], inputs[3]
            for name, v in (("sx", sx), ("sw", sw)) + ((("bias", inputs[4]),) if self.has_bias else ()):
                if v.dtype != "float32":
                    raise TypeError(f"{self.display_name()}: {name} must be float32, got {v.dtype}")
            if sx.ndim not in (0, xq.ndim) or (sx.ndim and sx.type.shape[-1] not in (1, None)):
                raise ValueError(
                    f"{self.display_name()}: sx must be a scalar or (..., 1) like xq {format_shape(xq.type.shape)}, "
                    f"got {format_shape(sx.type.shape)}"
                )
            for name, v in (("sw", sw),) + ((("bias", inputs[4]),) if self.has_bias else ()):
                if v.ndim > 1 or (v.ndim == 1 and v.type.shape[0] not in (n, None) and n is not None):
                    raise ValueError(
                        f"{self.display_name()}: {name} must be a scalar or ({n},), got {format_shape(v.type.shape)}"
                    )
            if not self.epilogue:
                return Apply(self, inputs, [TensorType("float32", lead + (n,))])
            dtype = canonical_dtype(_program_dtypes(self.epilogue, ["float32"] + [v.dtype for v in extras])[-1])
            if dtype != "float32":
                raise TypeError(f"{self.display_name()}: the epilogue program must give float32, got {dtype}")
            shape = broadcast_static([lead + (n,)] + [v.type.shape for v in extras], f"{self.display_name()}: the epilogue's operands")
            return Apply(self, inputs + extras, [TensorType("float32", shape)])
        return Apply(self, inputs, [TensorType("int32", lead + (n,))])

    def infer_shape(self, node, input_shapes):
        xs, ws = input_shapes[0], input_shapes[1]
        if xs[-1] != ws[0]:
            raise ValueError(f"{self.display_name()}: xq has K={xs[-1]} columns but wq has {ws[0]} rows")
        if self.scaled:
            sx = input_shapes[2]
            if len(sx) and tuple(sx) != tuple(xs[:-1]) + (1,):
                raise ValueError(f"{self.display_name()}: sx of shape {tuple(sx)} does not match xq {tuple(xs)}")
        shape = tuple(xs[:-1]) + (ws[1],)
        if self.epilogue:
            shape = tuple(broadcast_concrete([shape] + [tuple(s) for s in input_shapes[self.n_standard:]]))
        return [shape]

    def perform(self, node, inputs):
        xq, wq = inputs[0], inputs[1]
        acc = np.matmul(xq.astype(np.int32), wq.astype(np.int32))
        if not self.scaled:
            return [acc]
        sx, sw = np.asarray(inputs[2], np.float32), np.asarray(inputs[3], np.float32)
        with np.errstate(all="ignore"):
            y = acc.astype(np.float32) * sx * sw
            if self.has_bias:
                y = y + np.asarray(inputs[4], np.float32)
            if self.epilogue:
                extras = list(inputs[self.n_standard:])
                y = np.asarray(run_program(self.epilogue, [y] + extras))
                y = np.broadcast_to(y, broadcast_concrete([np.shape(y)] + [np.shape(a) for a in extras]))
        return [np.asarray(y, dtype=np.float32)]

    def pprint(self, node, args):
        n = self.n_standard
        text = f"qlinear{self.weight_bits}({', '.join(args[:n])})"
        if self.epilogue:
            text = f"fused[{short_program_text(self.epilogue)}]({', '.join([text] + list(args[n:]))})"
        return text, 100


def qlinear(xq, wq, sx=None, sw=None, bias=None, weight_bits: int = 8) -> Variable:
    """``QLinear``: int8 ``xq @ wq`` to int32, or dequantized to float32 when ``sx`` and ``sw`` are given."""
    if (sx is None) != (sw is None):
        raise TypeError("qlinear: give both sx and sw, or neither")
    scaled = sx is not None
    args = [xq, wq] + ([sx, sw] if scaled else []) + ([bias] if bias is not None else [])
    return QLinear(weight_bits, scaled, bias is not None)(*args)
