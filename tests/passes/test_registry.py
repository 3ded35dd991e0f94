"""The pass registry: ``passes=`` resolution, register_rule / register_pass, the rewrite log
and ``debugprint(f, rewrites=True)``.

Tests that register something work on a copy of the registry (``isolated_registry``) or of a
pass's rule set, so other tests see the standard pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.graph.fgraph import FunctionGraph, RewriteRecord
from symexpr.ops import scalar as ps
from symexpr.passes import (
    GraphPass,
    RewritePass,
    get_pass,
    register_pass,
    register_rule,
    registered_passes,
    registry,
    resolve_passes,
)
from symexpr.rewriting import Pat, Rule, RuleSet

X = Pat.var("x")
FAST_RUN = ["merge", "canonicalize", "stabilize", "specialize", "fuse_attention", "fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues", "cleanup"]


def names(passes):
    return [getattr(p, "name", p) for p in resolve_passes(passes)]


def rules_fired(f):
    return [r.rule for r in f.rewrite_log]


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the pass registry for this test only."""
    monkeypatch.setattr(registry, "_PASSES", dict(registry._PASSES))
    return registry._PASSES


@pytest.fixture
def canonicalize_copy(monkeypatch):
    """The canonicalize pass with a copy of its rules, restored after the test."""
    canon = get_pass("canonicalize")
    monkeypatch.setattr(canon, "rules", RuleSet(list(canon.rules)))
    return canon


# -- presets, names, tags ----------------------------------------------------------------------


def test_none_is_fast_run():
    assert names(None) == names("fast_run") == names(["fast_run"]) == FAST_RUN
    assert [id(p) for p in resolve_passes(None)] == [id(get_pass(n)) for n in FAST_RUN]


def test_fast_run_is_in_position_order():
    positions = [get_pass(n).position for n in FAST_RUN]
    assert positions == sorted(positions)
    assert [p.name for p in registered_passes() if "fast_run" in p.tags] == FAST_RUN


def test_fast_compile_runs_merge_and_cleanup_only():
    assert names("fast_compile") == ["merge", "cleanup"]


@pytest.mark.parametrize("nothing", ["none", [], (), ["none"], ["none", "none"]])
def test_none_and_empty_run_nothing(nothing):
    assert resolve_passes(nothing) == []


def test_none_runs_nothing_in_function():
    x = se.vector("x")
    out = se.exp(x) * 1.0
    f = se.function([x], out, passes="none")
    assert f.fgraph.outputs[0] is out
    assert f.rewrite_log == []
    assert se.function([x], out, passes=[]).fgraph.outputs[0] is out


def test_a_pass_name():
    assert names("stabilize") == ["stabilize"]
    assert resolve_passes("stabilize")[0] is get_pass("stabilize")
    assert names(["decompose"]) == ["decompose"]


def test_a_tag_selects_every_pass_carrying_it_in_position_order():
    assert names("fusion") == ["fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues"]


def test_a_list_runs_in_list_order_and_each_pass_once():
    assert names(["specialize", "canonicalize"]) == ["specialize", "canonicalize"]
    assert names(["canonicalize", "fast_run"]) == ["canonicalize", "merge", "stabilize", "specialize",
                                                    "fuse_attention", "fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues", "cleanup"]
    assert names(["fast_run", "decompose"]) == FAST_RUN + ["decompose"]
    assert names(["cleanup", "cleanup"]) == ["cleanup"]
    assert names(("merge", "fusion")) == ["merge", "fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues"]


# -- exclusions --------------------------------------------------------------------------------


def test_excluding_a_pass():
    without = [n for n in FAST_RUN if n != "stabilize"]
    assert names(["fast_run", "-stabilize"]) == without
    assert names(["-stabilize"]) == without
    assert names("-stabilize") == without
    assert names(["-stabilize", "fast_run"]) == without  # order of the exclusion does not matter
    assert names(["canonicalize", "-stabilize"]) == ["canonicalize"]


def test_excluding_a_tag_removes_every_pass_carrying_it():
    without_fusion = ["merge", "canonicalize", "stabilize", "specialize", "fuse_attention", "cleanup"]
    assert names(["fast_run", "-fusion"]) == without_fusion
    assert names("-fusion") == without_fusion
    assert names(["-fast_compile"]) == ["canonicalize", "stabilize", "specialize", "fuse_attention", "fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues"]


