"""Accuracy-vs-eps curves in the shape of the appendix figures (2 and 3)."""
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"xA": "AV, audio attacked (-A)", "xV": "AV, visual attacked (-V)",
          "xAV": "AV, both attacked (-AV)"}


def plot_sweep(path, sweeps: dict, av_name: str, title: str):
    """`sweeps[name] = {'eps': [...], 'xA': [...], 'xV': [...], 'xAV': [...]}` per model.

    The AV model gets one line per setting; unimodal models are drawn as dashed reference lines
    (the audio model under audio attack, the visual model under visual attack).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    av = sweeps[av_name]
    eps_milli = [e * 1e3 for e in av["eps"]]
    for setting, label in LABELS.items():
        line, = ax.plot(eps_milli, av[setting], marker="o", label=label)
        if setting + "_std" in av:  # a multi-seed mean: shade ± one std over the seeds
            mean, std = np.asarray(av[setting]), np.asarray(av[setting + "_std"])
            ax.fill_between(eps_milli, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    for name, sweep in sweeps.items():
        if name == av_name:
            continue
        modality = sweep.get("modality")
        setting = {"audio": "xA", "visual": "xV"}.get(modality, "xAV")
        line, = ax.plot([e * 1e3 for e in sweep["eps"]], sweep[setting], linestyle="--", marker=".",
                        label=f"{name} ({modality} only), attacked")
        ax.axhline(sweep[setting][0], color=line.get_color(), linestyle=":", linewidth=1,
                   label=f"{name} ({modality} only), clean")
    ax.set_xlabel("attack strength eps (x1e-3)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
