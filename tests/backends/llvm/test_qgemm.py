"""The int8 GEMM step (``QLinear`` with a constant weight): exact results, every variant, threads, fallbacks.

Results are compared bit for bit with ``QLinear.perform`` (NumPy's int32
matmul and the float32 epilogue in the same order).  The code of every
variant is emitted for a list of CPU targets whatever the host; the variants
the host can run are also run.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import num_threads

import symexpr as se
from symexpr.backends.llvm import loader, qgemm, target
from symexpr.kernel import int8_pack
from symexpr.kernel.ir import HostStep, QGemmKernel
from symexpr.ops.quant import QLinear, qlinear, qmax

#: CPU targets whose code is emitted (and run where the host can): name -> variant for (8-bit, 7-bit) weights.
TARGETS = {
    "x86-64": ("generic", "generic"),
    "x86-64-v2": ("generic", "generic"),
    "x86-64-v3": ("avx2-madd16", "avx2-maddubs"),
    "znver3": ("avx2-madd16", "avx2-maddubs"),
    "skylake-avx512": ("avx2-madd16", "avx2-maddubs"),
    "alderlake": ("avx-vnni", "avx-vnni"),
    "znver4": ("avx512-vnni", "avx512-vnni"),
    "sapphirerapids": ("avx512-vnni", "avx512-vnni"),
}
#: The instruction each variant must show in its assembly (None: nothing specific).
MNEMONIC = {
    "avx512-vnni": "vpdpbusd\t%zmm",
    "avx-vnni": "{vex}\tvpdpbusd",
    "avx2-maddubs": "vpmaddubsw",
    "avx2-madd16": "vpmaddwd",
    "generic": None,
}


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


def _reference(xq, wq, sx=None, sw=None, bias=None, weight_bits=8):
    op = QLinear(weight_bits, sx is not None, bias is not None)
    inputs = [xq, wq] + ([sx, sw] if sx is not None else []) + ([bias] if bias is not None else [])
    return op.perform(None, inputs)[0]


def _weight(rng, k, n, bits, extreme=None):
    q = qmax(bits)
    if extreme == "max":
        return np.full((k, n), q, np.int8)
    if extreme == "min":
        return np.full((k, n), -q, np.int8)
    return rng.integers(-q, q, size=(k, n), endpoint=True).astype(np.int8)


def _activations(rng, shape, extreme=None):
    if extreme is not None:
        return np.full(shape, extreme, np.int8)
    return rng.integers(-128, 127, size=shape, endpoint=True).astype(np.int8)


def _bits_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == np.float32:
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    else:
        np.testing.assert_array_equal(got, want)


def _build(k, wq, weight_bits, scaled, per_token, per_channel, bias, batch_rank=2):
    """A function of (xq[, sx]) computing QLinear with the constant weight ``wq``; also returns the constants."""
    n = wq.shape[1]
    x = se.tensor("x", "int8", (None,) * (batch_rank - 1) + (k,))
    inputs = [x]
    consts = {}
    if scaled:
        sx = se.tensor("sx", "float32", (None,) * (batch_rank - 1) + (1,)) if per_token else se.tensor("sx", "float32", ())
        inputs.append(sx)
        rng = np.random.default_rng(k * 1000 + n)
        consts["sw"] = (rng.random(n if per_channel else ()) * 0.01 + 1e-3).astype(np.float32)
        consts["bias"] = rng.standard_normal(n).astype(np.float32) if bias else None
        out = qlinear(x, se.constant(wq), sx, se.constant(consts["sw"]),
                      None if consts["bias"] is None else se.constant(consts["bias"]), weight_bits=weight_bits)
    else:
        out = qlinear(x, se.constant(wq), weight_bits=weight_bits)
    return se.function(inputs, [out]), consts


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 70),
    k=st.integers(1, 300),
    n=st.integers(1, 100),
    weight_bits=st.sampled_from([8, 7]),
    mode=st.sampled_from(["int32", "token-channel", "tensor-tensor", "token-tensor-bias", "tensor-channel-bias"]),
    extreme=st.sampled_from([None, None, "x-min", "x-max", "all-max", "all-min"]),
    seed=st.integers(0, 2**16),
)
def test_matches_perform(m, k, n, weight_bits, mode, extreme, seed):
    rng = np.random.default_rng(seed)
    wq = _weight(rng, k, n, weight_bits, {"all-max": "max", "all-min": "min"}.get(extreme))
    scaled = mode != "int32"
    per_token, per_channel = mode.startswith("token"), "channel" in mode
    f, consts = _build(k, wq, weight_bits, scaled, per_token, per_channel, mode.endswith("bias"))
    x_fill = {"x-min": -128, "x-max": 127, "all-max": 127, "all-min": -128}.get(extreme)
    for rows in (m, max(1, m // 3)):
        xq = _activations(rng, (rows, k), x_fill)
        args = [xq]
        sx = None
        if scaled:
            sx = (rng.random((rows, 1) if per_token else ()) * 0.02 + 1e-4).astype(np.float32)
            args.append(sx)
        (got,) = f(*args)
        _bits_equal(got, _reference(xq, wq, sx, consts.get("sw"), consts.get("bias"), weight_bits))
    assert f._compiled.compilations == 1
    assert any(isinstance(s, QGemmKernel) for s in f._compiled.plan.steps)


@pytest.mark.parametrize("weight_bits", [8, 7])
def test_batched_activations_fold_into_rows(weight_bits):
    rng = np.random.default_rng(3)
    k, n = 77, 45
    wq = _weight(rng, k, n, weight_bits)
    f, consts = _build(k, wq, weight_bits, True, True, True, True, batch_rank=3)
    for shape in ((2, 9), (5, 13), (1, 1), (3, 1)):
        xq = _activations(rng, shape + (k,))
        sx = (rng.random(shape + (1,)) * 0.01).astype(np.float32)
        (got,) = f(xq, sx)
        _bits_equal(got, _reference(xq, wq, sx, consts["sw"], consts["bias"], weight_bits))
    assert f._compiled.compilations == 1
    (step,) = [s for s in f._compiled.plan.steps if isinstance(s, QGemmKernel)]
    assert step.m == 3


def test_one_module_serves_every_m_and_packs_once():
    rng = np.random.default_rng(4)
    wq = _weight(rng, 130, 70, 8)
    before = int8_pack.PACK_STATS["packs"]
    f, _ = _build(130, wq, 8, False, False, False, False)
    for m in (1, 2, 6, 7, 31, 64, 65, 200):
        xq = _activations(rng, (m, 130))
        (got,) = f(xq)
        _bits_equal(got, _reference(xq, wq))
    assert f._compiled.compilations == 1
    assert int8_pack.PACK_STATS["packs"] - before == 1


def test_plan_text_shows_the_step():
    wq = np.ones((10, 6), np.int8)
    f, _ = _build(10, wq, 8, True, True, True, True)
    f(np.ones((4, 10), np.int8), np.ones((4, 1), np.float32))
    text = f._compiled.plan.text()
    assert "qgemm" in text and "m=4 n=6 k=10" in text and "packed int8 [4][3][16][4]" in text
    assert "float32(acc) * sx[i] * sw[j] + bias[j]" in text


def test_k_65536_extreme_values_do_not_overflow():
    k, n = 65536, 20
    wq = np.full((k, n), -127, np.int8)
    wq[:, 1::2] = 127
    wq[: k // 2, 2] = 0
    f, _ = _build(k, wq, 8, False, False, False, False)
    xq = np.full((3, k), -128, np.int8)
    xq[1] = 127
    xq[2, ::2] = 127
    (got,) = f(xq)
    want = _reference(xq, wq)
    assert abs(int(want[0, 0])) == k * 128 * 127
    _bits_equal(got, want)


@pytest.mark.parametrize("weight_bits", [8, 7])
@pytest.mark.parametrize("tuning", [None, {"kc": 64, "mc": 1000, "nc": 32}, {"kc": 300, "prefetch": 0}])
def test_several_k_blocks_row_blocks_and_threads(monkeypatch, weight_bits, tuning):
    """K longer than one K block (partial sums kept in ``out``), a partial last group of 4, row blocks of
    several row tiles with a ragged last one, N blocks and edge columns; tunings that change the blocking
    (an MC the stack cap must shrink, KC that does not divide K, no prefetch) give the same bits."""
    if tuning is not None:
        for name, var in list(qgemm.VARIANTS.items()):
            monkeypatch.setitem(qgemm.VARIANTS, name, dataclasses.replace(var, **tuning))
    rng = np.random.default_rng(11)
    k, n = 4 * 1024 + 7, 70
    wq = _weight(rng, k, n, weight_bits)
    f, consts = _build(k, wq, weight_bits, True, True, True, True)
    for threads, m in ((1, 37), (2, 37), (2, 3)):
        with num_threads(threads):
            xq = _activations(rng, (m, k))
            sx = rng.random((m, 1)).astype(np.float32)
            (got,) = f(xq, sx)
            _bits_equal(got, _reference(xq, wq, sx, consts["sw"], consts["bias"], weight_bits))


def test_nan_and_inf_scales_propagate():
    rng = np.random.default_rng(5)
    k, n = 20, 9
    wq = _weight(rng, k, n, 8)
    x = se.tensor("x", "int8", (None, k))
    sx = se.tensor("sx", "float32", (None, 1))
    sw = se.tensor("sw", "float32", (n,))
    b = se.tensor("b", "float32", (n,))
    f = se.function([x, sx, sw, b], [qlinear(x, se.constant(wq), sx, sw, b)])
    xq = _activations(rng, (5, k))
    xq[0] = 0
    sxv = np.array([[1.0], [np.nan], [np.inf], [-np.inf], [1e-3]], np.float32)
    swv = rng.random(n).astype(np.float32)
    swv[3] = np.nan
    swv[4] = np.inf
    bv = rng.standard_normal(n).astype(np.float32)
    bv[5] = -np.inf
    (got,) = f(xq, sxv, swv, bv)
    _bits_equal(got, _reference(xq, wq, sxv, swv, bv))


@pytest.mark.parametrize("weight_bits", [8, 7])
def test_threads_give_the_same_result(weight_bits):
    """Many rows: threads split the row tiles; few rows (1 to 13, with 3 threads fewer than 4 row tiles
    each): they split the column tiles; 2 or 3 column tiles (n <= 48) and several threads: the rows again."""
    rng = np.random.default_rng(6)
    k = 333
    for n in (150, 1100, 20, 33):
        wq = _weight(rng, k, n, weight_bits)
        f, consts = _build(k, wq, weight_bits, True, True, True, True)
        for m in (97, 13, 5, 1):
            xq = _activations(rng, (m, k))
            sx = rng.random((m, 1)).astype(np.float32)
            want = _reference(xq, wq, sx, consts["sw"], consts["bias"], weight_bits)
            for threads in (1, 2, 3):
                with num_threads(threads):
                    (got,) = f(xq, sx)
                _bits_equal(got, want)


def test_strided_and_non_constant_operands():
    rng = np.random.default_rng(7)
    k, n = 24, 10
    wq = _weight(rng, k, n, 8)
    x = se.tensor("x", "int8", (k, None))
    f = se.function([x], [qlinear(x.T, se.constant(wq))])  # K stride is not 1: copied first
    xt = _activations(rng, (k, 7))
    (got,) = f(xt)
    _bits_equal(got, _reference(np.ascontiguousarray(xt.T), wq))
    assert any(isinstance(s, QGemmKernel) for s in f._compiled.plan.steps)
    w = se.tensor("w", "int8", (k, n))
    g = se.function([x, w], [qlinear(x.T, w)])
    (got,) = g(xt, wq)
    _bits_equal(got, _reference(np.ascontiguousarray(xt.T), wq))
    assert all(not isinstance(s, QGemmKernel) for s in g._compiled.plan.steps)
    assert any(isinstance(s, HostStep) for s in g._compiled.plan.steps)


def test_non_foldable_batch_is_copied():
    rng = np.random.default_rng(8)
    k, n = 16, 12
    wq = _weight(rng, k, n, 7)
    x = se.tensor("x", "int8", (None, None, k))
    sx = se.tensor("sx", "float32", (None, None, 1))
    xs = x.transpose(1, 0, 2)
    f = se.function([x, sx], [qlinear(xs, se.constant(wq), sx.transpose(1, 0, 2), se.constant(np.float32(0.5)),
                                      weight_bits=7)])
    xv = _activations(rng, (3, 4, k))
    sv = rng.random((3, 4, 1)).astype(np.float32)
    (got,) = f(xv, sv)
    _bits_equal(got, _reference(xv.transpose(1, 0, 2).copy(), wq, sv.transpose(1, 0, 2), np.float32(0.5),
                                weight_bits=7))


# -- variants and CPU targets ------------------------------------------------------------------------
def _target_function(monkeypatch, name, weight_bits, runnable):
    cpu = target.named_target(name, runnable=runnable)
    monkeypatch.setattr(target, "active_target", lambda: cpu)
    rng = np.random.default_rng(9)
    wq = _weight(rng, 67, 41, weight_bits)
    f, consts = _build(67, wq, weight_bits, True, True, True, True)
    return cpu, f, wq, consts


@pytest.mark.parametrize("weight_bits", [8, 7])
@pytest.mark.parametrize("name", list(TARGETS))
def test_variant_for_target(monkeypatch, name, weight_bits):
    """Each target gets its variant: the object calls only what the loader binds, the assembly holds the
    variant's instruction, and where the host can run the code it is exact."""
    seen = []
    real = loader.undefined_symbols
    monkeypatch.setattr(loader, "undefined_symbols", lambda code: seen.append(real(code)) or seen[-1])
    runnable = target.can_run(name)
    cpu, f, wq, consts = _target_function(monkeypatch, name, weight_bits, runnable)
    expected = TARGETS[name][0 if weight_bits == 8 else 1]
    assert qgemm.choose_variant(cpu, weight_bits).name == expected
    assert seen and seen[0] is not None and seen[0] <= loader.BOUND_SYMBOLS, seen
    _, optimised = target.compile_ir(f._compiled.source, cpu_target=cpu, optimised_ir=True)
    asm = target.assembly_of(optimised, cpu_target=cpu)
    if MNEMONIC[expected] is not None:
        assert MNEMONIC[expected] in asm, f"{name}: no {MNEMONIC[expected]}"
    if expected not in ("avx512-vnni", "avx-vnni"):
        assert "vpdpbusd" not in asm
    if expected == "generic":
        assert "pmaddubsw" not in asm
    variant = qgemm.choose_variant(cpu, weight_bits)
    if variant.prefetch:
        assert "prefetcht0" in asm, f"{name}: no prefetch"
    if expected != "generic":
        loop = _inner_loop(asm)
        assert loop is not None, f"{name}: no multiply loop found"
        assert not re.search(r"%[xyz]mm\d+, -?\d*\(%rsp\)", loop), f"{name}: the inner loop spills:\n{loop}"
    if not runnable:
        return
    rng = np.random.default_rng(10)
    for m in (1, 13, 40):
        xq = _activations(rng, (m, 67))
        sx = rng.random((m, 1)).astype(np.float32)
        (got,) = f(xq, sx)
        _bits_equal(got, _reference(xq, wq, sx, consts["sw"], consts["bias"], weight_bits))