def test_exclusions_only_start_from_fast_run():
    assert names(["-fusion"]) == [n for n in FAST_RUN if n not in ("fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues")]
    assert names(["-fusion", "-merge"]) == ["canonicalize", "stabilize", "specialize", "fuse_attention", "cleanup"]
    assert names(["-attention"]) == [n for n in FAST_RUN if n != "fuse_attention"]


def test_excluding_a_rule_keeps_the_rest_of_its_pass():
    x = se.vector("x")
    out = se.exp(x) * 1.0 - 0.0
    assert rules_fired(se.function([x], out, passes=["canonicalize"])) == ["mul_one", "sub_zero"]
    f = se.function([x], out, passes=["canonicalize", "-mul_one"])
    assert rules_fired(f) == ["sub_zero"]
    assert f.fgraph.outputs[0] is se.exp(x) * 1.0
    g = se.function([x], out, passes=["-mul_one"])  # fast_run without the rule
    assert "mul_one" not in rules_fired(g)
    assert "sub_zero" in rules_fired(g)
    a = np.linspace(-1, 1, 5).astype("float32")
    np.testing.assert_allclose(g(a), np.exp(a), rtol=1e-6)


def test_excluding_a_rule_keeps_the_pass_name_and_the_other_passes():
    resolved = resolve_passes(["-mul_one"])
    assert [getattr(p, "name", None) for p in resolved] == FAST_RUN
    assert resolved[0] is get_pass("merge")  # graph passes are returned as they are
    assert all(callable(p) for p in resolved)


def test_excluding_a_rule_does_not_change_the_registered_pass():
    x = se.vector("x")
    se.function([x], se.exp(x) * 1.0, passes=["-mul_one"])
    assert "mul_one" in [r.name for r in get_pass("canonicalize").rules]
    assert rules_fired(se.function([x], se.exp(x) * 1.0, passes=["canonicalize"])) == ["mul_one"]


def test_excluding_constant_folding_removes_it_from_every_rule_pass():
    x = se.vector("x")
    k = se.constant(np.arange(3, dtype="float32")) * 0.5
    assert "constant_folding" in rules_fired(se.function([x], x + k, passes="fast_compile"))
    f = se.function([x], x + k, passes=["fast_run", "-constant_folding"])
    assert "constant_folding" not in rules_fired(f)
    g = se.function([x], x + k, passes=["merge", "cleanup", "-constant_folding"])
    assert rules_fired(g) == []


# -- Rules, passes and callables as entries ------------------------------------------------------


def test_a_rule_as_an_entry():
    x = se.vector("x")
    r = Rule("exp_to_sin", Pat(ps.exp, [X]), lambda x, **_: se.sin(x))
    assert resolve_passes([r]) == [r]
    assert resolve_passes(r) == [r]
    f = se.function([x], se.exp(x) * 2.0, passes=[r])
    assert f.fgraph.outputs[0] is se.sin(x) * 2.0
    assert [(h.pass_name, h.rule) for h in f.rewrite_log] == [("exp_to_sin", "exp_to_sin")]


def test_a_callable_as_an_entry():
    calls = []

    def my_pass(fgraph):
        calls.append(fgraph)

    assert resolve_passes(my_pass) == [my_pass]
    assert resolve_passes(["merge", my_pass]) == [get_pass("merge"), my_pass]
    x = se.vector("x")
    f = se.function([x], se.exp(x), passes=["canonicalize", my_pass])
    assert len(calls) == 1 and calls[0] is f.fgraph
    assert isinstance(calls[0], FunctionGraph)


def test_an_unregistered_pass_object_as_an_entry():
    x = se.vector("x")
    p = RewritePass("local_pass", [Rule("exp_to_cos", Pat(ps.exp, [X]), lambda x, **_: se.cos(x))])
    assert resolve_passes([p]) == [p]
    f = se.function([x], se.exp(x), passes=[p, "-mul_one"])
    assert f.fgraph.outputs[0] is se.cos(x)


def test_unknown_names_raise_value_error_listing_the_choices():
    with pytest.raises(ValueError) as info:
        resolve_passes(["fast_run", "no_such_pass"])
    message = str(info.value)
    assert "no_such_pass" in message
    for choice in ("fast_run", "fast_compile", "canonicalize", "stabilize", "fuse_elemwise", "cleanup"):
        assert choice in message
    with pytest.raises(ValueError, match="no_such_rule"):
        resolve_passes(["fast_run", "-no_such_rule"])
    with pytest.raises(ValueError, match="canonicalize"):
        resolve_passes("-no_such_rule")
    x = se.vector("x")
    with pytest.raises(ValueError, match="typo"):
        se.function([x], x, passes="typo")


