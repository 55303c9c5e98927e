"""Every config (each configs/*.py, found by glob) and variant loads and locks; runlocal variants train."""
import glob
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from avjax import parallel, runs
from avjax import config_files
from avjax.data import layout_a, pipeline, prepare, sources
from avjax.models import FUSIONS, build
from avjax.train.losses import DEFENSES
from avjax.train.optimizer import make_optimizer
from avjax.train.state import init_state
from avjax.train.steps import make_steps
from tests.data import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = tuple(sorted(os.path.splitext(os.path.basename(p))[0]
                       for p in glob.glob(os.path.join(REPO, "configs", "*.py"))))
VARIANTS = ([""] + [f"fusion={f}" for f in FUSIONS] + [f"modality={m}" for m in ("av", "audio", "visual")]
            + [f"defense={d}" for d in DEFENSES])
PAPER_ONLY = ["recipe=appendix", "recipe=code", "protocol=paper"]
# need trained runs, or train adversarially or with noise (tests/train/test_adversarial.py, test_noise.py): load only
MEMORY_DEFENSES = ["defense=exfmem", "defense=minsim+exfmem", "defense=all", "defense=at", "defense=smoothing"]


def load(name, arg):
    spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config.lock()
    return config


def test_the_glob_finds_every_shipped_config():
    assert {"synthetic", "ave", "music", "kinetics", "folder"} <= set(CONFIGS)


def is_paper_config(name):
    return load(name, None).data.get("preset") not in (None, "folder")


@pytest.mark.parametrize("name,variant", [(n, v) for n in CONFIGS
                                          for v in VARIANTS + MEMORY_DEFENSES
                                          + (PAPER_ONLY if is_paper_config(n) else [])])
def test_config_loads_and_locks(name, variant):
    for arg in (variant, ",".join(filter(None, [variant, "runlocal"]))):
        config = load(name, arg or None)
        with pytest.raises(AttributeError):
            config.not_a_field = 1
        build(config.model)
        assert config.baseline in config.runs
        for run in config.runs.values():
            assert run.modality in ("av", "audio", "visual")
        from avjax.runs import run_config, training_order
        order = training_order(config)  # every run after the runs it starts from / takes its memory from
        for run_name in order:
            build(run_config(config, run_name).model)


def test_unknown_variant_and_recipe_are_errors():
    with pytest.raises(ValueError, match="unknown config variant"):
        load("synthetic", "fusoin=film")
    for name in CONFIGS:
        if not is_paper_config(name):  # recipe= means the paper's recipes: never silently ignored
            with pytest.raises(ValueError, match="unknown config variant"):
                load(name, "recipe=appendix")
    with pytest.raises(ValueError, match="unknown recipe"):
        load("ave", "recipe=mine")


def test_paper_defaults_follow_the_released_code():
    music, ave, ks = load("music", None), load("ave", None), load("kinetics", None)
    assert (music.train.num_epochs, tuple(music.train.lr_steps), music.train.batch_size) == (100, (30, 60, 90), 36)
    assert (ave.train.num_epochs, tuple(ave.train.lr_steps), ave.train.batch_size) == (30, (10, 20), 48)
    assert (ks.model.num_classes, music.model.num_classes, ave.model.num_classes) == (27, 11, 28)
    assert (ave.train.lr.audio, ave.train.lr.visual, ave.train.lr.head) == (1e-3, 1e-4, 1e-3)
    appendix = load("ave", "recipe=appendix")
    assert (appendix.train.lr.audio, appendix.train.lr.visual, appendix.train.num_epochs) == (1e-4, 1e-3, 100)
    assert ave.model.visual_pool == "avg" and ave.eval.units == "normalized"
    assert appendix.model.visual_pool == "max"   # the appendix states max pooling


def test_paper_configs_refuse_to_train_resnet18_from_scratch_silently(tmp_path):
    from avjax import experiment
    from avjax.errors import MissingInput
    for name in ("ave", "music", "kinetics"):
        config = load(name, None)
        # no weights and no data: one error names both
        with pytest.raises(MissingInput, match=r"--config.train.visual_init=<resnet18 .pth or .safetensors>.*"
                                               r"visual_init=none(.|\n)*--config.data.root=DIR"):
            experiment.train(config, str(tmp_path))
        config.train.visual_init = str(tmp_path / "missing.pth")
        with pytest.raises(FileNotFoundError, match="missing.pth"):
            experiment.train(config, str(tmp_path))
        config.train.visual_init = "none"        # on purpose: accepted
        config_files.check_visual_init(config)
    assert load("ave", "runlocal").train.visual_init == "none"
    config_files.check_visual_init(load("synthetic", None))   # the synthetic data has no ImageNet trunk


