"""where, orderBy and aggregates answer what polars computes on the same Delta tables."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]

IDS = """
query ($where: CustomerWhere, $orderBy: [CustomerOrderBy!]) {
  customers(where: $where, orderBy: $orderBy, first: 1000) { totalCount nodes { id } }
}
"""


@pytest.fixture(scope="module")
def joined(stack: Stack) -> pl.DataFrame:
    """Live customers with their extension columns (sales_*, support_*; `<domain>_row` null where
    the domain holds no row), read with polars."""
    frame = stack.lake.table("customer_identity").scan().filter(~pl.col("deleted"))
    for domain in ("sales", "support"):
        ext = stack.lake.table(f"customer_{domain}_domain").scan()
        ext = ext.select(
            pl.col("customer_id").alias("id"),
            *[pl.col(c).alias(f"{domain}_{c}") for c in ext.collect_schema() if c != "customer_id"],
            pl.lit(True).alias(f"{domain}_row"),  # null after the join: no row in the domain
        )
        frame = frame.join(ext, on="id", how="left")
    return frame.collect()


# Each leaf: (GraphQL where, polars expression), null-safe like the API: a missing value never
# satisfies a comparison, so `not` is the exact complement.
def _leaves(joined: pl.DataFrame) -> st.SearchStrategy[tuple[dict[str, Any], pl.Expr]]:
    values = sorted(v for v in joined["sales_account_value"].to_list() if v is not None)
    tiers = ["basic", "silver", "gold", "platinum"]
    tickets = st.integers(min_value=0, max_value=60)
    money = st.sampled_from(values or [Decimal("0")])
    return st.one_of(
        money.map(
            lambda v: (
                {"sales": {"accountValue": {"gt": str(v)}}},
                (pl.col("sales_account_value") > v).fill_null(False),
            )
        ),
        money.map(
            lambda v: (
                {"sales": {"accountValue": {"lte": str(v)}}},
                (pl.col("sales_account_value") <= v).fill_null(False),
            )
        ),
        st.lists(st.sampled_from(tiers), max_size=3).map(
            lambda ts: (
                {"support": {"supportTier": {"in": ts}}},
                pl.col("support_support_tier").is_in(ts).fill_null(False),
            )
        ),
        tickets.map(
            lambda n: (
                {"support": {"lifetimeTickets": {"ne": n}}},
                ~(pl.col("support_lifetime_tickets") == n).fill_null(False),
            )
        ),
        st.sampled_from(["a", "e", "an", "o"]).map(
            lambda s: ({"name": {"contains": s}}, pl.col("name").str.contains(s, literal=True))
        ),
        st.booleans().map(
            lambda b: (
                {"sales": {"salesRep": {"isNull": b}}},
                pl.col("sales_sales_rep").is_null() == b,
            )
        ),
        st.tuples(st.sampled_from(["sales", "support"]), st.booleans()).map(
            lambda db: ({db[0]: {"exists": db[1]}}, pl.col(f"{db[0]}_row").is_not_null() == db[1])
        ),
    )


def _where(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[dict[str, Any], pl.Expr]]:
    def combine(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        pair = st.lists(children, min_size=1, max_size=3)
        return st.one_of(
            pair.map(lambda xs: ({"and": [x[0] for x in xs]}, pl.all_horizontal(x[1] for x in xs))),
            pair.map(lambda xs: ({"or": [x[0] for x in xs]}, pl.any_horizontal(x[1] for x in xs))),
            children.map(lambda x: ({"not": x[0]}, ~x[1])),
        )

    return st.recursive(leaves, combine, max_leaves=5)


ORDERS = [
    ([], ["id"], [False]),
    ([{"name": "ASC"}], ["name", "id"], [False, False]),
    ([{"sales": {"accountValue": "DESC"}}], ["sales_account_value", "id"], [True, False]),
    (
        [{"support": {"supportTier": "ASC"}}, {"createdAt": "DESC"}],
        ["support_support_tier", "created_at", "id"],
        [False, True, False],
    ),
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), order=st.sampled_from(ORDERS))
def test_where_and_order_by_match_polars(
    query: Query, joined: pl.DataFrame, data: st.DataObject, order: tuple[Any, ...]
) -> None:
    where, expected = data.draw(_where(_leaves(joined)))
    order_by, columns, descending = order
    body = query(IDS, where=where, orderBy=order_by)
    assert "errors" not in body, body
    got = [n["id"] for n in body["data"]["customers"]["nodes"]]
    # The API puts nulls last ascending and first descending: null is the largest value.
    reference = joined.filter(expected).sort(
        columns, descending=descending, nulls_last=[not d for d in descending]
    )
    assert got == reference["id"].to_list()
    assert body["data"]["customers"]["totalCount"] == len(got)


def test_revenue_by_sales_rep_matches_polars(query: Query, joined: pl.DataFrame) -> None:
    text = """{ customers { aggregate(groupBy: [SALES_SALES_REP]) {
        group count sum { salesAccountValue } max { supportLifetimeTickets } } } }"""
    groups = query(text)["data"]["customers"]["aggregate"]
    reference = joined.group_by("sales_sales_rep").agg(
        pl.len().alias("n"),
        pl.col("sales_account_value").cast(pl.Float64).sum().alias("revenue"),
        pl.col("support_lifetime_tickets").max().alias("tickets"),
    )
    expected = {
        r["sales_sales_rep"]: (r["n"], r["revenue"], r["tickets"])
        for r in reference.iter_rows(named=True)
    }
    got = {
        g["group"][0]: (
            g["count"],
            g["sum"]["salesAccountValue"],
            g["max"]["supportLifetimeTickets"],
        )
        for g in groups
    }
    assert got.keys() == expected.keys()
    for rep, (n, revenue, tickets) in expected.items():
        assert got[rep][0] == n
        assert (got[rep][1] or 0) == pytest.approx(float(revenue or 0))
        assert got[rep][2] == tickets
    assert sum(g["count"] for g in groups) == joined.height


def test_a_filtered_aggregate_counts_what_the_filter_keeps(
    query: Query, joined: pl.DataFrame
) -> None:
    text = """{ customers(where: {support: {supportTier: {eq: "gold"}}}) {
        totalCount aggregate { count avg { supportLifetimeTickets } } } }"""
    answer = query(text)["data"]["customers"]
    gold = joined.filter(pl.col("support_support_tier") == "gold")
    assert answer["totalCount"] == answer["aggregate"][0]["count"] == gold.height


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("orderBy: [{name: ASC, email: DESC}]", "exactly one field"),
        ('where: {createdAt: {gt: "2026-01-01T00:00:00"}}', "UTC offset"),
        (
            'where: {sales: {accountValue: {gt: "1e30"}}}',
            "sales.accountValue is decimal(18,2): at most 16 digits before the point and 2 after,"
            " got 1E+30",
        ),
        ('where: {sales: {accountValue: {gte: "1.005"}}}', "and 2 after, got 1.005"),
        ('where: {sales: {creditLimit: {in: ["5", "NaN"]}}}', "needs a finite number, got NaN"),
        # Beyond 28 digits and a huge exponent: checked without Python's default rounding
        ('where: {sales: {creditLimit: {gt: "1.0000000000000000000000000001"}}}', "2 after"),
        ('where: {sales: {creditLimit: {lt: "1E+1000000"}}}', "got 1E+1000000"),
        ("limit: 5, first: 5", "either limit/offset or first"),
        ("first: 5, last: 5", "first or last, not both"),
        ("offset: -1", "offset must be 0 or more"),
        ('after: "bm9wZQ=="', "is not a cursor"),
    ],
)
def test_bad_arguments_get_a_clear_error(query: Query, arguments: str, message: str) -> None:
    body = query(f"{{ customers({arguments}) {{ nodes {{ id }} }} }}")
    assert message in body["errors"][0]["message"], body


def test_zero_and_exponents_that_fit_are_accepted(query: Query) -> None:
    text = "query ($v: Decimal!) { customers(where: {sales: {creditLimit: {gte: $v}}}) { totalCount } }"
    zero = query(text, v="0")["data"]["customers"]["totalCount"]
    assert query(text, v="0E+16")["data"]["customers"]["totalCount"] == zero
    assert query(text, v="-0.00")["data"]["customers"]["totalCount"] == zero
    assert "errors" not in query(text, v="1E+15")


def test_a_cursor_of_another_order_is_refused(query: Query) -> None:
    first = query("{ customers(first: 2) { pageInfo { endCursor } } }")
    cursor = first["data"]["customers"]["pageInfo"]["endCursor"]
    body = query(
        "query ($c: String) { customers(after: $c, orderBy: [{name: ASC}]) { nodes { id } } }",
        c=cursor,
    )
    assert "not a cursor of this customer connection and orderBy" in body["errors"][0]["message"]


@pytest.mark.parametrize("domain", ["sales", "support"])
def test_exists_splits_the_customers_by_whether_a_domain_holds_them(
    query: Query, joined: pl.DataFrame, domain: str
) -> None:
    def ids(where: dict[str, Any]) -> set[str]:
        body = query(IDS, where=where)
        assert "errors" not in body, body
        return {n["id"] for n in body["data"]["customers"]["nodes"]}

    held, missing = ids({domain: {"exists": True}}), ids({domain: {"exists": False}})
    assert held == set(joined.filter(pl.col(f"{domain}_row").is_not_null())["id"])
    assert missing == set(joined.filter(pl.col(f"{domain}_row").is_null())["id"])
    assert held and missing, "the seed should leave some customers out of each domain"
    assert held | missing == set(joined["id"]) and not held & missing
    # A field condition on a customer without a row in the domain only holds for isNull.
    assert missing <= ids({domain: {"updatedAt": {"isNull": True}}})