@pytest.mark.parametrize("bad", [3, 1.5, {"fast_run"}, {"a": 1}, b"fast_run"])
def test_a_bad_passes_argument_raises_type_error(bad):
    with pytest.raises(TypeError, match="passes"):
        resolve_passes(bad)


@pytest.mark.parametrize("bad", [3, None, ["fast_run"], b"merge", object()])
def test_a_bad_entry_raises_type_error(bad):
    with pytest.raises(TypeError, match="passes"):
        resolve_passes(["merge", bad])


# -- register_rule -------------------------------------------------------------------------------


def _exp_exp_to_exp():
    def build(node_out, x):
        return se.exp(x) if se.exp(x).type == node_out.type else None

    return Rule("test_exp_exp_once", Pat(ps.exp, [Pat(ps.exp, [X])]), build, "exp(exp(x)) -> exp(x) (a test rule)")


def test_register_rule_into_canonicalize_fires_in_function(canonicalize_copy):
    x = se.vector("x")
    out = se.exp(se.exp(x)) * 1.0
    assert "test_exp_exp_once" not in rules_fired(se.function([x], out))
    r = _exp_exp_to_exp()
    assert register_rule(r) is r
    assert canonicalize_copy.rules.rules[-1] is r
    assert ("canonicalize", r) in se.passes.all_rules()
    f = se.function([x], out)
    assert rules_fired(f) == ["test_exp_exp_once", "mul_one"]
    assert f.fgraph.outputs[0] is se.exp(x)
    assert "test_exp_exp_once" not in rules_fired(se.function([x], out, passes=["-test_exp_exp_once"]))
    with pytest.raises(ValueError, match="test_exp_exp_once"):
        register_rule(_exp_exp_to_exp())


def test_register_rule_is_undone_for_other_tests():
    """Runs after the test above (file order): the standard canonicalize pass is untouched."""
    assert "test_exp_exp_once" not in [r.name for r in get_pass("canonicalize").rules]
    x = se.vector("x")
    assert "test_exp_exp_once" not in rules_fired(se.function([x], se.exp(se.exp(x))))


def test_register_rule_into_a_fresh_pass_used_by_name(isolated_registry):
    name = "test_registry_fresh_pass"
    fresh = register_pass(RewritePass(name, [], tags=(), position=60.0))
    assert fresh is get_pass(name)
    r = register_rule(_exp_exp_to_exp(), name)
    assert [x.name for x in fresh.rules] == ["test_exp_exp_once"]
    x = se.vector("x")
    f = se.function([x], se.exp(se.exp(x)), passes=[name])
    assert f.fgraph.outputs[0] is se.exp(x)
    assert [(h.pass_name, h.rule) for h in f.rewrite_log] == [(name, r.name)]
    assert name not in names(None)  # untagged: not in the default pipeline


def test_register_rule_needs_a_rule_pass():
    r = _exp_exp_to_exp()
    with pytest.raises(ValueError, match="canonicalize") as info:
        register_rule(r, "fuse_elemwise")
    assert "fuse_elemwise" in str(info.value)
    with pytest.raises(ValueError):
        register_rule(r, "no_such_pass")
    assert "test_exp_exp_once" not in [x.name for _, x in se.passes.all_rules()]


# -- register_pass ------------------------------------------------------------------------------


def test_register_pass_with_a_plain_callable_needs_a_name(isolated_registry):
    def my_pass(fgraph):
        """Does nothing."""

    with pytest.raises(TypeError, match="name"):
        register_pass(my_pass)
    wrapped = register_pass(my_pass, "test_plain_callable")
    assert isinstance(wrapped, GraphPass)
    assert wrapped.name == "test_plain_callable" and wrapped.fn is my_pass
    assert wrapped.position == 50.0 and wrapped.tags == frozenset()
    assert get_pass("test_plain_callable") is wrapped


def test_register_pass_tagged_fast_run_joins_the_default_pipeline_at_its_position(isolated_registry):
    seen = []
    register_pass(lambda fg: seen.append(fg), "test_between", tags=("fast_run",), position=1.8)
    assert names(None) == ["merge", "canonicalize", "stabilize", "test_between", "specialize",
                           "fuse_attention", "fuse_elemwise", "fuse_reductions", "fuse_qlinear_epilogues", "cleanup"]
    x = se.vector("x")
    se.function([x], se.exp(x))
    assert len(seen) == 1
    assert names("-test_between") == FAST_RUN


