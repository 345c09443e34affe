"""`calcscore report NOTEBOOK --out DIR [-p NAME VALUE ...]`: run a notebook as a report.

The notebook runs with papermill in DIR (files it writes land there); DIR then holds the
executed notebook NAME.ipynb and its HTML export NAME.html, each written atomically. Parameter
values are JSON or YAML literals: -p n_participants 4 -p preset paper -p shape "[32, 96, 96]".
--tiny starts from the notebook's tiny parameter set (seconds on a CPU; the numbers mean
nothing).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="run a notebook with papermill and export it to HTML",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "notebook",
        metavar="NOTEBOOK",
        help="the .ipynb file, e.g. notebooks/03_inference_scoring.ipynb",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="set a parameter of the notebook (repeatable)",
    )
    p.add_argument(
        "--tiny", action="store_true", help="start from the notebook's tiny parameter set"
    )
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.notebook_report import parse_parameters, run_notebook

    result = run_notebook(
        args.notebook,
        args.out,
        parameters=parse_parameters(args.parameter),
        tiny=args.tiny,
        kernel_name=args.kernel,
        html=not args.no_html,
    )
    print(f"ran {args.notebook} in {result.seconds:.0f} s")
    print(f"executed notebook: {result.notebook}")
    if result.html is not None:
        print(f"HTML report:       {result.html}")
    return 0
