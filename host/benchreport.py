"""Merge ``sentei bench`` reports from several machines into a Markdown table and a plot.

Every run of every report becomes one row: machine, what ran, whether it was measured or
**modeled** (the FPGA performance model, no board), end-to-end and accelerator-only FPS,
latency percentiles, power and energy, and the speedup and perf/W ratio against one
baseline run. A ratio needs both figures; a missing power figure stays "–" with its reason
in the notes, never a guess.
"""
from __future__ import annotations

import json
from pathlib import Path

from sentei.errors import SenteiError
from sentei.host.bench import SCHEMA, SCHEMA_VERSION
from sentei.host.visualize import save_figure

SUPPORTED_VERSIONS = (SCHEMA_VERSION,)
OUTPUTS = ("benchmarks.md", "benchmarks.png")  # what write_report writes into its folder


def load_report(path) -> dict:
    """Read and check one bench report."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SenteiError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise SenteiError(f"{path}: not a sentei bench report (not UTF-8 text; pass the JSON of "
                          f"`sentei bench --json`)") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise SenteiError(f"{path}: not a sentei bench report (schema is not {SCHEMA!r})")
    if report.get("schema_version") not in SUPPORTED_VERSIONS:
        raise SenteiError(f"{path}: bench report schema version {report.get('schema_version')} is not "
                          f"supported (reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade sentei")
    if not isinstance(report.get("runs"), list) or not report["runs"]:
        raise SenteiError(f"{path}: the report has no runs")
    return report


def rows_of(report: dict, source: str = "") -> list[dict]:
    """One flat row per run of ``report``."""
    machine = report.get("environment", {}).get("label", "?")
    model = report.get("model", {})
    rows = []
    for run in report["runs"]:
        lat = run.get("latency", {})
        e2e, acc = lat.get("end_to_end"), lat.get("accelerator")
        power = run.get("power", {})
        has_power = power.get("status") in ("measured", "modeled")
        rows.append({
            "machine": machine, "label": run.get("label", run.get("backend", "?")), "kind": run.get("kind", "measured"),
            "model": model.get("name", "?"), "synthetic": bool(model.get("synthetic")), "source": source,
            "fps": (e2e or {}).get("fps"), "accel_fps": (acc or {}).get("fps"),
            "p50": (e2e or acc or {}).get("p50_ms"), "p90": (e2e or acc or {}).get("p90_ms"),
            "p99": (e2e or acc or {}).get("p99_ms"),
            "watts": power.get("mean_w") if has_power else None,
            "dynamic_w": power.get("dynamic_w") if has_power else None,
            "j_per_frame": power.get("energy_per_frame_j") if has_power else None,
            "frames_per_j": power.get("frames_per_j") if has_power else None,
            "power_source": power.get("source") if has_power else None,
            "power_note": None if has_power else power.get("reason", "no power figure"),
            "frames": run.get("frames"),
        })
    return rows


def throughput(row: dict) -> float | None:
    """The FPS a row is compared on: end-to-end when measured, else the (modeled) accelerator figure."""
    return row["fps"] if row["fps"] is not None else row["accel_fps"]


def pick_baseline(rows: list[dict], source: str, contains: str | None) -> dict:
    """The baseline row: the first run of ``source`` (whose label contains ``contains``, if given)."""
    candidates = [r for r in rows if r["source"] == source]
    if contains:
        candidates = [r for r in candidates if contains in r["label"]]
    if not candidates:
        raise SenteiError(f"--baseline-run {contains!r}: no run of {source} has that in its label "
                          f"(labels: {', '.join(r['label'] for r in rows if r['source'] == source)})")
    return candidates[0]


def add_ratios(rows: list[dict], base: dict) -> None:
    """Speedup (FPS) and perf/W ratio (frames/J) of every row against ``base``."""
    bf, bj = throughput(base), base["frames_per_j"]
    for r in rows:
        f = throughput(r)
        r["speedup"] = f / bf if f and bf else None
        r["perf_per_w"] = r["frames_per_j"] / bj if r["frames_per_j"] and bj else None


def _fmt(value, spec: str, dash: str = "–") -> str:
    return dash if value is None else format(value, spec)


def markdown(rows: list[dict], base: dict, sources: list[str]) -> str:
    """The comparison as a Markdown table with notes."""
    lines = [f"Baseline (1.0x): **{base['label']}** on {base['machine']}. FPS is end-to-end (capture to labels) "
             "for measured runs and the accelerator figure for modeled ones; perf/W compares frames per joule.",
             "",
             "| machine | run | kind | FPS | accel FPS | p50 / p90 / p99 ms | W (dyn.) | mJ/frame | frames/J "
             "| speedup | perf/W |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kind = "**modeled**" if r["kind"] == "modeled" else "measured"
        lat = " / ".join(_fmt(r[k], ".1f") for k in ("p50", "p90", "p99"))
        watts = _fmt(r["watts"], ".2f")
        if r["dynamic_w"] is not None:
            watts += f" ({r['dynamic_w']:.2f})"
        lines.append(f"| {r['machine']} | {r['label']} | {kind} | {_fmt(r['fps'], '.2f')} | "
                     f"{_fmt(r['accel_fps'], '.2f')} | {lat} | {watts} | "
                     f"{_fmt(None if r['j_per_frame'] is None else r['j_per_frame'] * 1e3, '.1f')} | "
                     f"{_fmt(r['frames_per_j'], '.3g')} | {_fmt(r['speedup'], '.2f', '–')}"
                     f"{'x' if r['speedup'] is not None else ''} | "
                     f"{_fmt(r['perf_per_w'], '.2f')}{'x' if r['perf_per_w'] is not None else ''} |")
    notes = []
    models = sorted({(r["model"], r["synthetic"]) for r in rows})
    for name, synthetic in models:
        notes.append(f"- model `{name}`" + (" — **synthetic** (random weights, shipped architecture; "
                                           "timing only, no accuracy)" if synthetic else ""))
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["power_note"]:
            grouped.setdefault((r["machine"], f"power none — {r['power_note']}"), []).append(r["label"])
        elif r["power_source"]:
            grouped.setdefault((r["machine"], f"power from {r['power_source']}"), []).append(r["label"])
    for (machine, what), labels in grouped.items():
        notes.append(f"- {machine} / {', '.join(dict.fromkeys(labels))}: {what}")
    notes.append("- reports: " + ", ".join(f"`{Path(s).name}`" for s in sources))
    return "\n".join(lines + ["", *notes, ""])


def draw_plot(rows: list[dict], path: Path) -> None:
    """Bar charts of FPS and frames/J (log scale); modeled bars are hatched and say so."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    names = [f"{r['label']}\n{r['machine']}" if len(r['machine']) < 28 else f"{r['label']}\n{r['machine'][:26]}…"
             for r in rows]
    fig = Figure(figsize=(max(8, 1.3 * len(rows) + 4), 5.5))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "fps", "frames / s (log)"), (axes[1], "frames_per_j", "frames / J (log)")):
        values = [throughput(r) if key == "fps" else r[key] for r in rows]
        if all(v is None for v in values):
            ax.text(0.5, 0.5, "no power figure in these reports\n(the table's notes say why)",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title.replace(" (log)", ""))
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for i, (r, v) in enumerate(zip(rows, values)):
            if v is None:
                ax.text(i, 1, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            modeled = r["kind"] == "modeled"
            ax.bar(i, v, color="#bbbbbb" if modeled else "#3b75af", hatch="//" if modeled else None,
                   edgecolor="black", linewidth=0.5, label="modeled (no board)" if modeled else "measured")
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        if uniq:
            ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def merge(reports: list, baseline=None, baseline_run: str | None = None) -> tuple[list, dict, list[str]]:
    """The rows of every run of ``reports`` with their ratios: ``(rows, baseline row, sources)``.

    ``baseline``/``baseline_run`` as :func:`write_report`; :func:`markdown` renders the result.
    """
    sources = [str(p) for p in reports]
    if baseline is not None and str(baseline) not in sources:
        sources.insert(0, str(baseline))
    rows = []
    for src in sources:
        rows.extend(rows_of(load_report(src), src))
    base = pick_baseline(rows, str(baseline) if baseline is not None else sources[0], baseline_run)
    add_ratios(rows, base)
    return rows, base, sources


def write_report(reports: list, out_dir, baseline=None, baseline_run: str | None = None,
                 plot: bool = True) -> list[Path]:
    """Merge ``reports`` into ``out_dir/benchmarks.md`` (and ``benchmarks.png``); returns the paths written.

    Parameters
    ----------
    reports : list of path
        Bench reports; the baseline report may be among them or not.
    out_dir : path
        Output folder (created).
    baseline : path, optional
        Report holding the baseline run (default: the first report).
    baseline_run : str, optional
        Text the baseline run's label contains (default: that report's first run).
    plot : bool
        Also draw the plot (needs matplotlib).
    """
    from sentei.host.format import atomic_write_bytes

    rows, base, sources = merge(reports, baseline, baseline_run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, png = (out / name for name in OUTPUTS)
    written = [atomic_write_bytes(table, markdown(rows, base, sources).encode("utf-8"))]
    if plot:
        draw_plot(rows, png)
        written.append(png)
    return written
