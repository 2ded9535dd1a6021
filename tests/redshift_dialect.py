"""The Redshift dialect check the tests (and so CI) hold every Redshift statement to:
``sqlglot`` parses it as Redshift, and nothing in it is a construct Redshift lacks.

What counts as lacking (Redshift's SQL reference): ``INSERT … ON CONFLICT`` (Redshift has
``MERGE`` or delete + insert), ``RETURNING``, ``COPY … FROM STDIN`` or from a local file
(Redshift's COPY reads from S3, DynamoDB, EMR or SSH hosts), a COPY from S3 without an IAM
role, any statement sqlglot cannot parse as Redshift (it falls back to an opaque command),
and functions the Redshift dialect does not know."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError


def problems(sql: str) -> list[str]:
    """Why ``sql`` (one statement) would fail on Redshift; empty when it passes."""
    try:
        tree = sqlglot.parse_one(sql, read="redshift", error_level=ErrorLevel.RAISE)
    except ParseError as error:
        return [f"does not parse as Redshift: {error}"]
    found = []
    if isinstance(tree, exp.Command):
        found.append(f"not a statement the Redshift dialect knows: {tree.this}")
    if tree.find(exp.OnConflict):
        found.append("ON CONFLICT (Redshift has MERGE or delete + insert)")
    if tree.find(exp.Returning):
        found.append("RETURNING")
    for copy in tree.find_all(exp.Copy):
        if not copy.args.get("kind"):
            found.append("COPY … TO (Redshift unloads with UNLOAD)")
        for source in copy.args.get("files") or []:
            if not (
                isinstance(source, exp.Literal)
                and source.is_string
                and source.this.startswith("s3://")
            ):
                found.append(f"COPY from {source.sql()} (Redshift copies from S3)")
        credentials = copy.args.get("credentials")
        if credentials is None or credentials.args.get("iam_role") is None:
            found.append("COPY without IAM_ROLE")
    for function in tree.find_all(exp.Anonymous):
        found.append(f"function {function.name} unknown to the Redshift dialect")
    return found


def statements(script: str) -> list[str]:
    """The statements of a SQL script, comments dropped, as sqlglot splits them."""
    return [
        tree.sql("redshift")
        for tree in sqlglot.parse(script, read="redshift", error_level=ErrorLevel.RAISE)
        if tree is not None
    ]
