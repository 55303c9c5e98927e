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


# the paper's markers: audio ●, visual ▲, attacked ★ (attacked visual features: ★ with a dark edge)
JOINT_MARKERS = {("audio", False): ("o", 10, "none"), ("visual", False): ("^", 12, "none"),
                 ("audio", True): ("*", 30, "none"), ("visual", True): ("*", 30, "black")}


def plot_joint_embeddings(path, panels: dict, classes, title: str):
    """One panel per model (`panels`: {panel title: embeddings of avjax.evaluation.embeddings.evaluate}): the joint
    t-SNE of audio and visual features, clean and attacked, markers by modality, colours by class (Figs. 5/6)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 1.4, 5.4), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (panel, emb) in zip(axes[0], panels.items()):
        t = emb["tsne"]["joint"]
        xy, labels = np.asarray(t["xy"]), np.asarray(t["labels"])
        modality, attacked = np.asarray(t["modality"]), np.asarray(t["attacked"])
        for (m, adv), (marker, size, edge) in JOINT_MARKERS.items():
            sel = (modality == m) & (attacked == adv)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=size, marker=marker, c=[cmap(int(c) % cmap.N) for c in labels[sel]],
                       edgecolors=edge, linewidths=0.6, alpha=0.85)
        c = emb["metrics"]["av_cosine"]
        ax.set_title(f"{panel}\naudio-visual cosine {c['clean']:.2f} clean -> {c['attacked']:.2f} attacked",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    method = next(iter(panels.values()))["method"].upper()
    handles = [plt.Line2D([], [], linestyle="", marker=mk, markersize=7 if mk != "*" else 10, color="grey",
                          markeredgecolor=edge if edge != "none" else "grey",
                          label={("audio", False): "audio, clean", ("visual", False): "visual, clean",
                                 ("audio", True): f"audio, ✗A {method}", ("visual", True): f"visual, ✗V {method}"}[k])
               for k, (mk, _, edge) in JOINT_MARKERS.items()]
    handles += [plt.Line2D([], [], linestyle="", marker="s", color=cmap(i % cmap.N), label=str(name))
                for i, name in enumerate(classes)]
    axes[0, -1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
