"""Selecting traces: select(forest, 'loops & func("name")').

The query language (loops, bridges, func("name"), op("name"), &, |, ~,
parentheses; an empty query selects every trace) is parsed and matched in C
(src/jitlog/vjl_query.h): a query is never evaluated as Python, so one that
comes from elsewhere is safe.
"""
from jitlog.parser import _require_core


class QueryError(ValueError):
    """The query does not parse; str() names the column."""


def check(text):
    """Raises QueryError when text is not a query."""
    try:
        _require_core().jitlog_check_query(text or "")
    except ValueError as e:
        raise QueryError(str(e))


def select(forest, text):
    """The traces of forest that text selects, in the log's order."""
    try:
        indices = forest._log.select(text or "")
    except ValueError as e:
        raise QueryError(str(e))
    return [forest._trace_list[i] for i in indices]


class Query(object):
    """The original API: Query(text)(forest) -> the selected traces."""

    def __init__(self, text):
        check(text)
        self.query_str = text

    def __call__(self, forest):
        return select(forest, self.query_str)


# The original evaluated queries with eval() and said so in this name; the
# name is kept for scripts, the query is parsed now.
new_unsafe_query = Query
