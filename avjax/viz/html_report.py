"""`workdir/report/index.html`: the tables, the figures and a per-example gallery, as one folder that opens
from disk (no server, no network, no script).

The gallery shows, per example, the clean frame and the adversarial frame of each setting with its
perturbation amplified to full contrast (the factor is printed), players for the clean and adversarial
waveforms (32-bit float wav, so the perturbation is exact) with their spectrograms and the audio perturbation's,
the true label and the prediction per setting,
and the perturbation's size: pixel L-inf in /255 and audio SNR in dB. Every string that comes from data or
a config (class names, example IDs, model names, the tables) is HTML-escaped.
"""
import html
import os
import re
import shutil

import markdown as markdown_lib
import numpy as np
import soundfile
from PIL import Image

SETTING_NAMES = {"clean": "clean", "xA": "✗A (audio attacked)", "xV": "✗V (frame attacked)",
                 "xAV": "✗AV (both attacked)"}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } .example { border: 1px solid #bbb; border-radius: 6px; padding: 1em; margin: 1.5em 0;
  overflow-x: auto; }
.example td { vertical-align: middle; text-align: center; } img.frame { width: 140px; image-rendering: pixelated; }
img.spec { width: 176px; } audio { width: 240px; }
.wrong { color: #b00020; font-weight: bold; } .right { color: #1b7f1b; } figure img { max-width: 100%; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def markdown_to_html(text: str) -> str:
    """The report's Markdown (tables, headings) as HTML; raw HTML in it is shown as text, never run.

    The text is escaped before Markdown sees it; Markdown escapes code spans once more, so inside `<code>`
    one level is undone (`seed_<n>/` shows as written, still as text)."""
    out = markdown_lib.markdown(html.escape(text, quote=False), extensions=["tables"])
    return re.sub(r"<code>(.*?)</code>", lambda m: "<code>" + m.group(1).replace("&amp;", "&") + "</code>", out,
                  flags=re.S)


def _without_title(text: str) -> str:
    """results.md without its first-level title (the page has its own)."""
    lines = text.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines)


def _save_png(path, array):
    Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def _amplified(delta):
    """A perturbation at full contrast around grey; -> (picture, amplification factor or None)."""
    peak = float(np.max(np.abs(delta)))
    if peak == 0:
        return np.full(delta.shape, 0.5), None
    return 0.5 + delta * (0.5 / peak), 0.5 / peak


SPECTROGRAM_RANGE_DB = 80.0   # colour range below the clean waveform's loudest bin


def spectrogram_db(wave, sample_rate, nperseg=256):
    """Log-magnitude STFT (dB, frequency x time, low frequencies last row first) of a waveform."""
    from scipy.signal import stft
    _, _, z = stft(np.asarray(wave, np.float64), fs=sample_rate, nperseg=min(nperseg, len(wave)))
    return 20 * np.log10(np.abs(z) + 1e-10)[::-1]


