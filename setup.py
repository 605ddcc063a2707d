"""sentei: hardware-aware filter-wise sparse CNNs for PYNQ (train -> model file -> host -> overlay).

One import namespace, three halves of one data path, mapped from the top-level folders:

    sentei           <- sentei/    (console script, shared error type)
    sentei.training  <- training/  (PyTorch: data, models, pruning, distillation, QAT, export)
    sentei.host      <- host/      (model file, reference engine, driver, emulation, camera, bench)
    sentei.overlay   <- overlay/   (Python part of the accelerator: codegen, C-simulation, perf model)
"""
from setuptools import setup

PACKAGES = {
    "sentei": "sentei",
    "sentei.host": "host",
    "sentei.training": "training",
    "sentei.overlay": "overlay",
    "sentei.notebooks": "notebooks",  # found by `pynq get-notebooks sentei`
}

# torch: a range that an installed build satisfies keeps it (NVIDIA's JetPack 6 wheel, a CUDA
# build), and whose newest release is 2.13.0, the CPU build that lies on disk for this
# project's machines: a wider range would fetch the registry's newest CUDA build into a fresh
# environment. Tested with 2.13 (CPU) and 2.11 (CUDA); 2.3 is the JetPack 6.0 wheel's.
EXTRAS = {
    "train": ["torch>=2.3,<=2.13.0", "tqdm>=4.60", "pyyaml>=5.4", "matplotlib>=3.5"],
    # pynq 4 pins numpy<2: every other extra must accept numpy 1.x.
    # >= 3.0 so that a PYNQ 3.0/3.1 image keeps its own pynq (an upgrade to 4.0, source-only on
    # PyPI, rebuilds the board's libraries and overwrites its notebooks); a fresh environment
    # gets 4.0 (3.x from PyPI pins a git URL dependency that pip refuses)
    "board": ["pynq>=3.0"],
    # opencv-python-headless 4.12+ needs numpy>=2, which pynq does not allow.
    "camera": ["opencv-python-headless>=4.8,<4.12"],
    "bench": ["matplotlib>=3.5", "psutil>=5.8", "nvidia-ml-py>=12"],
    "fast": ["numba>=0.58"],
    # `sentei export --onnx` (TorchScript exporter: onnx, no onnxscript); for TensorRT baselines
    "onnx": ["onnx>=1.15,<1.23"],  # 1.23 needs numpy>=2, which pynq does not allow
    "dev": [
        "pytest>=7",
        "hypothesis>=6.50",
        "nbclient>=0.7",
        "nbformat>=5.7",
        "ipykernel>=6",
        # ships Xilinx's ap_int.h / hls_stream.h used by the C-simulation of overlay/hls
        "hls4ml>=1.0",
    ],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="sentei",
    version="0.1.0",
    description="Filter-wise sparse CNN segmentation on PYNQ FPGAs: train, prune, distil, quantize, deploy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.9",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={
        "sentei.host": ["bundled/*.sentei", "bundled/*.json", "bundled/*.md", "bundled/*.pt",
                        "bundled/*.yaml", "bundled/*.log", "bundled/*.csv", "samples/*"],
        "sentei.overlay": ["hls/*.hpp", "hls/*.h", "hls/*.cpp", "tb/*.cpp", "tb/*.hpp",
                           "scripts/*.tcl", "scripts/*.py", "boards/*.json", "Makefile",
                           "bitstreams/*/*.bit", "bitstreams/*/*.hwh", "bitstreams/*/*.json",
                           "bitstreams/*.bit", "bitstreams/*.hwh", "bitstreams/*.json"],
        "sentei.training": ["configs/*.yaml"],
        "sentei.notebooks": ["*.ipynb", "data/*"],
    },
    include_package_data=False,
    install_requires=["numpy>=1.21", "pillow>=8"],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["sentei = sentei.cli:main"],
        "pynq.notebooks": ["sentei = sentei.notebooks"],
    },
    zip_safe=False,
)
