"""calcscore: automatic calcium scoring in low-dose chest CT."""

__version__ = "0.1.0"


def show_versions(file=None) -> dict[str, str]:
    """Write the versions of Python, calcscore and its main dependencies, the platform, the CPU
    count and the accelerator to ``file`` (standard output by default), as the first cell of
    every notebook does; return them as a dict."""
    import importlib.metadata
    import os
    import platform
    import sys

    info = {
        "calcscore": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    for dist in (
        "numpy",
        "scipy",
        "pandas",
        "matplotlib",
        "torch",
        "pydicom",
        "SimpleITK",
        "ipywidgets",
        "papermill",
        "jupyterlab",
    ):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "not installed"
    if "torch" in sys.modules or info["torch"] != "not installed":
        import torch

        info["accelerator"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
        )
        info["torch threads"] = str(torch.get_num_threads())
    out = file if file is not None else sys.stdout
    width = max(map(len, info))
    out.write("".join(f"{k:<{width}}  {v}\n" for k, v in info.items()))
    return info