def _save_spectrogram(path, db, top_db):
    """The spectrogram as a colour image on a fixed scale [top_db - range, top_db], so that a clean waveform,
    its adversarial version and the perturbation are drawn alike (a quiet perturbation shows dark)."""
    from matplotlib import colormaps
    level = np.clip((db - (top_db - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB, 0, 1)
    rgb = colormaps["magma"](level)[..., :3]
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).resize((192, 96), Image.NEAREST).save(path)


def _prediction(pred, label, classes):
    cls = "right" if pred == label else "wrong"
    return f'<span class="{cls}">{_esc(classes[pred])}</span>'


def _example_html(i, g, classes, ids, media_dir, sample_rate):
    rel = os.path.basename(media_dir)
    _save_png(os.path.join(media_dir, f"{i}_clean.png"), g["image"][i])
    soundfile.write(os.path.join(media_dir, f"{i}_clean.wav"), g["audio"][i], sample_rate, subtype="FLOAT")
    clean_db = spectrogram_db(g["audio"][i], sample_rate)
    top_db = float(clean_db.max())
    _save_spectrogram(os.path.join(media_dir, f"{i}_clean_spec.png"), clean_db, top_db)
    label = int(g["label"][i])
    rows = [f'<tr><td>clean</td><td><img class="frame" src="{rel}/{i}_clean.png" alt="clean frame"></td>'
            f'<td>—</td><td><audio controls preload="metadata" src="{rel}/{i}_clean.wav"></audio><br>'
            f'<img class="spec" src="{rel}/{i}_clean_spec.png" alt="clean spectrogram"></td><td>—</td>'
            f'<td>{_prediction(int(g["pred"]["clean"][i]), label, classes)}</td><td>0</td><td>∞</td></tr>']
    for setting in [s for s in SETTING_NAMES if s in g["adv"]]:  # xA, xV, xAV (pytrees sort their keys)
        adv_image, adv_audio = g["adv"][setting]
        _save_png(os.path.join(media_dir, f"{i}_{setting}.png"), adv_image[i])
        picture, factor = _amplified(adv_image[i] - g["image"][i])
        _save_png(os.path.join(media_dir, f"{i}_{setting}_delta.png"), picture)
        soundfile.write(os.path.join(media_dir, f"{i}_{setting}.wav"), adv_audio[i], sample_rate, subtype="FLOAT")
        _save_spectrogram(os.path.join(media_dir, f"{i}_{setting}_spec.png"),
                          spectrogram_db(adv_audio[i], sample_rate), top_db)
        _save_spectrogram(os.path.join(media_dir, f"{i}_{setting}_audio_delta.png"),
                          spectrogram_db(adv_audio[i] - g["audio"][i], sample_rate), top_db)
        amp = f"×{factor:.0f}" if factor else "none"
        snr = g["snr_db"][setting][i]
        rows.append(
            f'<tr><td>{_esc(SETTING_NAMES[setting])}</td>'
            f'<td><img class="frame" src="{rel}/{i}_{setting}.png" alt="adversarial frame, {setting}"></td>'
            f'<td><img class="frame" src="{rel}/{i}_{setting}_delta.png" alt="perturbation, {setting}">'
            f'<br><small>amplified {amp}</small></td>'
            f'<td><audio controls preload="metadata" src="{rel}/{i}_{setting}.wav"></audio><br>'
            f'<img class="spec" src="{rel}/{i}_{setting}_spec.png" alt="adversarial spectrogram, {setting}"></td>'
            f'<td><img class="spec" src="{rel}/{i}_{setting}_audio_delta.png" '
            f'alt="audio perturbation spectrogram, {setting}"></td>'
            f'<td>{_prediction(int(g["pred"][setting][i]), label, classes)}</td>'
            f'<td>{g["linf_255"][setting][i]:.2f}</td><td>{"∞" if np.isinf(snr) else f"{snr:.1f} dB"}</td></tr>')
    head = ("<tr><th>input</th><th>frame</th><th>perturbation</th><th>waveform (spectrogram)</th>"
            "<th>audio perturbation (spectrogram)</th><th>prediction</th><th>pixel L∞ (/255)</th>"
            "<th>audio SNR</th></tr>")
    return (f'<div class="example" id="example-{i}"><h3>{_esc(ids[i])} — true label: {_esc(classes[label])}'
            f'</h3><table>{head}{"".join(rows)}</table></div>')


def write(out_dir, *, title, results_md, figures, gallery, classes, ids, sample_rate, model, note="") -> str:
    """Write `out_dir/index.html` (+ media/, figures/); -> the page's path. `gallery` is
    `avjax.evaluation.gallery.collect`'s output, `figures` PNG paths copied into the folder."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # the report is rebuilt whole: no media of an earlier run lingers
    media_dir, figure_dir = os.path.join(out_dir, "media"), os.path.join(out_dir, "figures")
    os.makedirs(media_dir)
    os.makedirs(figure_dir)
    figure_html = []
    for path in figures:
        name = os.path.basename(path)
        shutil.copyfile(path, os.path.join(figure_dir, name))
        figure_html.append(f'<figure><img src="figures/{_esc(name)}" alt="{_esc(name)}">'
                           f'<figcaption>{_esc(name)}</figcaption></figure>')
    examples = [_example_html(i, gallery, classes, ids, media_dir, sample_rate) for i in range(len(ids))]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style></head>
<body>
<h1>{_esc(title)}</h1>
<p>{_esc(note)}</p>
<nav><a href="#tables">tables</a> · <a href="#figures">figures</a> · <a href="#gallery">examples</a></nav>
<section id="tables">{markdown_to_html(_without_title(results_md))}</section>
<section id="figures"><h2>Figures</h2>{''.join(figure_html) or '<p>none</p>'}</section>
<section id="gallery"><h2>Examples: model {_esc(model)} under {_esc(gallery['method'].upper())}</h2>
<p>Each adversarial frame's perturbation is shown amplified to full contrast (grey = unchanged). Predictions in
red are wrong. Audio players play the waveform the model saw (32-bit float wav); below each, its spectrogram,
and beside it the spectrogram of the audio perturbation, all on one scale (the clean waveform's loudest bin
down {SPECTROGRAM_RANGE_DB:g} dB), so a quiet perturbation shows dark.</p>
{''.join(examples)}</section>
</body></html>
"""
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
