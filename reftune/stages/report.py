"""Plots (PNG) and a self-contained HTML / Markdown report of a run or a comparison. The only module
that knows matplotlib; the HTML embeds its images, so it opens from disk with nothing beside it."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from reftune.training.tracking import read_metrics


def series(folder: Path, key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(x, values) of one metric from a run folder's metrics.jsonl; x is "step" or "seconds" since
    the run's first record (the axis on which runs with different step costs compare)."""
    metrics = read_metrics(folder)
    start = metrics[0]["time"] if metrics else 0.0
    points = [(m["step"] if x == "step" else m["time"] - start, m[key]) for m in metrics if key in m]
    return [s for s, _ in points], [v for _, v in points]


def plot(path: Path, title: str, ylabel: str, lines: dict[str, tuple[list, list]],
         xlabel: str = "step") -> Path | None:
    """One PNG with a line per name; None when there is nothing to draw."""
    lines = {name: xy for name, xy in lines.items() if xy[0]}
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.4), dpi=100)
    for name, (steps, values) in lines.items():
        axis.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def branch_plots(folder: Path, branches: dict[str, Path]) -> list[Path]:
    """The demo's plots: dev accuracy of every run, and the RL runs' reward, KL, value loss and their
    diagnostics (questions without signal, clipped tokens)."""
    plots_dir = folder / "plots"
    plots_dir.mkdir(exist_ok=True)
    rl_runs = {name: run for name, run in branches.items() if series(run, "reward_mean")[0]}
    sft_runs = {name: run for name, run in branches.items() if name not in rl_runs}
    made = [
        plot(plots_dir / "dev_accuracy.png", "dev accuracy (greedy) during each run", "accuracy",
             {name: series(run, "dev_accuracy", x="seconds") for name, run in branches.items()},
             xlabel="seconds of training"),
        plot(plots_dir / "train_reward.png", "ReFT: mean reward of the samples", "reward",
             {name: series(run, "reward_mean") for name, run in rl_runs.items()}),
        plot(plots_dir / "kl.png", "ReFT: KL to the warm-up model (per sequence)", "KL",
             {name: series(run, "kl") for name, run in rl_runs.items()}),
        plot(plots_dir / "value_loss.png", "ReFT: value loss", "loss",
             {name: series(run, "value_loss") for name, run in rl_runs.items()}),
        plot(plots_dir / "no_signal.png", "RL: share of questions whose samples all got the same reward", "share",
             {name: series(run, "no_signal_group_share") for name, run in rl_runs.items()}),
        plot(plots_dir / "clip_fractions.png", "RL: share of tokens clipped (low: A < 0, high: A > 0)", "share",
             {f"{name} {side}": series(run, f"clip_fraction_{side}") for name, run in rl_runs.items()
              for side in ("low", "high")}),
        plot(plots_dir / "sft_loss.png", "SFT: training loss", "loss",
             {name: series(run, "loss") for name, run in sft_runs.items()}),
    ]
    return [path for path in made if path]


def bar_chart(path: Path, title: str, groups: dict[str, dict[str, float | None]], ylabel: str = "accuracy (%)") -> Path:
    """Grouped bars: one group per method, one bar per column (missing values are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(dict.fromkeys(column for values in groups.values() for column in values))
    figure, axis = plt.subplots(figsize=(max(6.0, 1.4 * len(groups) + 2), 3.6), dpi=100)
    width = 0.8 / max(1, len(columns))
    for offset, column in enumerate(columns):
        xs = [i + offset * width for i, values in enumerate(groups.values()) if values.get(column) is not None]
        heights = [100 * values[column] for values in groups.values() if values.get(column) is not None]
        bars = axis.bar(xs, heights, width, label=column)
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_xticks([i + width * (len(columns) - 1) / 2 for i in range(len(groups))], list(groups))
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """
    >>> print(markdown_table(["a", "b"], [[1, "x"]]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def example_completions(samples_jsonl: Path, right: int = 2, wrong: int = 2) -> list[dict]:
    """A few right and wrong greedy answers from a per-question JSONL of `reftune eval`."""
    rows = [json.loads(line) for line in samples_jsonl.read_text().splitlines()] if samples_jsonl.exists() else []
    picked = [r for r in rows if r["correct"][0]][:right] + [r for r in rows if not r["correct"][0]][:wrong]
    return [{"question": r["question"], "gold": r["gold"], "answer": r["answers"][0],
             "completion": r["samples"][0], "correct": r["correct"][0]} for r in picked]


def write_html(path: Path, title: str, summary: str, headers: list[str], rows: list[list],
               plots: list[Path], examples: dict[str, list[dict]], config_text: str) -> Path:
    """One HTML page holding everything, images inline. A script marks the page with how many images
    decoded (data-images-loaded), so a browser test can check they rendered."""
    esc = html.escape
    table = "".join(f"<tr>{''.join(f'<td>{esc(str(c))}</td>' for c in row)}</tr>" for row in rows)
    images = "".join(
        f'<figure><img alt="{esc(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{esc(p.stem)}</figcaption></figure>'
        for p in plots)
    blocks = []
    for name, items in examples.items():
        for item in items:
            verdict = "right" if item["correct"] else "wrong"
            blocks.append(f'<div class="example {verdict}"><b>{esc(name)}, {verdict}</b> (gold {esc(str(item["gold"]))}, '
                          f'answer {esc(str(item["answer"]))})<p>{esc(item["question"])}</p>'
                          f'<pre>{esc(item["completion"])}</pre></div>')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 0.35em 0.8em; text-align: right; }}
td:first-child {{ text-align: left; font-weight: bold; }}
th {{ background: #eef; }}
figure {{ display: inline-block; margin: 0.5em; }}
.example {{ border-left: 4px solid #999; padding: 0 1em; margin: 1em 0; }}
.example.right {{ border-color: #2a2; }} .example.wrong {{ border-color: #c33; }}
pre {{ background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; }}
</style></head>
<body data-images-loaded="0">
<h1>{esc(title)}</h1>
<p>{esc(summary)}</p>
<table id="results"><tr>{''.join(f'<th>{esc(h)}</th>' for h in headers)}</tr>{table}</table>
<h2>Training curves</h2>
<div id="plots">{images}</div>
<h2>Example completions (test, greedy)</h2>
{''.join(blocks)}
<h2>Resolved config</h2>
<pre>{esc(config_text)}</pre>
<script>
function countImages() {{
  const done = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images-loaded', String(done));
}}
window.addEventListener('load', countImages);
</script>
</body></html>
"""
    path.write_text(page)
    return path
