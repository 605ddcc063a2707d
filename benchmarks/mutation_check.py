"""Break one rule at a time and check that the test meant to catch it fails (issue 26).

Run by hand (minutes; it never touches the working tree):

    python benchmarks/mutation_check.py            # every mutation
    python benchmarks/mutation_check.py -k distill # those whose name contains "distill"

The tree (tracked and untracked, not ignored; not runs/) is copied to a scratch folder, whose
``sentei`` folder gets links to host/, training/, overlay/ and PYTHONPATH puts it before the
editable install, so that the tests
and the commands they start import the copy. Each test runs once unbroken (it must pass),
then once per mutation with the mutation applied to the copy (it must fail, or time out: a
test that hangs on a broken deadline counts as caught). A mutation whose text is no longer in
its file is reported STALE: update the list when the code moves. Exit status 1 when any
mutation is MISSED or STALE.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"host": "host", "training": "training", "overlay": "overlay", "notebooks": "notebooks"}
T = "tests/reliability/test_blind_spots.py::"

# name, file, text, replacement, tests that must fail
MUTATIONS = [
    ("input rounding dropped (reference)", "host/modelfile/reference.py",
     "y = (x * mul + add + rnd) >> q.shift", "y = (x * mul + add) >> q.shift",
     [T + "test_reference_input_quantization_matches_the_oracle",
      T + "test_emulator_input_quantization_matches_the_oracle"]),  # the emulator's LUT comes from the reference
    ("input lower bound 0 (reference)", "host/modelfile/reference.py",
     "    return np.clip(y, lo, hi)", "    return np.clip(y, 0, hi)",
     [T + "test_reference_input_quantization_matches_the_oracle"]),
    ("QAT input lower bound 0", "training/models.py",
     "return y.clamp(-(2 ** (q.bits - 1)), 2 ** (q.bits - 1) - 1)", "return y.clamp(0, 2 ** (q.bits - 1) - 1)",
     [T + "test_qat_input_quantization_matches_the_oracle"]),
    ("QAT input rounding dropped", "training/models.py",
     "    rnd = (1 << (q.shift - 1)) if q.shift > 0 else 0\n    y = torch",
     "    rnd = 0\n    y = torch", [T + "test_qat_input_quantization_matches_the_oracle"]),
    ("validator accumulator bound halved", "host/modelfile/schema.py",
     "if worst.max() > INT32_MAX:", "if worst.max() > INT32_MAX // 2:",
     [T + "test_accumulator_bound_is_exactly_int32"]),
    ("resampling columns first", "host/modelfile/reference.py",
     "    rows = maps[:, ylo, :] * (1 - fy)[None, :, None] + maps[:, yhi, :] * fy[None, :, None]\n"
     "    return rows[:, :, xlo] * (1 - fx)[None, None, :] + rows[:, :, xhi] * fx[None, None, :]",
     "    cols = maps[:, :, xlo] * (1 - fx)[None, None, :] + maps[:, :, xhi] * fx[None, None, :]\n"
     "    return cols[:, ylo, :] * (1 - fy)[None, :, None] + cols[:, yhi, :] * fy[None, :, None]",
     [T + "test_resampling_is_rows_then_columns_in_float32"]),
    ("distillation without T^2", "training/distill.py",
     "/ keep.sum().clamp_min(1.0) * temperature**2", "/ keep.sum().clamp_min(1.0)",
     [T + "test_distillation_kl_softens_and_scales_by_t_squared"]),
    ("distillation without softening", "training/distill.py",
     "s, t = s_up / temperature, t_up / temperature", "s, t = s_up, t_up",
     [T + "test_distillation_kl_softens_and_scales_by_t_squared"]),
    ("driver ignores its timeout", "host/runtime/driver.py",
     "deadline = time.monotonic() + timeout", "deadline = time.monotonic() + 3600",
     [T + "test_driver_gives_up_within_its_timeout"]),
    ("HLS requantizer rounds ties toward zero", "overlay/hls/requant.hpp",
     "ap_int<64> r = (prod + rnd) >> q.shift;",
     "ap_int<64> r = (prod + (prod < 0 && rnd > 0 ? ap_int<64>(rnd - 1) : rnd)) >> q.shift;",
     ["tests/overlay/test_csim_ties.py::test_csim_rounds_ties_half_up_like_the_reference"]),
    # (negative ties rounded toward zero are not a mutation of the QAT exact path: its ReLU clamps
    # every negative result to 0 either way)
    ("QAT exact path rounds ties half to even", "training/quantize.py",
     "r = torch.bitwise_right_shift(acc * mult.view(1, -1, 1, 1) + rnd, sh)",
     "p = acc * mult.view(1, -1, 1, 1); r = torch.bitwise_right_shift(p + rnd, sh); "
     "r = r - ((sh > 0) & (p - torch.bitwise_left_shift(torch.bitwise_right_shift(p, sh), sh) == rnd) "
     "& (r % 2 != 0)).to(r.dtype)",
     [T + "test_qat_exact_path_rounds_ties_like_the_reference"]),
    ("QAT exact path rounds ties down", "training/quantize.py",
     "r = torch.bitwise_right_shift(acc * mult.view(1, -1, 1, 1) + rnd, sh)",
     "r = torch.bitwise_right_shift(acc * mult.view(1, -1, 1, 1) + (rnd - 1).clamp_min(0), sh)",
     [T + "test_qat_exact_path_rounds_ties_like_the_reference"]),
    # issue 26's other fixes
    ("writer replaces device nodes and FIFOs", "host/modelfile/schema.py",
     '    if how == "inplace":', "    if False:",
     ["tests/reliability/test_slips.py::test_dev_null_stays_a_device",
      "tests/reliability/test_slips.py::test_fifo_without_reader_refused_not_replaced"]),
    ("no feature-map limit", "host/modelfile/schema.py",
     "if max(padded, cout * h * w) > MAX_MAP_ELEMENTS:", "if False:",
     ["tests/reliability/test_hostile_sizes.py::test_small_file_claiming_huge_feature_maps"]),
    ("YAML aliases accepted", "training/config.py",
     "if self.check_event(yaml.events.AliasEvent):", "if False:",
     ["tests/reliability/test_hostile_sizes.py::test_config_structure_one_line[alias-bomb]"]),
    ("an existing run overwritten", "training/commands.py",
     "elif not getattr(args, \"overwrite\", False) and out.is_dir():", "elif False:",
     ["tests/reliability/test_slips.py::test_train_refuses_an_existing_run_without_resume"]),
    ("checkpoint structure unchecked", "training/train.py",
     "    return check_checkpoint(ckpt, path)", "    return ckpt",
     ["tests/reliability/test_hostile_checkpoints.py::test_a_broken_teacher_checkpoint_is_one_line[missing-key]",
      "tests/reliability/test_hostile_checkpoints.py::test_a_broken_compressed_checkpoint_is_one_line[no-compress]"]),
    ("checkpoint widths unbounded", "training/models.py",
     "        if out > fmt.MAX_CHANNELS:", "        if False:",
     ["tests/reliability/test_hostile_checkpoints.py::test_a_broken_teacher_checkpoint_is_one_line[width-absurd]"]),
    ("ONNX module's dense weights unbounded", "training/baseline.py",
     "    if problem is not None:  # what the float module", "    if False:  # what the float module",
     ["tests/reliability/test_hostile_checkpoints.py::test_onnx_module_bounds_dense_weights_before_allocating"]),
    ("segment writes over an input", "host/commands/models.py",
     "    check_not_inputs([o for pair", "    0 and check_not_inputs([o for pair",
     ["tests/reliability/test_slips.py::test_segment_refuses_to_write_over_an_input"]),
]


def copy_tree(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in files:
        if not name or name.startswith("runs/") or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    pkg = dest / "sentei"  # the copy's own package, with its halves linked in (setup.py's package_dir)
    for name, folder in PACKAGES.items():
        if (dest / folder).is_dir():
            (pkg / name).symlink_to(dest / folder)
    return dest


def run_tests(tree: Path, pkg: Path, tests, timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(pkg), PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "pass" if proc.returncode == 0 else "fail"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run (a hang is caught)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.k in m[0]]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="sentei-mutation-") as scratch:
        tree = Path(scratch)
        pkg = copy_tree(tree)
        check = subprocess.run([sys.executable, "-c", "import sentei.host, sys; print(sentei.host.__path__[0])"],
                               env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True, text=True, cwd=tree)
        assert check.stdout.strip().startswith(str(pkg)), f"the copy is not the one imported: {check.stdout!r}"
        for name, rel, old, new, tests in chosen:
            path = tree / rel
            text = path.read_text()
            if text.count(old) != 1:
                print(f"STALE   {name}: the text is in {rel} {text.count(old)} times (expected once)")
                bad += 1
                continue
            base = run_tests(tree, pkg, tests, args.timeout)
            if base != "pass":
                print(f"BROKEN  {name}: {' '.join(tests)} does not pass unbroken ({base})")
                bad += 1
                continue
            path.write_text(text.replace(old, new))
            try:  # each test on its own: every one listed must fail
                outcomes = [run_tests(tree, pkg, [test], args.timeout) for test in tests]
            finally:
                path.write_text(text)
            verdict = "caught " if all(o in ("fail", "timeout") for o in outcomes) else "MISSED "
            bad += verdict == "MISSED "
            print(f"{verdict} {name} ({rel}): " + ", ".join(f"{t.split('::')[-1]} {o}" for t, o in zip(tests, outcomes)),
                  flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutations caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
