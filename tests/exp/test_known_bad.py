"""A run on the reference's own fix profiles (post_fix, pre_fix) says once that they are known to
fail, and where the repaired model is."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from remdinet.exp import known_bad
from remdinet.exp.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
runner = CliRunner()
NOTICE = "reproduce the reference's known failure (grey / white output)"


def train(tracking_uri, tmp_path, *args):
    known_bad._announce.cache_clear()  # once per process: each test is a fresh "process"
    result = runner.invoke(app, ["--tracking-uri", tracking_uri, "train", "--preset", "tiny",
                                 "--set", f"training.output_dir={tmp_path / 'out'}", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("profile", [(), ("--profile", "pre_fix")])
def test_a_known_bad_profile_is_announced_once_pointing_to_corrected_and_doctor(
        tracking_uri, tmp_path, profile):
    output = train(tracking_uri, tmp_path, *profile)
    assert output.count(NOTICE) == 1
    assert "--profile corrected" in output and "remdi-exp doctor" in output


def test_the_corrected_profile_trains_without_the_notice(tracking_uri, tmp_path):
    assert NOTICE not in train(tracking_uri, tmp_path, "--profile", "corrected")
