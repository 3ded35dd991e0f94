"""The command line: ``python -m symexpr demo`` and ``info``."""

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
