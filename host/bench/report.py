"""Merge ``sentei bench`` reports from several machines into a Markdown table and a plot.

Every run of every report becomes one row: machine, what ran, whether it was measured or
**modeled** (the FPGA performance model, no board), end-to-end and accelerator-only FPS,
latency percentiles, power and energy, and the speedups and perf/W ratio against one
baseline run. Speedups compare like with like: end-to-end FPS with the baseline's
end-to-end FPS, accelerator-only with accelerator-only (a modeled run has no end-to-end
figure). A ratio needs both figures; a missing figure stays "–" (a missing power figure
with its reason in the notes), never a guess.
"""
from __future__ import annotations

import json
import re
import math
from dataclasses import dataclass, make_dataclass
from pathlib import Path

from sentei.errors import SenteiError
from sentei.host.options import Choice, Section, Text, key, schema_problems
from sentei.host.data.visualize import save_figure

SCHEMA = "sentei-bench"  # what `sentei bench --json` writes (sentei.host.commands.bench), and its version
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (SCHEMA_VERSION,)
MAX_REPORT_BYTES = 64 << 20  # a report of thousands of runs is a few MB
OUTPUTS = ("benchmarks.md", "benchmarks.png")  # what write_report writes into its folder


def load_report(path) -> dict:
    """Read and check one bench report."""
    from sentei.host.modelfile.schema import read_regular_file

    path = Path(path)
    try:
        report = json.loads(read_regular_file(path, MAX_REPORT_BYTES, "bench report",
                                              "the JSON of `sentei bench --json`").decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise SenteiError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise SenteiError(f"{path}: nested too deeply to be a bench report (pass the JSON of "
                          f"`sentei bench --json`)") from None
    except UnicodeDecodeError:
        raise SenteiError(f"{path}: not a sentei bench report (not UTF-8 text; pass the JSON of "
                          f"`sentei bench --json`)") from None
    except ValueError:  # an integer of thousands of digits
        raise SenteiError(f"{path}: holds a number too long to be a figure; not a sentei bench report") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise SenteiError(f"{path}: not a sentei bench report (schema is not {SCHEMA!r})")
    if report.get("schema_version") not in SUPPORTED_VERSIONS:
        raise SenteiError(f"{path}: bench report schema version {report.get('schema_version')} is not "
                          f"supported (reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade sentei")
    if not isinstance(report.get("runs"), list) or not report["runs"]:
        raise SenteiError(f"{path}: the report has no runs")
    check_fields(path, report)
    return report


@dataclass(frozen=True)
class Figure:
    """A finite JSON number of at least 0, not a boolean (``nullable``: or null)."""

    nullable: bool = True

    def problem(self, value) -> str | None:
        if value is None and self.nullable:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return None
        return "a number >= 0" + (" or null" if self.nullable else "")


def _object(schema, nullable: bool = False) -> Section:
    return Section(schema, nullable=nullable, what="an object")


# The fields of a bench report that its rows are made of, with their types and defaults
# (sentei.host.options' schema mechanism, as training/config.py's run configs); other keys are
# the report's own and not checked.
def _figures(name: str, figures: tuple, **first) -> type:
    """A schema of the keys ``first`` (name: :func:`key`) and then the optional ``figures``."""
    return make_dataclass(name, [*((k, object, f) for k, f in first.items()),
                                 *((k, object, key(None, Figure())) for k in figures)], frozen=True)


Stats = _figures("Stats", ("fps", "p50_ms", "p90_ms", "p99_ms"))
Power = _figures("Power", ("mean_w", "dynamic_w", "energy_per_frame_j", "frames_per_j"), status=key("none", Text()))


@dataclass(frozen=True)
class Latency:
    end_to_end: object = key(None, _object(Stats, nullable=True))
    accelerator: object = key(None, _object(Stats, nullable=True))


@dataclass(frozen=True)
class Run:
    """One run (its ``label``, which names it in the messages -- ``backend`` in older reports --
    is checked before these)."""

    kind: str = key("measured", Choice(("measured", "modeled"), nullable=True))
    latency: dict = key({}, _object(Latency))
    power: dict = key({}, _object(Power))


@dataclass(frozen=True)
class Environment:
    label: object = key(None, Text(nullable=True))


@dataclass(frozen=True)
class ModelInfo:
    name: object = key(None, Text(nullable=True))


@dataclass(frozen=True)
class Report:
    environment: dict = key({}, _object(Environment))
    model: dict = key({}, _object(ModelInfo))


def check_fields(path, report: dict) -> None:
    """Every field a row is made of has its type (:class:`Report`, :class:`Run`): the file, the run
    and the field otherwise."""
    _first(str(path), schema_problems(report, Report))
    for n, run in enumerate(report["runs"], 1):
        where = f"{path}: run {n}"
        if not isinstance(run, dict):
            _fail(where, None, run, "an object")
        if isinstance(run.get("label"), str):
            where += f" ({run['label']})"
        label = run.get("label", run.get("backend"))
        if not isinstance(label, str):
            _fail(where, "label", label, "a string")
        _first(where, schema_problems(run, Run))
        if not any((run["latency"].get(part) or {}).get("fps") for part in ("end_to_end", "accelerator")):
            _fail(where, "latency", run["latency"], "an end_to_end or accelerator figure with its fps")


def _first(where: str, problems) -> None:
    for name, value, expected in problems:
        _fail(where, name, value, expected)


def _fail(where: str, field: str | None, value, expected: str):
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    what = f"{where}: '{field}'" if field else where
    raise SenteiError(f"{what} is {shown}, expected {expected} (regenerate the report with `sentei bench --json`)")


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
            "machine": machine, "label": run.get("label", run.get("backend", "?")), "kind": run.get("kind") or Run.kind,
            "model": model.get("name", "?"), "synthetic": bool(model.get("synthetic")), "source": source,
            "fps": (e2e or {}).get("fps"), "accel_fps": (acc or {}).get("fps"),
            "p50": (e2e or acc or {}).get("p50_ms"), "p90": (e2e or acc or {}).get("p90_ms"),
            "p99": (e2e or acc or {}).get("p99_ms"), "latency_of": "end-to-end" if e2e else "accelerator",
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
    """The FPS a row is plotted with: end-to-end, else (modeled, trtexec) the accelerator-only figure."""
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
    """Speedups and perf/W ratio of every row against ``base``, like with like: end-to-end FPS
    (``speedup_e2e``), accelerator-only FPS (``speedup_accel``), frames/J (``perf_per_w``)."""
    for r in rows:
        r["speedup_e2e"] = _ratio(r["fps"], base["fps"])
        r["speedup_accel"] = _ratio(r["accel_fps"], base["accel_fps"])
        r["perf_per_w"] = _ratio(r["frames_per_j"], base["frames_per_j"])


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "–" if value is None else format(value, spec) + suffix


def _times(value) -> str:
    return _fmt(value, ".2f", "x")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_text(value) -> str:
    """A report's string as Markdown text that stays text: control characters (newlines,
    terminal escapes) shown escaped, Markdown and HTML markup characters backslash-escaped, so
    that a run label cannot break the table, start a link or inject HTML."""
    if not isinstance(value, str):
        return value
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in value)
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown(rows: list[dict], base: dict, sources: list[str]) -> str:
    """The comparison as a Markdown table with notes (every string from a report escaped: :func:`md_text`)."""
    text_keys = ("machine", "label", "model", "power_note", "power_source")
    rows = [dict(r, **{k: md_text(r[k]) for k in text_keys}) for r in rows]
    base = dict(base, **{k: md_text(base[k]) for k in text_keys})
    sources = [md_text(Path(s).name) for s in sources]
    lines = [f"Baseline (1.0x): **{base['label']}** on {base['machine']}. Speedups compare like with like: "
             "end-to-end FPS (capture to labels) with the baseline's end-to-end FPS, accelerator-only FPS with "
             "its accelerator-only FPS; a modeled run has no end-to-end figure (–). Latency is end-to-end, "
             "or accelerator-only where marked (accel.); perf/W compares frames per joule.",
             "",
             "| machine | run | kind | end-to-end FPS | accel.-only FPS | p50 / p90 / p99 ms | W (dyn.) | mJ/frame "
             "| frames/J | speedup end-to-end | speedup accel.-only | perf/W |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kind = "**modeled**" if r["kind"] == "modeled" else "measured"
        lat = " / ".join(_fmt(r[k], ".1f") for k in ("p50", "p90", "p99"))
        if r["latency_of"] == "accelerator":
            lat += " (accel.)"
        watts = _fmt(r["watts"], ".2f")
        if r["dynamic_w"] is not None:
            watts += f" ({r['dynamic_w']:.2f})"
        lines.append(f"| {r['machine']} | {r['label']} | {kind} | {_fmt(r['fps'], '.2f')} | "
                     f"{_fmt(r['accel_fps'], '.2f')} | {lat} | {watts} | "
                     f"{_fmt(None if r['j_per_frame'] is None else r['j_per_frame'] * 1e3, '.1f')} | "
                     f"{_fmt(r['frames_per_j'], '.3g')} | {_times(r['speedup_e2e'])} | "
                     f"{_times(r['speedup_accel'])} | {_times(r['perf_per_w'])} |")
    notes = []
    models = sorted({(r["model"], r["synthetic"]) for r in rows})
    for name, synthetic in models:
        notes.append(f"- model {name}" + (" — **synthetic** (random weights, shipped architecture; "
                                           "timing only, no accuracy)" if synthetic else ""))
    grouped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["power_note"]:
            grouped.setdefault((r["machine"], f"power none — {r['power_note']}"), []).append(r["label"])
        elif r["power_source"]:
            grouped.setdefault((r["machine"], f"power from {r['power_source']}"), []).append(r["label"])
    for (machine, what), labels in grouped.items():
        notes.append(f"- {machine} / {', '.join(dict.fromkeys(labels))}: {what}")
    notes.append("- reports: " + ", ".join(sources))
    return "\n".join(lines + ["", *notes, ""])


def draw_plot(rows: list[dict], path: Path) -> None:
    """Bar charts of FPS and frames/J (log scale); modeled bars are hatched and say so."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    names = [f"{r['label']}\n{r['machine']}" if len(r['machine']) < 28 else f"{r['label']}\n{r['machine'][:26]}…"
             for r in rows]
    fig = Figure(figsize=(max(8, 1.3 * len(rows) + 4), 5.5))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "fps", "frames / s (log)\nend-to-end, else accelerator-only"),
                           (axes[1], "frames_per_j", "frames / J (log)")):
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
                   edgecolor="black", linewidth=0.5,
                   label="modeled (no board; accelerator-only)" if modeled else "measured")
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
    from sentei.atomic_write import atomic_write_bytes

    rows, base, sources = merge(reports, baseline, baseline_run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, png = (out / name for name in OUTPUTS)
    written = [atomic_write_bytes(table, markdown(rows, base, sources).encode("utf-8"))]
    if plot:
        draw_plot(rows, png)
        written.append(png)
    return written
