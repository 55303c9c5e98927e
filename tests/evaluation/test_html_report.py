"""The HTML report of a real (tiny) run, checked the way a person sees it: loaded from disk in headless
Chromium (Debian's package), every image and audio element loads, strings from data render as text, and a
screenshot is written."""
import os
import re
import shutil

import numpy as np
import pytest

from avjax import experiment
from avjax.evaluation import gallery

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert({})</script>&<i>"  # every class name: whichever classes the examples show


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report_run")
    config = experiment.load_config("configs/synthetic.py", "runlocal,modality=av", **{
        "report.examples": 3, "eval.max_examples": 8, "eval.methods": ("pgd",), "eval.sweep_eps": (0.0, 0.02),
        "embeddings.examples": 8})  # the same run checks the embeddings' table and figure
    with config.unlocked():
        config.data.classes = tuple(EVIL.format(k) for k in range(config.model.num_classes))
        config.runs.av.label = '<img src=x onerror="alert(2)">'
    experiment.run(config, str(workdir))
    return workdir, config


@pytest.mark.slow
def test_report_folder_has_every_example_and_escapes_data(report):
    workdir, config = report
    page = open(workdir / "report" / "index.html", encoding="utf-8").read()
    assert "<script" not in page and "<img src=x" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;/script&gt;&amp;&lt;i&gt;" in page and "&lt;img src=x" in page
    assert len(re.findall(r'class="example"', page)) == 3
    media = sorted(os.listdir(workdir / "report" / "media"))
    assert len([m for m in media if m.endswith(".wav")]) == 3 * 4 and len([m for m in media if m.endswith(".png")]) == 3 * 14
    assert os.path.isfile(workdir / "report" / "figures" / "accuracy_vs_eps_pgd.png")
    assert os.path.isfile(workdir / "report" / "figures" / "embeddings_av.png")
    for src in re.findall(r'src="([^"]+)"', page):  # every referenced file is inside the folder
        assert os.path.isfile(workdir / "report" / src), src


@pytest.mark.slow
def test_embeddings_are_measured_and_drawn(report):
    workdir, _ = report
    import json
    metrics = json.load(open(workdir / "results.json"))["embeddings"]["av"]
    for modality in ("audio", "visual"):
        m = metrics[modality]
        assert m["n"] == 8 and 0 <= m["knn_clean"] <= 100 and 0 <= m["knn_attacked"] <= 100
        assert -1 <= m["silhouette_clean"] <= 1
    assert "## Embeddings under PGD" in open(workdir / "results.md").read()
    assert os.path.getsize(workdir / "figures" / "embeddings_av.png") > 10_000
    assert os.path.getsize(workdir / "figures" / "embeddings_joint.png") > 10_000   # one t-SNE of both modalities


def test_joint_embedding_holds_both_modalities_clean_and_attacked():
    from avjax.evaluation.embeddings import joint_tsne
    rng = np.random.default_rng(0)
    feats = {k: np.abs(rng.normal(size=(12, 6))) for k in ("audio", "visual", "audio_attacked", "visual_attacked")}
    labels = np.arange(12) % 3
    t = joint_tsne(feats, labels, perplexity=5, seed=0)
    assert np.asarray(t["xy"]).shape == (48, 2) and t["labels"] == labels.tolist() * 4
    assert t["modality"] == ["audio"] * 12 + ["visual"] * 12 + ["audio"] * 12 + ["visual"] * 12
    assert t["attacked"] == [False] * 24 + [True] * 24


def test_knn_accuracy_closed_form():
    from avjax.evaluation.embeddings import knn_accuracy
    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    assert knn_accuracy(ref, labels, ref, labels, 1, leave_one_out=True) == 100
    assert knn_accuracy(ref, labels, ref[::-1], labels, 1) == 0     # every query moved to the other cluster
    assert knn_accuracy(ref, labels, ref[[0, 1, 0, 1]], labels, 1) == 50


def test_gallery_numbers_are_the_perturbations():
    clean = np.ones((1, 4), np.float32) * 0.5
    assert gallery.snr_db(clean, clean)[0] == np.inf
    np.testing.assert_allclose(gallery.snr_db(clean, clean + 0.05), 20 * np.log10(0.5 / 0.05), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                             ".ci/run installs it)")
def test_report_loads_in_headless_chromium(report, tmp_path):
    from playwright.sync_api import sync_playwright
    workdir, _ = report
    url = (workdir / "report" / "index.html").as_uri()
    dialogs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(url, wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])")
        page.wait_for_function("""() => [...document.querySelectorAll('audio')].every(
            a => a.readyState >= 1 || a.error)""", timeout=20000)
        audio = page.eval_on_selector_all("audio", """els => els.map(e => [e.src, e.readyState >= 1 && !e.error,
            e.duration])""")
        text = page.inner_text("body")
        scripts = page.evaluate("document.scripts.length")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert images and all(ok for _, ok in images), [src for src, ok in images if not ok]
    assert len(audio) == 12 and all(ok and duration > 0 for _, ok, duration in audio), audio
    assert not failed and not dialogs and scripts == 0
    assert re.search(r"<script>alert\(\d\)</script>&<i>", text)  # shown as text, not run or parsed
    assert '<img src=x onerror="alert(2)">' in text
    assert os.path.getsize(shot) > 10_000


def test_code_spans_show_angle_brackets_once_escaped_and_raw_html_stays_text():
    from avjax.viz.html_report import markdown_to_html
    out = markdown_to_html("runs in `seed_<n>/` <script>alert(1)</script> `a&b` `</code><script>`")
    assert "<code>seed_&lt;n&gt;/</code>" in out and "<code>a&amp;b</code>" in out
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<code>&lt;/code&gt;&lt;script&gt;</code>" in out
