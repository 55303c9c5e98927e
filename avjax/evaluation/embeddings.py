"""How attacks move the audio and visual embeddings (appendix Figs. 5/6), measured and drawn.

For an AV model, the encoders' features of clean inputs and of inputs attacked on that modality alone
(audio features under the ✗A attack, visual features under ✗V) are compared:
  * k-NN accuracy: attacked features classified by their k nearest clean features (cosine); how far the
    attack moves an embedding out of its class's cluster (clean features: leave-one-out on themselves);
  * silhouette of the class labels (cosine) among clean features and among attacked features;
  * the audio-visual cosine similarity of the clean and the attacked pairs (what MinSim minimises);
and a t-SNE (scikit-learn) of clean and attacked features gives the 2-D points of the figures: one per modality,
and one of both modalities together (the paper's Figs. 5/6).
"""
import jax
import numpy as np
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from avjax.evaluation.common import eval_batches, gather
from avjax.evaluation.robustness import EvalSpec, adversarial_inputs


def _features(fns, batch, spec, method):
    image, audio = batch["image"], batch["audio"]
    adv_a_only, adv_v_only, _ = adversarial_inputs(fns, batch, spec, method)
    return {"visual": fns.encode_visual(image), "audio": fns.encode_audio(audio),
            "visual_attacked": fns.encode_visual(adv_v_only[0]), "audio_attacked": fns.encode_audio(adv_a_only[1])}


_jit_features = jax.jit(_features, static_argnames=("spec", "method"))


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_accuracy(reference, reference_labels, queries, query_labels, k, *, leave_one_out=False) -> float:
    """% of queries whose k nearest references (cosine) vote for their label (ties: the lowest class)."""
    sim = _unit(queries) @ _unit(reference).T
    if leave_one_out:
        np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1)[:, :k]
    votes = reference_labels[nearest]
    n_classes = int(max(reference_labels.max(), query_labels.max())) + 1
    counts = np.stack([(votes == c).sum(1) for c in range(n_classes)], 1)
    return 100 * float(np.mean(np.argmax(counts, 1) == query_labels))


def _silhouette(features, labels) -> float:
    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return float("nan")
    return float(silhouette_score(features, labels, metric="cosine"))


def evaluate(fns, source, transform, spec: EvalSpec, *, method, examples, k, perplexity, seed, batch_size, mesh,
             workers, name) -> dict:
    """-> {'metrics': {modality: {...}}, 'tsne': {modality: {'xy', 'labels', 'attacked'}}} over the first
    `examples` test examples."""
    from avjax import parallel
    fns = jax.device_put(fns, parallel.replicated(mesh))
    parts, labels = {}, []
    for _, batch, mask, _ in eval_batches(source, transform, batch_size=batch_size, mesh=mesh, workers=workers,
                                          max_examples=examples, desc=f"embed {name}"):
        feats = _jit_features(fns, {k_: batch[k_] for k_ in ("image", "audio", "label")}, spec, method)
        keep = np.asarray(mask)
        for key, value in feats.items():
            parts.setdefault(key, []).append(gather(value)[keep])
        labels.append(gather(batch["label"])[keep])
    labels = np.concatenate(labels)[:examples]
    feats = {key: np.concatenate(v)[:examples].astype(np.float64) for key, v in parts.items()}
    metrics, tsne = {}, {}
    for modality in ("audio", "visual"):
        clean, attacked = feats[modality], feats[f"{modality}_attacked"]
        metrics[modality] = {
            "knn_clean": knn_accuracy(clean, labels, clean, labels, k, leave_one_out=True),
            "knn_attacked": knn_accuracy(clean, labels, attacked, labels, k),
            "silhouette_clean": _silhouette(clean, labels), "silhouette_attacked": _silhouette(attacked, labels),
            "n": int(labels.size), "k": k}
        both = np.concatenate([clean, attacked])
        xy = TSNE(n_components=2, perplexity=min(perplexity, (len(both) - 1) / 3), init="pca", random_state=seed,
                  metric="cosine").fit_transform(both)
        tsne[modality] = {"xy": xy.round(3).tolist(), "labels": np.concatenate([labels, labels]).tolist(),
                          "attacked": [False] * len(labels) + [True] * len(labels)}
    tsne["joint"] = joint_tsne(feats, labels, perplexity=perplexity, seed=seed)
    cos = lambda a, b: float(np.mean(np.sum(_unit(a) * _unit(b), -1)))  # noqa: E731
    metrics["av_cosine"] = {"clean": cos(feats["visual"], feats["audio"]),
                            "attacked": cos(feats["visual_attacked"], feats["audio_attacked"])}
    return {"metrics": metrics, "tsne": tsne, "method": method}


JOINT_PARTS = (("audio", False), ("visual", False), ("audio", True), ("visual", True))


def joint_tsne(feats: dict, labels, *, perplexity, seed) -> dict:
    """One t-SNE (cosine) of audio and visual features, clean and attacked, together (appendix Figs. 5/6):
    -> {'xy', 'labels', 'modality', 'attacked'}, one entry per point. Both encoders' features have one
    dimension in the paper's models, so one embedding shows how far apart the modalities lie and where an
    attack moves each."""
    stacked = np.concatenate([feats[m + ("_attacked" if adv else "")] for m, adv in JOINT_PARTS])
    xy = TSNE(n_components=2, perplexity=min(perplexity, (len(stacked) - 1) / 3), init="pca", random_state=seed,
              metric="cosine").fit_transform(stacked)
    n = len(labels)
    return {"xy": xy.round(3).tolist(), "labels": np.tile(labels, len(JOINT_PARTS)).tolist(),
            "modality": [m for m, _ in JOINT_PARTS for _ in range(n)],
            "attacked": [adv for _, adv in JOINT_PARTS for _ in range(n)]}


def markdown(results: dict, label) -> list[str]:
    """One table over every model with embeddings; `label(name)` is a model's row label."""
    rows = {n: r["embeddings"] for n, r in results.items() if "embeddings" in r}
    if not rows:
        return []
    method = next(iter(rows.values()))["method"].upper()
    lines = ["", f"## Embeddings under {method} (appendix Figs. 5/6)", "",
             "k-NN accuracy (%) of features among the clean features of the same examples (cosine; clean: leave "
             "one out), silhouette of the classes (cosine), audio-visual cosine of clean and attacked pairs. "
             "Audio features under the ✗A attack, visual features under ✗V.", "",
             "| model | A k-NN clean | A k-NN attacked | A silhouette clean → attacked | V k-NN clean | "
             "V k-NN attacked | V silhouette clean → attacked | AV cos clean → attacked | n |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, emb in rows.items():
        a, v, c = emb["metrics"]["audio"], emb["metrics"]["visual"], emb["metrics"]["av_cosine"]
        lines.append(f"| {label(name)} | {a['knn_clean']:.1f} | {a['knn_attacked']:.1f} | "
                     f"{a['silhouette_clean']:.3f} → {a['silhouette_attacked']:.3f} | {v['knn_clean']:.1f} | "
                     f"{v['knn_attacked']:.1f} | {v['silhouette_clean']:.3f} → {v['silhouette_attacked']:.3f} | "
                     f"{c['clean']:.3f} → {c['attacked']:.3f} | {a['n']} |")
    return lines