@pytest.fixture(scope="module")
def layout_roots(tmp_path_factory):
    """A tiny prepared layout-A folder per preset (two classes of the preset, real mp4s)."""
    roots = {}
    for preset in ("ave", "music", "kinetics_sounds"):
        videos = tmp_path_factory.mktemp(f"{preset}_videos")
        for cls in layout_a.CLASSES[preset][:2]:
            os.makedirs(videos / cls)
            for i in range(3):
                fixtures.make_video(videos / cls / f"v{i}.mp4", seconds=1.0, fps=8, size=(40, 32))
        items = prepare.items_from_class_tree(str(videos))
        items = [prepare.Item(it.video, it.label, s, it.id)
                 for it, s in zip(items, ["train", "train", "val", "train", "test", "train"])]
        out = tmp_path_factory.mktemp(f"{preset}_a")
        prepare.prepare(items, str(out), csv_names=layout_a.CSV_NAMES[preset], progress=False)
        roots[preset] = str(out)
    return roots


def _one_step(config):
    srcs, tfs = sources.build(config.data)
    model = build(config.model)
    optimizer = make_optimizer(config.train, 1)
    example = sources.first_example(srcs, tfs)
    state = init_state(model, optimizer, jax.random.key(0), np.shape(example["image"]),
                       np.shape(example["audio"])[-1], config.model.num_classes,
                       defense=config.train.defense.name)
    mesh = parallel.make_mesh()
    train_step, _ = make_steps(model, optimizer, config.train.defense)
    batch = next(iter(pipeline.train_dataset(srcs["train"], tfs["train"],
                                             batch_size=config.train.batch_size, seed=0)))
    state, metrics = jax.jit(train_step)(parallel.replicate(state, mesh),
                                         parallel.global_batch(batch, mesh), jax.random.key(0))
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


# Training fields that only set numbers of the step (the schedule, the optimizer's constants, logging): two runs
# that differ in these alone train through the same code, so one step of either checks both.
NUMBERS_ONLY = ("num_epochs", "lr", "lr_steps", "lr_decay", "momentum", "weight_decay", "min_steps", "few_steps",
                "few_val", "log_every_steps", "checkpoint_every_steps", "checkpoint_min_interval_s")


def _code_path(rc):
    """What decides the code a run's train step goes through: the model, the training config less its
    numbers-only fields, and the shapes of the data (not its content)."""
    model = rc.model.to_dict()
    if model["modality"] != "av":
        model.pop("fusion")   # a unimodal model has no fusion
    train = {k: v for k, v in rc.train.to_dict().items() if k not in NUMBERS_ONLY}
    synthetic = rc.data.synthetic.to_dict()
    data = dict(name=rc.data.name, shapes=[synthetic[k] for k in ("image_size", "audio_len", "num_classes")])
    return json.dumps([model, train, data], sort_keys=True, default=str)


def _distinct_runs():
    """{id: run config} over every run of every synthetic variant, each distinct code path (`_code_path`)
    once: the variants share most runs (av, audio, visual), and one step of each is enough."""
    from avjax.runs import run_config
    out, seen = {}, set()
    for variant in VARIANTS:
        config = load("synthetic", ",".join(filter(None, [variant, "runlocal"])))
        for name in config.runs:
            rc = run_config(config, name)
            key = _code_path(rc)
            if key not in seen:
                seen.add(key)
                out[f"{variant or 'default'}/{name}"] = rc
    return out


DISTINCT_RUNS = _distinct_runs()


def test_every_variant_loads_and_its_runs_are_among_the_trained_ones():
    assert len(DISTINCT_RUNS) >= 10  # 5 fusions + audio + visual + minsim, maxsim, pcl
    fusions = {rc.model.fusion for rc in DISTINCT_RUNS.values() if rc.model.modality == "av"}
    defenses = {rc.train.defense.name for rc in DISTINCT_RUNS.values()}
    assert fusions == set(FUSIONS) and {"none", "minsim", "maxsim", "pcl", "crmt"} <= defenses


@pytest.mark.slow
@pytest.mark.parametrize("run", list(DISTINCT_RUNS))
def test_synthetic_runlocal_run_trains_one_step(run):
    _one_step(DISTINCT_RUNS[run])


