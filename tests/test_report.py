"""`calcscore report`: papermill runs, parameters, HTML export, atomic outputs, errors."""

from __future__ import annotations

import json

import nbformat
import pytest

from calcscore.cli import main
from calcscore.notebook_report import parse_parameters, parse_value, repo_path, tiny_parameters

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:zmq.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:papermill.*"),
    pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning"),
]


@pytest.fixture
def notebook(tmp_path):
    """A notebook whose parameters cell sets n, shape and name, and which writes them to JSON."""
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "calcscore": {"tiny_parameters": {"n": 1}},
        }
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a report"),
        nbformat.v4.new_code_cell(
            'n = 3\nshape = None\nname = "soft"', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "import json, pathlib\n"
            'assert n >= 0, "n must not be negative"\n'
            'pathlib.Path("seen.json").write_text(json.dumps({"n": n, "shape": shape, "name": name}))\n'
            'print("n squared is", n * n)'
        ),
    ]
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, path)
    return path


def test_parse_values():
    assert parse_value("4") == 4 and parse_value("0.5") == 0.5 and parse_value("1e-3") == 0.001
    assert parse_value("[32, 96, 96]") == [32, 96, 96]
    assert parse_value("null") is None and parse_value("true") is True
    assert parse_value("paper") == "paper" and parse_value("{a: 1}") == {"a": 1}
    assert parse_value('{"max_iterations": 20}') == {"max_iterations": 20}
    assert parse_value("a: b: c") == "a: b: c"  # not YAML either: kept as text
    assert parse_parameters([("n", "2"), ("name", "sharp")]) == {"n": 2, "name": "sharp"}


def test_report_runs_with_parameters_and_writes_html(notebook, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "report",
            str(notebook),
            "--out",
            str(out),
            "-p",
            "n",
            "5",
            "-p",
            "shape",
            "[32, 96, 96]",
            "-p",
            "name",
            "sharp",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "seen.json").read_text()) == {
        "n": 5,
        "shape": [32, 96, 96],
        "name": "sharp",
    }
    executed = nbformat.read(out / "report.ipynb", as_version=4)
    texts = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert "n squared is 25\n" in texts
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "n squared is 25" in html
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.ipynb", "seen.json"]
    assert "HTML report" in capsys.readouterr().out


def test_report_tiny_uses_the_notebook_tiny_set(notebook, tmp_path):
    assert tiny_parameters(notebook) == {"n": 1}
    assert main(["report", str(notebook), "--out", str(tmp_path / "o"), "--tiny", "--no-html"]) == 0
    assert json.loads((tmp_path / "o" / "seen.json").read_text())["n"] == 1
    assert not (tmp_path / "o" / "report.html").exists()


def test_report_errors_are_one_line(notebook, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(notebook), "--out", str(out), "-p", "m", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) m" in err and "n, shape, name" in err
    assert main(["report", str(tmp_path / "missing.ipynb"), "--out", str(out)]) == 2
    assert "no such notebook" in capsys.readouterr().err

    assert main(["report", str(notebook), "--out", str(out), "-p", "n", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AssertionError: n must not be negative" in err[0]
    # the failed run leaves its partial notebook under another name, never report.ipynb
    assert (out / "report.failed.ipynb").is_file() and not (out / "report.ipynb").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_repo_path_finds_the_shared_data_folder(tmp_path):
    root = repo_path(".")
    assert (root / "pyproject.toml").is_file() and (root / "calcscore").is_dir()
    # from anywhere (a temporary folder), the installed package leads back to the repository
    assert (
        repo_path("../shared/data", start=tmp_path) == (root.parent / "shared" / "data").resolve()
    )


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_label_scans_by_stage_gives_cnn1_and_final_labels_from_one_pass():
    import numpy as np
    import torch

    from calcscore.inference import Model
    from calcscore.networks import build_network
    from calcscore.notebook_report import label_scans, label_scans_by_stage
    from calcscore.phantom import make_cohort
    from calcscore.training import get_config

    torch.manual_seed(0)
    cnn1 = build_network(
        "cnn1", get_config("workshop", "cnn1", width=4, head_width=8).network_params()
    ).eval()
    cnn2 = build_network(
        "cnn2", get_config("workshop", "cnn2", width_scale=0.25, dense_width=8).network_params()
    ).eval()
    with torch.no_grad():  # a CNN1 that calls every candidate LAD
        for m in cnn1.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m.weight.shape[0] == 7:
                m.weight.zero_()
                m.bias.copy_(torch.tensor([0.0, 5.0, 0, 0, 0, 0, 0]))
    # a tiny crop that holds candidates >= 130 HU: participant 7 of the first generator ("v1");
    # what is tested (one pass gives CNN1's and the final labels) does not depend on the anatomy
    scans = list(
        make_cohort(1, seed=7, kernels=("soft",), size="small", shape=(8, 24, 24), anatomy="v1")
    )
    last = [m for m in cnn2.modules() if isinstance(m, torch.nn.Linear)][-1]
    first = None
    for keep in (True, False):  # a CNN2 that keeps every voxel, then one that removes every voxel
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([-5.0, 5.0] if keep else [5.0, -5.0]))
        both = label_scans_by_stage(scans, Model(cnn1, cnn2))
        cnn1_labels, final = (
            both["CNN1"][0].prediction.labels,
            both["CNN1 + CNN2"][0].prediction.labels,
        )
        assert both["CNN1"][0].reference is scans[0].labels
        candidates = scans[0].volume.hu >= 130
        assert cnn1_labels.any() and set(np.unique(cnn1_labels[candidates])) <= {0, 1}
        assert not cnn1_labels[~candidates].any()
        assert first is None or np.array_equal(cnn1_labels, first)  # CNN1 does not depend on CNN2
        first = cnn1_labels
        if keep:  # the survivors keep CNN1's label
            assert np.array_equal(final, cnn1_labels)
        else:
            assert not final.any()
        assert np.array_equal(final, label_scans(scans, Model(cnn1, cnn2))[0].prediction.labels)
    assert np.array_equal(
        first, label_scans(scans, Model(cnn1, cnn2), use_cnn2=False)[0].prediction.labels
    )
