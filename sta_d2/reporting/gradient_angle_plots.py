"""Histograms of the gradient angles that :func:`sta_d2.analysis.gradient_angles` measures."""
from matplotlib.figure import Figure  # rendered by the Agg backend, no pyplot state

PANEL_SIZE = (4.8, 3.8)
DPI = 100
BINS = list(range(0, 181, 5))
COLORS = {"full": "tab:blue", "sta": "tab:orange", "ista": "tab:green"}


def plot_gradient_angles(result: dict, path: str) -> None:
    """Write a PNG of the angle histograms of ``result`` (from
    :func:`sta_d2.analysis.gradient_angles`), side by
    side: one panel per pair of tasks (FT and STA bars side by side in each 5-degree bin), one per
    pair of consecutive ISTA sub-steps. The legend gives each policy's mean angle (also drawn as a
    dashed line) and the batches skipped. The image is ``PANEL_SIZE * DPI`` pixels per panel."""
    k = result["tasks_per_image"]
    labels = {"full": "FT (full)", "sta": f"STA (K={k})", "ista": f"ISTA (K={k})"}
    panels = [(pair.replace("-", " vs "), "angle between task gradients (degrees)", ("full", "sta"), pair)
              for pair in result["angles"]["full"]]
    panels += [(f"ISTA sub-steps {pair.replace('-', ' and ')}", "angle between sub-step gradients (degrees)",
                ("ista",), pair) for pair in result["angles"]["ista"]]
    fig = Figure(figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), dpi=DPI, layout="constrained")
    fig.suptitle(f"Gradient angles on the shared parameters, {result['num_batches']} batches "
                 f"(tasks: {', '.join(result['tasks'])})")
    for ax, (title, xlabel, kinds, pair) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        values = [[v for v in result["angles"][kind][pair] if v is not None] for kind in kinds]
        legend = []
        for kind in kinds:
            mean, skipped = result["mean"][kind][pair], result["skipped"][kind][pair]
            legend.append(f"{labels[kind]}: " + ("no angle" if mean is None else f"mean {mean:.1f}°")
                          + (f", {skipped} skipped" if skipped else ""))
            if mean is not None:
                ax.axvline(mean, color=COLORS[kind], linestyle="--", linewidth=1.5, zorder=3)  # over the bars
        counts, _, _ = ax.hist(values, bins=BINS, color=[COLORS[kind] for kind in kinds], alpha=0.6, label=legend)
        ax.set(title=title, xlabel=xlabel, ylabel="batches", xlim=(0, 180), xticks=range(0, 181, 30),
               ylim=(0, max(1, counts.max()) * 1.35))
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", fontsize="small")
    fig.savefig(path)