# Each preset on its own prepared layout, and a defense variant once (the variants are the synthetic config's, whose
# every code path trains one step above; every preset's variants load in test_config_loads_and_locks).
@pytest.mark.slow
@pytest.mark.parametrize("name,variant", [("ave", ""), ("music", ""), ("kinetics", ""), ("ave", "defense=pcl")])
def test_paper_runlocal_variant_trains_one_step(layout_roots, name, variant):
    config = load(name, ",".join(filter(None, [variant, "runlocal"])))
    config.unlock()
    config.data.root = layout_roots[config.data.preset]
    from avjax.runs import run_config
    _one_step(run_config(config, list(config.runs)[-1]))


@pytest.mark.slow
def test_bfloat16_compute_trains_one_step():
    config = load("synthetic", "runlocal,modality=av")
    config.unlock()
    config.model.dtype = "bfloat16"
    _one_step(config)


@pytest.mark.slow
def test_paper_config_end_to_end_on_a_prepared_layout(layout_roots, tmp_path):
    """configs/ave.py:runlocal trains, tests and evaluates under attack from real prepared media; from the
    decoded format (avjax.data.decoded), the same run to the bit."""
    from avjax import experiment
    config = load("ave", "runlocal,modality=av")
    config.unlock()
    config.data.root = layout_roots["ave"]
    config.eval.sweep_eps = (0.0, 0.01)
    out = experiment.run(config, str(tmp_path))
    assert out["train"]["av"]["test_count"] == 1
    assert set(out["evaluate"]["av"]["methods"]) == {"fgsm", "pgd", "mim"}
    assert os.path.isfile(tmp_path / "results.md") and os.path.isfile(tmp_path / "runs" / "av" / "model" / "model.json")
    config.data.source, config.data.decoded_dir = "decoded", str(tmp_path / "decoded")   # made on first use
    again = experiment.run(config, str(tmp_path / "from_decoded"))
    assert json.load(open(tmp_path / "decoded" / "meta.json"))["splits"] == {"train": 4, "val": 1, "test": 1}
    assert again["train"]["av"]["history"] == out["train"]["av"]["history"]      # the same examples, the same run
    assert again["evaluate"]["av"]["methods"] == out["evaluate"]["av"]["methods"]


@pytest.mark.parametrize("name", ["ave", "music", "kinetics"])
def test_missing_data_gives_one_clear_message(name, tmp_path):
    """No prepared data: what is missing, the prepare command that makes it, and the flag that points to it."""
    from avjax import experiment
    config = load(name, None)
    config.train.visual_init = "none"
    with pytest.raises(FileNotFoundError, match=r"config.data.root is not set(.|\n)*python -m avjax.data.prepare "
                                                r"--preset(.|\n)*--config.data.root=DIR"):
        experiment.train(config, str(tmp_path))
    config.data.root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere(.|\n)*does not exist(.|\n)*--config.data.root=DIR"):
        experiment.train(config, str(tmp_path))


def test_fusion_all_trains_every_fusion_and_renders_the_fusion_table(tmp_path):
    from avjax.configs.base import FUSION_LABELS
    from avjax.evaluation import report
    from avjax.evaluation.robustness import EvalSpec
    from avjax.models import FUSIONS
    assert set(FUSION_LABELS) == set(FUSIONS)
    config = load("synthetic", "fusion=all")
    assert [runs.run_config(config, n).model.fusion for n in config.rows if n.startswith("av_")] \
        == list(FUSION_LABELS)
    assert config.baseline == "av_concat" and {"audio", "visual"} <= set(config.runs)
    for name in config.runs:
        build(runs.run_config(config, name).model)
    with pytest.raises(ValueError, match="fusion=all"):
        load("synthetic", "fusion=all,defense=minsim")
    # the table: one row per fusion, every method x setting (from evaluations as the stage makes them)
    spec = EvalSpec.from_config(config.eval)
    rng = np.random.default_rng(0)
    results = {}
    for name in config.rows:
        rc = runs.run_config(config, name)
        accs = {m: {k: float(rng.uniform(0, 100)) for k in ("clean", "xA", "xV", "xAV")} for m in spec.methods}
        results[name] = {"clean": 90.0, "n": 10, "modality": rc.model.modality, "label": config.runs[name].label,
                         "model_config": rc.model.to_dict(), "methods": accs}
    table = "\n".join(report.fusion_table(results, spec))
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "fusion" not in line]
    assert rows == list(FUSION_LABELS.values())
    film = next(line for line in table.splitlines() if line.startswith("| FiLM |"))
    assert film.rstrip(" |").endswith(f"{results['av_film']['methods']['mim']['xAV']:.2f}")


