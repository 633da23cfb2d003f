"""``hnet-seq train`` configs and bad input: presets load and validate, errors name the field, and
the CLI refuses bad input in one line before any work."""
from __future__ import annotations

import pytest

from hnet_seq.config import ConfigError
from hnet_seq.train import load_run_config
from hnet_seq.train.config import list_presets, presets_dir

from helpers import invoke, micro_config

# ---- configs -------------------------------------------------------------------------------------


def test_presets_load_and_validate():
    names = list_presets()
    for name in ("dna-tiny", "dna-paper-1stage", "bytes-1stage", "bytes-2stage", "audio"):
        assert name in names, names
        cfg = load_run_config(name)
        assert len(cfg.target_compression()) == cfg.model_config.num_stages - 1
    assert load_run_config("dna-paper-1stage").model_config.d_model[0] == 512
    assert load_run_config("bytes-2stage").target_compression() == [3.0, 3.0]
    assert (presets_dir() / "dna-tiny.yaml").is_file()


@pytest.mark.parametrize("override, field", [
    ("optim.lrr=1e-3", "optim.lrr"),
    ("optim.lr=fast", "optim.lr"),
    ("schedule.kind=linear", "schedule.kind"),
    ("model.d_model=[64]", "model.d_intermediate"),
    ("dta.paths=[]", "dta"),
    ("objective.target_compression=[3,3]", "objective.target_compression"),
])
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_run_config("dna-tiny", [override])
    msg = str(err.value)
    assert f"'{field}" in msg and "\n" not in msg and "dna-tiny.yaml" in msg


def test_overrides_reach_every_section():
    cfg = load_run_config("dna-tiny", ["optim.lr=1e-3", "model.d_model=[64,160]", "objective.target_compression=4",
                                       "train.on_nonfinite=skip"])
    assert cfg.optim.lr == 1e-3 and cfg.model_config.d_model == [64, 160]
    assert cfg.target_compression() == [4.0] and cfg.train.on_nonfinite == "skip"


# ---- bad input: one line, before any work -------------------------------------------------------


def _one_line_error(result, *needles):
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert "Traceback" not in out and out.count("\n") == 0, out
    for needle in needles:
        assert needle in out, out


def test_missing_data_path(tmp_path):
    result = invoke("train", "--config", "dna-tiny", "--data", str(tmp_path / "nope.fa"), "--out", str(tmp_path / "run"))
    _one_line_error(result, "nope.fa", "no such file")
    assert not (tmp_path / "run").exists()


def test_unknown_config_field_on_cli(tmp_path):
    result = invoke("train", "--config", "dna-tiny", "--set", "optim.learning_rate=1", "--out", str(tmp_path / "run"))
    _one_line_error(result, "unknown field 'optim.learning_rate'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny_1stage.json\noptimiser: {lr: 1}\n")
    _one_line_error(invoke("train", "--config", str(bad), "--out", str(tmp_path / "run")), "unknown field 'optimiser'")
    _one_line_error(invoke("train", "--config", "dna-teeny"), "dna-teeny", "presets")
    assert not (tmp_path / "run").exists()


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(blocker / "run"))
    _one_line_error(result, str(blocker / "run"), "not writable")


def test_existing_run_needs_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    result = invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(run))
    _one_line_error(result, "already holds a run", "--resume")


def test_run_errors_name_the_api_and_the_cli_shows_flags(tmp_path):
    """The library names train()'s parameters (resume=True, run_dir, overrides); the CLI's error
    boundary writes them as --resume, --out, --set."""
    from hnet_seq.errors import UserError
    from hnet_seq.train.run_dir import prepare_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(UserError) as e:
        prepare_run_dir(run, resume=False)
    assert "pass resume=True to continue it, or choose another run_dir" in str(e.value) and "--" not in str(e.value)
    _one_line_error(invoke("train", "--config", str(micro_config(tmp_path)), "--out", str(run)),
                    f"{run}: already holds a run; pass --resume to continue it, or choose another --out")
    with pytest.raises(ConfigError, match="overrides 'optim.lr': expected key=value") as e:
        load_run_config("dna-tiny", ["optim.lr"])
    assert "--" not in str(e.value)
    _one_line_error(invoke("train", "--config", "dna-tiny", "--set", "optim.lr", "--out", str(tmp_path / "r2")),
                    "--set 'optim.lr': expected key=value")
    assert not (tmp_path / "r2").exists()