def test_register_pass_rejects_a_mismatched_name_and_non_callables(isolated_registry):
    p = GraphPass("test_named", lambda fg: None)
    with pytest.raises(ValueError, match="test_named"):
        register_pass(p, "another_name")
    with pytest.raises(TypeError):
        register_pass(42, "forty_two")
    assert register_pass(p) is p and register_pass(p, "test_named") is p


def test_registry_is_restored_after_isolated_tests():
    for leftover in ("test_registry_fresh_pass", "test_plain_callable", "test_between", "test_named"):
        assert leftover not in [p.name for p in registered_passes()]
    assert names(None) == FAST_RUN


# -- the rewrite log ---------------------------------------------------------------------------


def test_rewrite_log_records():
    x = se.vector("x")
    f = se.function([x], se.exp(x) * 1.0 - 0.0)
    assert [(r.pass_name, r.rule) for r in f.rewrite_log] == [("canonicalize", "mul_one"), ("canonicalize", "sub_zero")]
    first, second = f.rewrite_log
    assert isinstance(first, RewriteRecord)
    assert first.before is se.exp(x) * 1.0 and first.after is se.exp(x)
    assert second.before is se.exp(x) - 0.0 and second.after is se.exp(x)
    assert f.rewrite_log == f.fgraph.history
    assert str(first) == "canonicalize: mul_one: exp(x) * 1.0 -> exp(x)"
    assert str(second) == "canonicalize: sub_zero: exp(x) - 0.0 -> exp(x)"


def test_rewrite_log_includes_graph_passes():
    x = se.matrix("x")
    f = se.function([x], (se.exp(x) * 2.0).sum(axis=1))
    assert [r.rule for r in f.rewrite_log] == ["fuse_elemwise", "fuse_reduction"]
    for record in f.rewrite_log:
        assert isinstance(record.pass_name, str) and record.pass_name
        text = str(record)
        assert text.startswith(f"{record.pass_name}: {record.rule}: ") and " -> " in text and "\n" not in text


def test_rewrite_log_str_is_one_bounded_line():
    x = se.vector("x")
    big = x
    for _ in range(60):
        big = se.exp(big) * 1.0
    f = se.function([x], big, passes=["canonicalize"])
    assert len(f.rewrite_log) == 60
    for record in f.rewrite_log:
        text = str(record)
        assert "\n" not in text
        assert len(text) < 2 * 120 + 60


def test_rewrite_log_is_a_snapshot_taken_at_compile_time():
    x = se.vector("x")
    f = se.function([x], se.exp(x) * 1.0)
    log = list(f.rewrite_log)
    f.fgraph.history.append(RewriteRecord("later", "later", x, x))
    assert f.rewrite_log == log


# -- debugprint(f, rewrites=True) ---------------------------------------------------------------


def test_debugprint_with_rewrites():
    x = se.vector("x")
    f = se.function([x], se.exp(x) * 1.0 - 0.0)
    text = se.debugprint(f, rewrites=True, file="str")
    assert text == (
        "Exp [id A] float32 (None,)\n"
        " └─ x [id B] float32 (None,)\n"
        "Rewrites (2):\n"
        "  canonicalize: mul_one: exp(x) * 1.0 -> exp(x)\n"
        "  canonicalize: sub_zero: exp(x) - 0.0 -> exp(x)\n"
    )


def test_debugprint_with_rewrites_lists_every_rule(capsys):
    x = se.matrix("x")
    f = se.function([x], se.log(1 + se.exp(x) * 1.0) ** 2 + se.exp(x).sum(axis=1, keepdims=True))
    text = se.debugprint(f, rewrites=True)
    assert capsys.readouterr().out == text
    assert f"Rewrites ({len(f.rewrite_log)}):" in text
    assert len(f.rewrite_log) >= 3
    lines = text.splitlines()
    start = lines.index(f"Rewrites ({len(f.rewrite_log)}):")
    assert lines[start + 1:] == [f"  {record}" for record in f.rewrite_log]
    for record in f.rewrite_log:
        assert record.rule in text


def test_debugprint_with_rewrites_and_no_rewrites():
    x = se.vector("x")
    text = se.debugprint(se.function([x], se.exp(x), passes="none"), rewrites=True, file="str")
    assert text.endswith("Rewrites (0):\n")
    assert "Rewrites" not in se.debugprint(se.function([x], se.exp(x) * 1.0), file="str")


def test_debugprint_with_rewrites_needs_a_function():
    x = se.vector("x")
    f = se.function([x], se.exp(x) * 1.0)
    for not_a_function in (se.exp(x), [se.exp(x)], f.fgraph):
        with pytest.raises(TypeError, match="Function"):
            se.debugprint(not_a_function, rewrites=True, file="str")
