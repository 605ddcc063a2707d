"""sentei.overlay: the Python part of the accelerator -- code generation from a model
file, C-simulation of the HLS sources, and the performance model."""
