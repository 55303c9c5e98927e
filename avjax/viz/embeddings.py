"""t-SNE of clean and attacked audio and visual embeddings (appendix Figs. 5/6)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_embeddings(path, embeddings: dict, classes, title: str):
    """Two panels (audio, visual): clean features as dots, attacked ones as crosses, coloured by class.
    `embeddings` is `avjax.evaluation.embeddings.evaluate`'s output."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    setting = {"audio": "✗A", "visual": "✗V"}
    for ax, modality in zip(axes, ("audio", "visual")):
        t = embeddings["tsne"][modality]
        xy, labels, attacked = np.asarray(t["xy"]), np.asarray(t["labels"]), np.asarray(t["attacked"])
        for c in np.unique(labels):
            for adv, marker in ((False, "o"), (True, "x")):
                sel = (labels == c) & (attacked == adv)
                ax.scatter(xy[sel, 0], xy[sel, 1], s=14 if adv else 10, marker=marker, color=cmap(int(c) % cmap.N),
                           alpha=0.8, linewidths=1.0, label=str(classes[int(c)]) if not adv else None)
        m = embeddings["metrics"][modality]
        ax.set_title(f"{modality} features: clean (o) and {setting[modality]} {embeddings['method'].upper()} (x)\n"
                     f"k-NN {m['knn_clean']:.0f}% -> {m['knn_attacked']:.0f}%, silhouette "
                     f"{m['silhouette_clean']:.2f} -> {m['silhouette_attacked']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
