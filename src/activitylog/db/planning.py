"""A word to SQLite's query planner, which plans without statistics unless someone runs ANALYZE (a product
database never does): given two usable indexes, it may walk the wrong one, e.g. every entry older than a
cut-off through the time index where the condition beside it bounds a few hundred seqs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class not_an_index(FunctionElement[Any]):
    """The column's value, but no index of it to plan by: SQLite's unary ``+``, the column itself elsewhere.
    In a WHERE term the planner then takes another index for the access path; in a GROUP BY it no longer
    walks the column's index for its order."""

    name = "not_an_index"
    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type  # comparisons bind their values as the column does


@compiles(not_an_index)
def _as_is(element: not_an_index, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(not_an_index, "sqlite")
def _unary_plus(element: not_an_index, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)
