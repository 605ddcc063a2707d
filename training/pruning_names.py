"""The names the pruning schemes take, without torch: groupwise layouts and unstructured rankings.

The config schema (:mod:`sentei.training.config`, whose keys accept them and whose options
argparse offers as choices while the CLI registers, where torch is not imported) and the
schemes that act on them (:mod:`sentei.training.pruning`) both read them here, so that
neither imports the other for them (the config checks a schedule with pruning's own rules).
"""

GROUP_LAYOUTS = ("flat", "channels")  # groupwise: flattened filter (ci, ky, kx), or Kang's channels at a tap
RANKINGS = ("global", "layer")  # unstructured: one magnitude threshold over all pruned layers, or one per layer