def _inner_loop(asm):
    """The smallest loop (a label and the backward jump to it) holding at least four byte dot products."""
    lines = asm.splitlines()
    labels = {line.rstrip(":"): i for i, line in enumerate(lines) if re.match(r"^\.LBB\S+:$", line)}
    best = None
    for i, line in enumerate(lines):
        m = re.match(r"\s+j\w+\s+(\.LBB\S+)$", line)
        if m and labels.get(m.group(1), i) < i:
            body = lines[labels[m.group(1)]: i + 1]
            if sum(bool(re.search(r"vpmaddwd|vpmaddubsw|vpdpbusd", x)) for x in body) >= 4:
                if best is None or len(body) < len(best):
                    best = body
    return None if best is None else "\n".join(best)


def test_misspelled_intrinsic_is_caught_by_the_loader(monkeypatch):
    """An intrinsic LLVM does not know becomes a call of an external symbol: loading must refuse it."""
    cpu = target.named_target("x86-64", runnable=True)
    monkeypatch.setattr(target, "active_target", lambda: cpu)

    def wrong(b, acc, a, w, lanes):
        fn = qgemm._declare(b.module, "llvm.x86.avx2.vpdpbusd.256", acc.type, [acc.type, a.type, w.type])
        return b.call(fn, [acc, a, w])

    monkeypatch.setitem(qgemm._DOTS, "generic", wrong)
    monkeypatch.setattr(qgemm, "_finish_generic", lambda b, acc, lanes: b.shuffle_vector(
        acc, acc, se.backends.llvm.codegen.ir.Constant(
            se.backends.llvm.codegen.ir.VectorType(qgemm.I32, lanes), list(range(lanes)))))
    with pytest.raises(loader.UnboundSymbolError, match="vpdpbusd"):
        _build(8, np.ones((8, 4), np.int8), 8, False, False, False, False)
