"""The public toolkit for layer authors: its names are the promised ones, each documented
with an example, and every example runs."""

from __future__ import annotations

import doctest

import pytest

from groco_core import toolkit

# The names the semantic-versioning promise covers. Removing one is a major version;
# adding one is a minor version (and an entry here).
PROMISED = {
    "DEPTHWISE_FORMULATIONS",
    "depthwise_correlation",
    "fastest_depthwise_formulation",
    "BaseGroupConv",
    "BaseGroupKernelLayer",
    "KernelGather",
    "LoRAKernelMixin",
    "PaddingRule",
    "RegisteredGroupsMixin",
    "add_kernel_and_bias",
    "backend_call",
    "cached_transformed_kernel",
    "check_centre_point",
    "check_group_axis",
    "check_invariant_under_group",
    "check_positive_int",
    "check_window_in_support",
    "eager_torch",
    "equivariant_padding",
    "group_kernel_indices",
    "image_support",
    "keyword_arguments",
    "mask_to_support",
    "merge_group_axis",
    "normalize_data_format",
    "normalize_padding",
    "normalize_tuple",
    "on_jax_cpu",
    "plain_activation",
    "plain_crop_spatial",
    "plain_fixed_dense",
    "plain_known_paddings",
    "plain_merge_group_axis",
    "plain_pad_spatial",
    "plain_selection_kernel",
    "plain_split_group_axis",
    "plain_swap_last_axes",
    "plain_to_channels_first",
    "plain_to_channels_last",
    "reshape",
    "resolve_groups",
    "split_group_axis",
    "tile_over_group",
    "torch_compiling",
}


def test_the_toolkit_exports_the_promised_names():
    assert set(toolkit.__all__) == PROMISED
    assert len(toolkit.__all__) == len(PROMISED)  # no name listed twice
    for name in toolkit.__all__:
        assert not name.startswith("_") and hasattr(toolkit, name)


# Constants, documented in the toolkit's own docstring.
CONSTANTS = {"DEPTHWISE_FORMULATIONS"}
DOCUMENTED = sorted(PROMISED - CONSTANTS)


def test_constants_are_documented_in_the_module():
    for name in CONSTANTS:
        assert f"`{name}`" in toolkit.__doc__


@pytest.mark.parametrize("name", DOCUMENTED)
def test_each_name_has_a_docstring_with_an_example(name):
    doc = getattr(toolkit, name).__doc__ or ""
    assert doc.strip(), f"toolkit.{name} has no docstring"
    assert ">>>" in doc, f"toolkit.{name}'s docstring has no example"


@pytest.mark.parametrize("name", DOCUMENTED)
def test_each_example_runs(name):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(getattr(toolkit, name), f"toolkit.{name}", globs={})
    assert tests and sum(len(t.examples) for t in tests) > 0
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"toolkit.{name}: {result.failed} example(s) failed"


def test_a_failing_example_is_caught():
    def broken():
        """>>> 1 + 1
        3
        """

    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(broken, "broken", globs={}):
        runner.run(test, out=lambda _: None)
    assert runner.summarize(verbose=False).failed == 1
