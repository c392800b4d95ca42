from PIL import Image

from benchmark.cli import main
from benchmark.report import cell_examples, sample_grid
from benchmark.tasks import Task

TASK = Task(name="grid-task", description="t", dataset="phantom-cxr",
            classes=("no_finding", "cardiomegaly", "edema"), sensitive_attributes=("sex",))


def test_cell_examples_picks_the_first_rows_of_each_cell(tiny_dataset):
    # conftest: finding cycles no_finding, cardiomegaly, edema; every 4th row is female
    cells = cell_examples(tiny_dataset, TASK, per_cell=2)
    assert cells[(("female",), "no_finding")] == [0, 12]
    assert cells[(("female",), "edema")] == [8, 20]
    assert cells[(("male",), "no_finding")] == [3, 6]
    assert len(cells) == 6


def test_sample_grid_writes_a_png(tiny_dataset, tmp_path):
    path = sample_grid(tiny_dataset, TASK, tmp_path / "g" / "grid.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]


def test_datasets_show_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "cxr.png"
    assert main(["datasets", "--show", "phantom-cxr", "--images", "300", "--out", str(out)]) == 0
    assert out.is_file() and capsys.readouterr().out.strip() == str(out)
    assert main(["datasets", "--show", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'nope'")
