"""One rendering of config values for the CLI's tables and the HTML report (`studies.rows.show_value`)."""

from __future__ import annotations

import inspect

from medmnist_lab.report import studies as report_studies
from medmnist_lab.studies import table_format, tables
from medmnist_lab.studies.rows import canon, show_value


def test_show_value_renders_each_kind_once() -> None:
    assert show_value(None) == "none"
    assert show_value("resnet18") == "resnet18"
    assert show_value(28) == "28"
    assert show_value(0.5) == "0.5"
    assert show_value({"b": 1, "a": [2, 3]}) == '{"a": [2, 3], "b": 1}' == canon({"a": [2, 3], "b": 1})
    assert show_value([1, 2]) == "[1, 2]"


def test_tables_and_the_report_use_the_same_function() -> None:
    for module in (tables, table_format, report_studies):
        assert module.show_value is show_value
        assert "def _show" not in inspect.getsource(module)
