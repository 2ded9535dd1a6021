"""Tables and docs/benchmarks.md from the raw results of ``python -m bench``."""

from __future__ import annotations

from typing import Any

from bench import capacity as cap

# which generator format feeds each scenario (for the generator's own cost)
INPUT_FORMAT = {
    "enrichment": "raw",
    "chained": "raw",
    "enrichment_sql": "raw",
    "chained_sql": "raw",
    "cross_stateless": "raw",
    "inventory": "tagged",
    "inventory_sql": "tagged",
    "cross_keyed": "tagged",
    "cross_keyed_state": "tagged",
    "hourly_tumble_sql": "sale",
    "hourly_metrics": "sale_text",
    "hourly_sql": "sale_row",
    "hourly_json_value": "sale_text",
    "hourly_row_number_dedup": "sale_text",
    "hourly_group_window": "sale_text",
    "hourly_delay": "sale_text",
    "hourly_two_dedups": "sale_text",
}
SQL_OF = {
    "enrichment": "enrichment_sql",
    "inventory": "inventory_sql",
    "chained": "chained_sql",
    "hourly_metrics": "hourly_sql",
}
TARGET_ORDER_PATH_PER_CORE = 50_000
TARGET_HOURLY_RATIO = 0.8
TARGET_SINK_RATIO = 0.7


def _ok(results: dict) -> list[dict]:
    return [r for r in results.get("flink", []) if not r.get("error")]


def find(
    results: dict,
    scenario: str,
    p: int = 1,
    section: str | None = None,
    tuning: dict | None = None,
    **extra,
) -> dict | None:
    """The first successful run of ``scenario`` at ``p`` (in ``section``, with exactly
    ``tuning`` beyond parallelism, and the given extra spec values)."""
    for r in _ok(results):
        if r["scenario"] != scenario or r["parallelism"] != p:
            continue
        if section and r.get("section") != section:
            continue
        if (
            tuning is not None
            and {k: v for k, v in r["tuning"].items() if k != "parallelism"} != tuning
        ):
            continue
        if any(r.get(k) != v for k, v in extra.items()):
            continue
        return r
    return None


def generator_us(results: dict) -> dict[str, float]:
    """CPU microseconds per event the generator itself costs, by format."""
    out = {}
    for r in _ok(results):
        if r["scenario"].startswith("generator_") and r["events_per_s"]:
            out[r["scenario"].removeprefix("generator_")] = (
                r["cpu"]["tree_cores"] / r["events_per_s"] * 1e6
            )
    return out


def operator_per_core(results: dict, r: dict) -> float | None:
    """Events per CPU-second of the measured operators alone (the generator's cost taken
    out); None without a generator measurement."""
    gen = generator_us(results).get(INPUT_FORMAT.get(r["scenario"], ""))
    if gen is None or not r.get("events_per_cpu_s"):
        return None
    us = 1e6 / r["events_per_cpu_s"] - gen
    return 1e6 / us if us > 0 else None


def one_line(r: dict) -> str:
    if r.get("error"):
        return f"ERROR {r['error'][:300]}"
    cpu = r["cpu"]
    return (
        f"{r['events_per_s']:>11,.0f} ev/s  {r['events_per_cpu_s'] or 0:>11,.0f} ev/cpu-s  "
        f"cores {cpu['tree_cores']:.2f} (jvm {cpu.get('jvm_cores', 0):.2f} "
        f"py {cpu.get('python_cores', 0):.2f})  others {cpu['others_cores']:.2f}  "
        f"load {r['load_before'][0]:.1f}"
    )


def _row(results: dict, r: dict) -> list[str]:
    cpu = r["cpu"]
    op = operator_per_core(results, r)
    tuning = ", ".join(
        f"{k.split('.')[-1]}={v}" for k, v in r["tuning"].items() if k != "parallelism"
    )
    extra = ", ".join(f"{k}={r[k]}" for k in ("pyflink_side_outputs", "stores") if k in r)
    return [
        r["scenario"],
        str(r["parallelism"]),
        "; ".join(filter(None, (tuning, extra))) or "-",
        f"{r['events_per_s']:,.0f}",
        f"{cpu['tree_cores']:.2f}",
        f"{r['events_per_cpu_s']:,.0f}" if r["events_per_cpu_s"] else "-",
        f"{op:,.0f}" if op else "-",
        f"{cpu.get('jvm_cores', 0):.2f} / {cpu.get('python_cores', 0):.2f}",
        f"{cpu['others_cores']:.2f}",
        f"{r['load_before'][0]:.1f}",
    ]


HEADER = [
    "scenario",
    "p",
    "settings",
    "events/s",
    "cores used",
    "events/CPU-s",
    "operators/CPU-s",
    "JVM / Python cores",
    "others' cores",
    "load",
]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*row) for row in rows]
    )


def table(results: dict) -> str:
    rows = [_row(results, r) for r in _ok(results)]
    text = _text_table(
        ["section", *HEADER], [[r.get("section", ""), *row] for r, row in zip(_ok(results), rows)]
    )
    for r in results.get("aurora", []):
        text += f"\n{r['method']}: {r['rows_per_s']:,.0f} rows/s"
    if results.get("e2e") and "drain_events_per_s" in results["e2e"]:
        e = results["e2e"]
        text += (
            f"\nend to end via moto: put {e['put_per_s']:,.0f} records/s, "
            f"drain {e['drain_events_per_s']:,.0f} orders/s"
        )
    return text


