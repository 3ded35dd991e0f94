"""Post-training quantization: SmoothQuant smoothing and W8A8 int8 matmuls.

::

    from symexpr import quant
    stats = quant.calibrate(inputs, outputs, batches)
    f = se.function(inputs, outputs, passes=["fast_run", quant.smooth(stats, alpha=0.5),
                                             quant.w8a8(stats, weights="per_channel", activations="per_token")])
    f = quant.quantize(inputs, outputs, batches, scheme="per_channel_per_token", alpha="auto")
    print(quant.report(f))

See docs/smoothquant.md for the method and its measured accuracy.
"""

from __future__ import annotations

from symexpr.compile.function import function
from symexpr.passes.linear_sites import ActivationStats, CalibrationStats
from symexpr.passes.smoothquant import SmoothQuant
from symexpr.passes.w8a8 import SCHEMES, QuantScheme, W8A8, resolve_scheme
from symexpr.quant.calibrate import calibrate
from symexpr.quant.report import report

__all__ = [
    "SCHEMES",
    "ActivationStats",
    "CalibrationStats",
    "QuantScheme",
    "SmoothQuant",
    "W8A8",
    "calibrate",
    "quantize",
    "report",
    "smooth",
    "w8a8",
]


def smooth(stats, alpha=0.5, scheme="per_channel_per_token", weight_bits: int = 8, sites: str = "norm_fed") -> SmoothQuant:
    """The SmoothQuant smoothing pass (see :class:`~symexpr.passes.smoothquant.SmoothQuant`).

    Parameters
    ----------
    stats : CalibrationStats
        From :func:`calibrate`.
    alpha : float, "auto" or dict
        Migration strength in [0, 1]; ``"auto"`` searches it per activation to
        minimise the error after quantization under ``scheme``.
    scheme : str or QuantScheme
        Used by ``alpha="auto"`` only.
    weight_bits : {8, 7}
        Used by ``alpha="auto"`` only.
    sites : {"norm_fed", "all"}
        Smooth only the activations a LayerNorm/RMSNorm produces (the paper's
        choice, default), or every linear's input.
    """
    return SmoothQuant(stats, alpha, resolve_scheme(scheme, weight_bits), sites)


def w8a8(stats=None, weights: str = "per_channel", activations: str = "per_token", static: bool = False,
         weight_bits: int = 8) -> W8A8:
    """The INT8 insertion pass (see :class:`~symexpr.passes.w8a8.W8A8`).

    Parameters
    ----------
    stats : CalibrationStats, optional
        Needed when ``static``.
    weights : {"per_channel", "per_tensor"}
    activations : {"per_token", "per_tensor"}
    static : bool
        Calibrated per-tensor activation scales (the paper's O3).
    weight_bits : {8, 7}
        7-bit weights ([-63, 63]) run exactly on AVX2's ``vpmaddubsw``.
    """
    return W8A8(stats, QuantScheme(weights, activations, static, weight_bits))


def quantize(inputs, outputs, batches, scheme="per_channel_per_token", alpha="auto", weight_bits: int = 8,
             backend: str | None = None, samples: int = 512, progress=None, sites: str | None = None):
    """Calibrate on ``batches``, smooth and insert int8 matmuls: the quantized :class:`~symexpr.Function`.

    Parameters
    ----------
    inputs, outputs
        The graph, as for :func:`symexpr.function`.
    batches : iterable of tuple
        Calibration argument tuples.
    scheme : str or QuantScheme
        ``"per_channel_per_token"`` (default), ``"O1"``, ``"O2"`` or ``"O3"`` (see :data:`SCHEMES`).
    alpha : float, "auto" or None
        Smoothing strength; None quantizes without smoothing (naive W8A8).
    weight_bits : {8, 7}
    backend : str, optional
        Runs the calibration and compiles the result.
    samples, progress
        As for :func:`calibrate`.
    sites : {"norm_fed", "all"}, optional
        Which activations are smoothed (see :func:`smooth`).  Default:
        ``"norm_fed"`` with per-channel weights, ``"all"`` with per-tensor
        weights (O1-O3), the better of the two for each on MiniLM
        (docs/smoothquant.md).
    """
    scheme = resolve_scheme(scheme, weight_bits)
    if sites is None:
        sites = "norm_fed" if scheme.weights == "per_channel" else "all"
    stats = calibrate(inputs, outputs, batches, backend=backend, samples=samples, progress=progress)
    passes = ["fast_run"]
    if alpha is not None:
        passes.append(SmoothQuant(stats, alpha, scheme, sites))
    passes.append(W8A8(stats, scheme))
    return function(inputs, outputs, backend=backend, passes=passes)
