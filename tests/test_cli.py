import subprocess
import sys

import pytest

from benchmark import GENERATORS
from benchmark.cli import build_parser, main


def test_unknown_method_prints_one_line_with_valid_names_and_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--method", "nope"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"error: unknown method 'nope'; valid: {', '.join(GENERATORS.names())}"
    assert {"oversample", "real-only"} <= set(GENERATORS.names())


@pytest.mark.parametrize(
    ("argv", "kind"),
    [(["run", "--method", "oversample", "--task", "nope"], "task"),
     (["run", "--method", "oversample", "--profile", "huge"], "profile"),
     (["evaluate", "--synthetic", ".", "--task", "nope"], "task")],
)
def test_unknown_task_or_profile_exits_2(argv, kind, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: unknown {kind} ")


@pytest.mark.parametrize("command", ["tasks", "methods", "datasets", "profiles"])
def test_listings_have_one_line_per_entry(command, capsys):
    assert main([command]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out and all(len(line.split()) >= 2 for line in out)


def test_listing_contents(capsys):
    main(["methods"])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    from benchmark import GENERATORS

    assert names == GENERATORS.names()
    assert {"oversample", "real-only", "sd-finetune", "cbrs", "sqrs"} <= set(names)
    main(["tasks"])
    tasks = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert tasks == sorted(tasks) and "phantom-cxr-finding" in tasks


def test_every_command_has_help():
    parser = build_parser()
    for command in ("run", "evaluate", "tasks", "methods", "datasets", "profiles"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([command, "--help"])
        assert exit_.value.code == 0


def test_evaluate_on_a_missing_folder_is_one_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--synthetic", str(tmp_path / "none"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --synthetic {tmp_path / 'none'} does not exist; expected a folder"]
