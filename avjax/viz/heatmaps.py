"""Where the model hears the sound, clean and attacked (appendix Fig. 4): one PNG grid per attack."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

COLUMNS = (("clean", "clean"), ("xA", "✗A (audio attacked)"), ("xV", "✗V (frame attacked)"),
           ("xAV", "✗AV (both attacked)"))


def plot_heatmap_grid(path, maps: dict, method: str, *, labels, predictions=None, boxes=None, title=""):
    """Rows: examples; columns: clean, ✗A, ✗V, ✗AV under `method`. Each cell is the frame the model saw
    (adversarial where the frame was attacked) with the heat map over it and, when given, the sounding
    object's box. `maps` is `avjax.evaluation.localization.heatmaps`' output; `predictions[key]` (B,) the
    predicted class names shown under each cell."""
    keys = [("clean" if col == "clean" else f"{method}/{col}", name) for col, name in COLUMNS]
    rows = len(labels)
    fig, axes = plt.subplots(rows, len(keys), figsize=(2.6 * len(keys), 2.6 * rows + 0.6), squeeze=False)
    for r in range(rows):
        for c, (key, name) in enumerate(keys):
            heat, frames = maps[key]
            ax = axes[r][c]
            ax.imshow(frames[r].clip(0, 1))
            ax.imshow(heat[r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if boxes is not None:
                y0, x0, y1, x1 = (b * heat.shape[1] for b in boxes[r])
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="white",
                                       linewidth=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=8)
            if predictions is not None:
                ax.set_xlabel(f"predicted: {predictions[key][r]}", fontsize=8)
    fig.suptitle(title or f"Sound-source heat maps under {method.upper()}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