def ratio(results: dict, job: str, sql: str, p: int = 1) -> float | None:
    """events/CPU-s of ``job`` (section jobs) over ``sql``'s (section sql) at ``p``."""
    a, b = find(results, job, p, "jobs"), find(results, sql, p, "sql")
    if not a or not b or not a["events_per_cpu_s"] or not b["events_per_cpu_s"]:
        return None
    return a["events_per_cpu_s"] / b["events_per_cpu_s"]


def ratios(results: dict) -> list[list[str]]:
    rows = []
    pairs = [*SQL_OF.items(), ("hourly_metrics", "hourly_tumble_sql")]
    for job, sql in pairs:
        for p in (1, 2):
            a, b = find(results, job, p, "jobs"), find(results, sql, p, "sql")
            if not a or not b:
                continue
            rows.append(
                [
                    job,
                    sql,
                    str(p),
                    f"{a['events_per_s']:,.0f}",
                    f"{b['events_per_s']:,.0f}",
                    f"{a['events_per_s'] / b['events_per_s']:.2f}",
                    f"{ratio(results, job, sql, p):.2f}",
                ]
            )
    return rows


def sink_rows(results: dict) -> list[list[str]]:
    copy = next((r for r in results.get("aurora", []) if r["method"] == "raw COPY"), None)
    rows = []
    for r in results.get("aurora", []):
        rows.append(
            [
                r["method"],
                "-",
                f"{r['rows_per_s']:,.0f}",
                f"{r['rows_per_s'] / copy['rows_per_s']:.2f}" if copy else "-",
                f"{r['cpu'].get('postgres_cores', 0):.2f}",
            ]
        )
    for r in _ok(results):
        if r.get("section") == "aurora":
            name = {
                "sink_copy": "sink_copy (shipped: aurora.copy_upsert_sink)",
                "sink_jdbc": "sink_jdbc (replaced: Flink JDBC upsert)",
            }.get(r["scenario"], r["scenario"])
            rows.append(
                [
                    name,
                    str(r["parallelism"]),
                    f"{r['events_per_s']:,.0f}",
                    f"{r['events_per_s'] / copy['rows_per_s']:.2f}" if copy else "-",
                    f"{r['cpu'].get('postgres_cores', 0):.2f}",
                ]
            )
    return rows


def measured_rates(results: dict) -> dict[str, float | None]:
    """Per-core rates (events per CPU-second, generator included as a stand-in for the
    Kinesis source's own decoding) of the jobs as shipped, p=1."""

    def rate(scenario, section):
        r = find(results, scenario, 1, section)
        return r["events_per_cpu_s"] if r else None

    hourly = rate("hourly_metrics", "jobs")
    return {
        "enrichment": rate("enrichment", "jobs"),
        "inventory": rate("inventory", "jobs"),
        "hourly": hourly,
    }


def capacity(results: dict) -> dict:
    rates = measured_rates(results)
    out: dict[str, Any] = {"rates": rates}
    load = cap.planned_peak()
    if all(rates.values()):
        measured = cap.plan(
            load,
            cap.jobs_at(
                rates["enrichment"],  # type: ignore[arg-type]  # all set
                rates["inventory"],  # type: ignore[arg-type]  # all set
                rates["hourly"],  # type: ignore[arg-type]  # all set
            ),
        )
        out["measured"] = {
            "kpus": {j.name: j.billed_kpus for j in measured.jobs},
            "shards": measured.shards,
            "monthly": measured.monthly_cost(),
        }
    return out


def capacity_text(results: dict) -> str:
    rates = measured_rates(results)
    load = cap.planned_peak()
    parts = []
    if all(rates.values()):
        parts.append("== planned peak, at the measured per-core rates")
        parts.append(
            cap.format_plan(
                cap.plan(
                    load,
                    cap.jobs_at(rates["enrichment"], rates["inventory"], rates["hourly"]),  # type: ignore[arg-type]  # all set
                )
            )
        )
    target = cap.jobs_at(
        2 * TARGET_ORDER_PATH_PER_CORE, 2 * TARGET_ORDER_PATH_PER_CORE, rates["hourly"] or 200_000
    )  # hourly_metrics: as measured
    parts.append(
        "== planned peak, at the target rates (order path 50,000 events/core-s: 100,000 per job)"
    )
    parts.append(cap.format_plan(cap.plan(load, target)))
    parts.append("== the same, the pipeline's own streams carrying 10 events per record")
    parts.append(cap.format_plan(cap.plan(load, target, internal_events_per_record=10)))
    parts.append(
        "== the same, every stream aggregating each store's events (KPL's 100 ms "
        "linger, records up to 1 MB)"
    )
    parts.append(cap.format_plan(cap.plan(load, target, aggregation=cap.Aggregation())))
    seeded = cap.planned_peak(cap.reference_weights())
    parts.append("== the same, the seeded stores' weights (80/20 and +-50% within each group)")
    parts.append(cap.format_plan(cap.plan(seeded, target)))
    parts.append("== the seeded stores' weights, every stream aggregating each store's events")
    parts.append(cap.format_plan(cap.plan(seeded, target, aggregation=cap.Aggregation())))
    return "\n\n".join(parts)
