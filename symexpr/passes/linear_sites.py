"""Where a graph multiplies an activation by a constant weight, and calibration statistics for those places.

A *linear site* is a ``MatMul(x, W)`` whose ``W`` is a 2-D float constant
(K input channels by N output channels) and whose ``x`` is a float tensor
(..., K).  Quantization passes key what they know about a site by
:func:`weight_key`, a fingerprint of ``W``'s bytes: it survives the rewrites
that rebuild nodes (nodes are immutable, so a site's node and ``x`` change
identity with every pass, but its weight's values do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symexpr.graph.basic import Apply, Constant, Variable
from symexpr.ops.matmul import MatMul


def weight_key(w: Constant) -> str:
    """A fingerprint of a constant weight: its dtype, shape, content digest and name, if any."""
    key = f"{w.dtype}{list(w.type.shape)}:{w.digest}"
    return key if w.name is None else f"{key}@{w.name}"


@dataclass(frozen=True)
class LinearSite:
    """``node`` computes ``x @ weight`` with a constant (K, N) ``weight`` whose fingerprint is ``key``."""

    node: Apply
    x: Variable
    weight: np.ndarray
    key: str

    @property
    def output(self) -> Variable:
        return self.node.outputs[0]


def linear_sites(fgraph) -> list[LinearSite]:
    """Every linear site of ``fgraph``, in topological order.

    Sites with an empty weight (K or N of 0) are left out: there is nothing to quantize.
    """
    sites = []
    for node in fgraph.toposort():
        if not isinstance(node.op, MatMul):
            continue
        x, w = node.inputs
        if not isinstance(w, Constant) or w.ndim != 2 or x.ndim < 1 or w.data.size == 0:
            continue
        if not (np.issubdtype(np.dtype(w.dtype), np.floating) and np.issubdtype(np.dtype(x.dtype), np.floating)):
            continue
        sites.append(LinearSite(node, x, np.asarray(w.data), weight_key(w)))
    return sites


def read_only_by_sites(group, clients) -> bool:
    """Whether the activation of ``group`` (sites reading one ``x``) has no reader but those sites."""
    nodes = {id(site.node) for site in group}
    return all(c != "output" and id(c[0]) in nodes and c[1] == 0 for c in clients.get(group[0].x, []))


def distinct_weights(fgraph) -> None:
    """Give every linear site reading an activation of its own a weight with its own key.

    Statistics and notes are keyed by weight; two sites that read different
    activations through one weight (tied weights, equal initialisations)
    would share them.  The second and later such weights are replaced by a
    named copy (``<key>#<n>``, numbered in topological order), so that
    calibration and the passes, which all start from the same ``fast_run``
    graph, number them alike.  Idempotent.
    """
    seen: dict[str, set] = {}
    replacements = {}
    counts: dict[str, int] = {}
    for site in linear_sites(fgraph):
        readers = seen.setdefault(site.key, set())
        if readers and id(site.x) not in readers:
            counts[site.key] = counts.get(site.key, 0) + 1
            renamed = Constant(site.weight, name=f"{site.key}#{counts[site.key]}")
            replacements[site.output] = MatMul()(site.x, renamed)
        readers.add(id(site.x))
    if replacements:
        fgraph.replace_all(replacements, reason="distinct_weights", pass_name="quant")


def sites_by_activation(sites) -> list[list[LinearSite]]:
    """Sites grouped by the activation they read (q, k and v projections read one), in first-use order."""
    groups: dict[int, list[LinearSite]] = {}
    for site in sites:
        groups.setdefault(id(site.x), []).append(site)
    return list(groups.values())


@dataclass
class ActivationStats:
    """What calibration saw of one site's activation ``x`` (..., K), over every row of every batch.

    Attributes
    ----------
    channel_max : numpy.ndarray
        float32 (K,): ``max |x[..., j]|``.
    rows : int
        Rows seen.
    samples : numpy.ndarray
        float32 (r, K): up to the calibration's ``samples`` rows, drawn uniformly
        from every row seen (reservoir sampling), for searching ``alpha``.
    """

    channel_max: np.ndarray
    rows: int = 0
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def tensor_max(self) -> float:
        """``max |x|`` over the whole tensor."""
        return float(np.max(self.channel_max)) if self.channel_max.size else 0.0


@dataclass
class CalibrationStats:
    """Activation statistics of a graph's linear sites, by :func:`weight_key` of each site's weight.

    Attributes
    ----------
    sites : dict
        ``weight key -> ActivationStats``.
    batches : int
        Calibration batches run.
    """

    sites: dict = field(default_factory=dict)
    batches: int = 0

    def __contains__(self, key) -> bool:
        return key in self.sites

    def __getitem__(self, key) -> ActivationStats:
        return self.sites[key]

    def __len__(self) -> int:
        return len(self.sites)

    def __repr__(self):
        return f"CalibrationStats({len(self.sites)} linear sites, {self.batches} batches)"


def quant_notes(fgraph) -> dict:
    """The ``"quant"`` annotations of ``fgraph``: what the quantization passes did, per weight key."""
    return fgraph.annotations.setdefault("quant", {"sites": {}, "smoothed": {}})