def test_folder_config_reads_any_prepared_folder_with_one_flag(tmp_path, caplog):
    """configs/folder.py: classes, their number and the report's name come from the folder; an empty
    validation list is carved, stratified and seeded, from train."""
    videos = tmp_path / "clips"
    for cls in ("applause", "drums", "whistle"):
        os.makedirs(videos / cls)
        for i in range(4):
            fixtures.make_video(videos / cls / f"{cls}{i}.mp4", seconds=1.0, fps=8, size=(40, 32))
    items = prepare.items_from_class_tree(str(videos))
    items = [prepare.Item(it.video, it.label, "test" if it.id.endswith("3") else "train", it.id) for it in items]
    root = tmp_path / "my_clips"
    prepare.prepare(items, str(root), progress=False)
    assert open(root / "val.csv").read() == ""
    config = load("folder", "runlocal,modality=av")
    config.data.root = str(root)
    caplog.set_level("WARNING")
    config_files.resolve_data(config)
    assert config.data.name == "my_clips" and config.model.num_classes == 3
    assert tuple(config.data.classes) == ("applause", "drums", "whistle")
    split_sources, _ = sources.build(config.data)     # what the train stage reads (the stage itself: the
    assert "carved 3 of the 9 training rows" in caplog.text      # paper config's end-to-end test)
    assert [len(split_sources[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert sorted(r.label for r in split_sources["val"].rows) == [0, 1, 2]
    build(runs.run_config(config, "av").model)
    rows = [layout_a.Row("a", "f", 8, i % 3, str(i)) for i in range(30)]
    train, val = layout_a.carve_validation(rows, 0.2, 0)
    assert sorted(r.label for r in val) == [0, 0, 1, 1, 2, 2] and len(train) == 24
    assert val == layout_a.carve_validation(rows, 0.2, 0)[1] != layout_a.carve_validation(rows, 0.2, 1)[1]
    with pytest.raises(FileNotFoundError, match="python -m avjax.data.prepare --videos"):
        config = load("folder", None)
        config.data.root = str(tmp_path / "nowhere")
        config_files.resolve_data(config)


def test_protocol_paper_sets_every_choice_of_the_released_attack_study():
    from avjax.evaluation import report
    from avjax.evaluation.robustness import EvalSpec
    for name, batch in (("music", 36), ("kinetics", 36), ("ave", 8)):
        default, paper = load(name, None), load(name, "protocol=paper")
        assert default.eval.study == "corrected" and default.eval.variant == "standard"
        ev = paper.eval
        assert (ev.study, ev.units, ev.variant, ev.batch_size) == ("paper", "normalized", "original", batch)
        # the tables' eps: one 0.006 in every setting (appendix Table 1's None row is Table 2's)
        assert (ev.eps_audio_only, ev.eps_visual_only, ev.eps_joint) == (0.006, 0.006, 0.006)
        assert len(ev.sweep_eps) > 2 and 0.006 in ev.sweep_eps and 0.012 in ev.sweep_eps
        md = report.markdown({}, EvalSpec.from_config(ev), "av", "t")
        assert "Protocol: the released attack study at the paper's tables' eps (`protocol=paper`)" in md
        script = load(name, "protocol=attack_script").eval   # the released main_attack.py: 0.012 for one modality
        assert (script.eps_audio_only, script.eps_visual_only, script.eps_joint) == (0.012, 0.012, 0.006)
        assert {k: v for k, v in script.items() if not k.startswith(("eps_", "study"))} == \
            {k: v for k, v in ev.items() if not k.startswith(("eps_", "study"))}
        assert "(`protocol=attack_script`)" in report.markdown({}, EvalSpec.from_config(script), "av", "t")
    with pytest.raises(ValueError, match="unknown config variant"):
        load("synthetic", "protocol=paper")
    with pytest.raises(ValueError, match="unknown protocol"):
        load("ave", "protocol=mine")


@pytest.mark.parametrize("name", ["ave", "music", "kinetics"])
def test_paper_defense_variants_use_the_released_defense_protocol_and_coder(name):
    from avjax.configs.paper import DEFENSE_RECIPES
    for variant in ("defense=minsim", "defense=exfmem", "defense=all", "protocol=paper"):
        config = load(name, variant)
        memory = config.model.memory
        steps = DEFENSE_RECIPES[config.data.preset]["ista_steps"]
        assert (memory.solver, memory.variant, memory.max_iter) == ("ista", "original", 2001), variant
        assert (memory.step_visual, memory.step_audio) == tuple(steps)
        if variant.startswith("defense"):
            assert config.eval.defended_loss == "ce+cos" and config.eval.variant == "original"
            assert config.eval.eps_audio_only == config.eval.eps_visual_only == config.eval.eps_joint == 0.006
    plain = load(name, None)   # avjax's own protocol keeps the corrected coder
    assert (plain.model.memory.solver, plain.model.memory.variant) == ("fista", "standard")
