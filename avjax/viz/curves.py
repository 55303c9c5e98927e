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


def plot_certified(path, certified: dict, units: dict, title: str):
    """Certified accuracy vs L2 radius, one panel per smoothing mode ('audio', 'visual', 'joint'), one line per
    model: `certified[label] = {mode: {'radii': [...], 'accuracy': [...], 'attacked' (optional): [...]}}`
    (avjax.evaluation.certified; 'attacked', the base model under L2 PGD, dashed in the model's colour), the x axis
    of each mode labelled `units[mode]`."""
    modes = [m for m in ("audio", "visual", "joint") if any(m in c for c in certified.values())]
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.6), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for label, res in certified.items():
            if mode in res:
                line, = ax.plot(res[mode]["radii"], res[mode]["accuracy"], marker="o", label=f"{label}: certified")
                if "attacked" in res[mode]:
                    ax.plot(res[mode]["radii"], res[mode]["attacked"], marker="x", linestyle="--",
                            color=line.get_color(), label=f"{label}: L2 PGD, base model")
                if "crmt_bound" in res[mode]:
                    ax.plot(res[mode]["radii"], res[mode]["crmt_bound"], marker="s", linestyle=":",
                            color=line.get_color(), label=f"{label}: CRMT's bound")
        ax.set_xlabel(units[mode])
        ax.set_title({"audio": "the audio (noise on it)", "visual": "the frame (noise on it)",
                      "joint": "both (noise on both)"}[mode])
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
