"""Study files: the shipped ones load; every kind of bad spec fails before training, naming the
key."""
from __future__ import annotations

import textwrap

import pytest

from remdinet.exp.studyspec import StudySpecError, load_spec

SHIPPED = ("color_clamps", "stage_weights", "color_thresholds")


def write(tmp_path, body: str, name: str = "s"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD_HEAD = """
[study]
preset = "tiny"
n_trials = 2
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_studies_load_with_baseline_inside_their_space(name):
    spec = load_spec(name)
    assert spec.space
    assert spec.baseline
    assert all(spec.space[k].contains(v) for k, v in spec.baseline_params().items())


def test_full_study_is_the_union_of_the_three_spaces():
    full = load_spec("full")
    union = set()
    for name in SHIPPED:
        union |= set(load_spec(name).space)
    assert set(full.space) == union


def test_color_thresholds_study_covers_every_threshold():
    assert set(load_spec("color_thresholds").space) == {
        "color_thresholds.min_saturation", "color_thresholds.critical_saturation",
        "color_thresholds.target_saturation", "color_thresholds.saturation_penalty_factor"}


def test_nested_and_quoted_keys_are_equivalent(tmp_path):
    quoted = load_spec(write(tmp_path, GOOD_HEAD + """
        [fixed]
        "training.num_epochs" = 3
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.05
        high = 0.2
        """, "q"))
    nested = load_spec(write(tmp_path, GOOD_HEAD + """
        [fixed.training]
        num_epochs = 3
        [space.color_thresholds.min_saturation]
        type = "float"
        low = 0.05
        high = 0.2
        """, "n"))
    assert quoted.space == nested.space
    assert quoted.fixed == nested.fixed == {"training.num_epochs": 3}


BAD = {
    "unknown config key": ("""
        [space."clamps.nope"]
        type = "float"
        low = 0.0
        high = 1.0
        """, r"clamps\.nope"),
    "low above high": ("""
        [space."clamps.enhancer_weight_min"]
        type = "float"
        low = 0.9
        high = 0.5
        """, r'clamps\.enhancer_weight_min.*low \(0\.9\) must be less than high'),
    "log with non-positive low": ("""
        [space."optim.lr_curve"]
        type = "float"
        low = 0.0
        high = 0.01
        log = true
        """, r'optim\.lr_curve.*log = true needs low > 0'),
    "empty choices": ("""
        [space."training.monitor_stage3"]
        type = "categorical"
        choices = []
        """, r'training\.monitor_stage3.*non-empty'),
    "choice outside the field": ("""
        [space."training.monitor_stage3"]
        type = "categorical"
        choices = ["psnr", "loss"]
        """, r"training\.monitor_stage3.*'loss'"),
    "type mismatch": ("""
        [space."training.batch_size"]
        type = "float"
        low = 1.0
        high = 4.0
        """, r'training\.batch_size.*does not match the config field, which is int'),
    "bound outside the field range": ("""
        [space."color_thresholds.min_saturation"]
        type = "float"
        low = 0.1
        high = 2.0
        """, r'color_thresholds\.min_saturation.*high = 2\.0'),
    "overlapping min/max pair": ("""
        [space."clamps.enhancer_gamma_min"]
        type = "float"
        low = 0.8
        high = 1.04
        [space."clamps.enhancer_gamma_max"]
        type = "float"
        low = 1.0
        high = 1.2
        """, r'enhancer_gamma_min.*and.*enhancer_gamma_max.*combination.*must not exceed'),
    "unknown option": ("""
        [space."clamps.enhancer_gamma_min"]
        type = "float"
        low = 0.8
        high = 0.9
        stepp = 0.1
        """, r'enhancer_gamma_min.*unknown option.*stepp'),
    "empty space": ("", r"\[space\].*empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_search_space_fails_naming_the_key(tmp_path, case):
    body, pattern = BAD[case]
    with pytest.raises(StudySpecError, match=pattern):
        load_spec(write(tmp_path, GOOD_HEAD + body))


SPACE = """
[space."color_thresholds.min_saturation"]
type = "float"
low = 0.05
high = 0.2
"""


@pytest.mark.parametrize("study_lines, pattern", [
    ('sampler = "bayes"', r"\[study\] sampler.*unknown sampler 'bayes'.*tpe"),
    ('pruner = "early"', r"\[study\] pruner.*unknown pruner 'early'"),
    ('metric = "loss"', r"unknown metric 'loss'"),
    ('direction = "up"', r"'up' is not one of maximize"),
    ('metrics = ["psnr", "ssim"]\npruner = "median"', r"cannot prune multi-objective"),
    ('colour = 1', r"\[study\].*unknown key.*colour"),
    ('pruner = "threshold"', r"\[study.pruner_options\].*lower or upper"),
    ('[study.pruner_options]\nn_startup = 3', r"unknown option.*n_startup.*n_startup_trials"),
    ('sampler = "grid"', r"grid sampler needs a step"),
    ('metric = "ms_ssim"', r"ms_ssim is only computed for validation images larger than"),
])
def test_bad_study_settings_fail_naming_the_setting(tmp_path, study_lines, pattern):
    body = "[study]\npreset = \"tiny\"\nn_trials = 2\n" + study_lines + "\n" + SPACE
    with pytest.raises(StudySpecError, match=pattern):
        load_spec(write(tmp_path, body))


@pytest.mark.parametrize("study_lines, pattern", [
    ('n_trials = 0', r"\[study\] n_trials: 0 must be >= 1"),
    ('seed = "one"', r"\[study\] seed: expected int, got 'one'"),
    ('timeout = 0', r"\[study\] timeout: must be > 0"),
    ('include = 3', r"\[study\] include: expected list"),
    ('metrics = ["psnr", "loss"]', r"\[study\] metrics: unknown metric 'loss'; valid: psnr"),
    (SPACE.replace("high = 0.2", 'high = "high"'),
     r'\[space."color_thresholds.min_saturation"\] high: expected float'),
])
def test_a_study_value_of_the_wrong_type_or_range_fails_naming_its_key(tmp_path, study_lines,
                                                                        pattern):
    body = '[study]\npreset = "tiny"\n' + study_lines + "\n" + (SPACE if "[space" not in
                                                                study_lines else "")
    with pytest.raises(StudySpecError, match=pattern):
        load_spec(write(tmp_path, body))


def test_fixed_key_may_not_also_be_searched(tmp_path):
    body = GOOD_HEAD + '[fixed]\n"color_thresholds.min_saturation" = 0.1\n' + SPACE
    with pytest.raises(StudySpecError, match=r'min_saturation.*also searched'):
        load_spec(write(tmp_path, body))


def test_cli_override_of_a_searched_key_is_rejected(tmp_path):
    with pytest.raises(StudySpecError,
                       match=r'"color_thresholds.min_saturation" \(--set or --config\)'):
        load_spec(write(tmp_path, GOOD_HEAD + SPACE),
                  overrides={"color_thresholds.min_saturation": 0.1})


def test_baseline_outside_the_space_is_rejected(tmp_path):
    body = GOOD_HEAD + "baseline = true\n" + """
[space."color_thresholds.min_saturation"]
type = "float"
low = 0.15
high = 0.2
"""
    with pytest.raises(StudySpecError, match=r"min_saturation.*baseline.*0\.1 lies outside"):
        load_spec(write(tmp_path, body))


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[study\n")
    with pytest.raises(StudySpecError, match="invalid TOML"):
        load_spec(path)


def test_multi_objective_defaults_to_no_pruning(tmp_path):
    head = '[study]\npreset = "tiny"\nmetrics = ["psnr", "ssim"]\n'
    spec = load_spec(write(tmp_path, head + SPACE))
    assert spec.multi_objective and spec.pruner == "none"
    assert spec.directions == ("maximize", "maximize")


def test_grid_sampler_visits_every_step(tmp_path):
    body = GOOD_HEAD + 'sampler = "grid"\n' + """
[space."color_thresholds.min_saturation"]
type = "float"
low = 0.05
high = 0.2
step = 0.05
[space."training.monitor_stage3"]
type = "categorical"
choices = ["psnr", "ssim"]
"""
    spec = load_spec(write(tmp_path, body))
    grid = spec.space["color_thresholds.min_saturation"].grid()
    assert grid == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert spec.make_sampler(0) is not None


@pytest.mark.parametrize("pruner_lines, built", [
    ('pruner = "percentile"\n[study.pruner_options]\npercentile = 25.0', "PercentilePruner"),
    ('pruner = "successive_halving"', "SuccessiveHalvingPruner"),
    ('pruner = "wilcoxon"', "WilcoxonPruner"),
    ('pruner = "patient"\n[study.pruner_options]\npatience = 2\nwrapped_pruner = "median"\n'
     '[study.pruner_options.wrapped_pruner_options]\nn_startup_trials = 1', "PatientPruner"),
])
def test_each_pruner_resolves_from_the_spec(tmp_path, pruner_lines, built):
    spec = load_spec(write(tmp_path, GOOD_HEAD + pruner_lines + "\n" + SPACE))
    assert type(spec.make_pruner()).__name__ == built


def test_a_patient_pruner_wraps_the_pruner_it_names(tmp_path):
    body = (GOOD_HEAD + 'pruner = "patient"\n[study.pruner_options]\npatience = 2\n'
            'wrapped_pruner = "median"\n' + SPACE)
    pruner = load_spec(write(tmp_path, body)).make_pruner()
    assert type(pruner._wrapped_pruner).__name__ == "MedianPruner"


@pytest.mark.parametrize("study_lines, pattern", [
    ('[study.sampler_options]\ngamma = "lambda n: 3"',
     r"\[study.sampler_options\] gamma: takes a Python object \(Callable"),
    ('metrics = ["psnr", "ssim"]\nsampler = "nsga2"\n[study.sampler_options]\nmutation = "x"',
     r"\[study.sampler_options\] mutation: takes a Python object \(BaseMutation"),
    ('pruner = "patient"\n[study.pruner_options]\npatience = 2\nwrapped_pruner = "medain"',
     r"wrapped_pruner: unknown pruner 'medain'"),
    ('pruner = "patient"', r"\[study.pruner_options\].*patience"),
])
def test_options_a_study_file_cannot_give_are_refused_naming_the_key(tmp_path, study_lines,
                                                                      pattern):
    with pytest.raises(StudySpecError, match=pattern):
        load_spec(write(tmp_path, GOOD_HEAD + study_lines + "\n" + SPACE))


def test_nsga2_serves_a_multi_objective_study(tmp_path):
    head = '[study]\npreset = "tiny"\nmetrics = ["psnr", "ssim"]\nsampler = "nsga2"\n'
    spec = load_spec(write(tmp_path, head + SPACE))
    assert type(spec.make_sampler(0)).__name__ == "NSGAIISampler"
