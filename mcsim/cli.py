"""Command line: ``mcsim run``, ``mcsim validate``. Only wires the pieces together."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config

EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [0, 2^63)") \
            from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [0, 2^63)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcsim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="simulate a config and write its report")
    r.add_argument("config", help="TOML config file")
    r.add_argument("--out", required=True, help="report directory (replaced atomically)")
    r.add_argument("--paths", type=_positive_int, help="number of paths (overrides config)")
    r.add_argument("--seed", type=_seed, help="seed in [0, 2^63) (overrides config)")
    r.add_argument("--chunk-size", type=_positive_int,
                   help="paths per device per call (rounded up to 1024 times a power of two; "
                        "default from the device's memory); results do not depend on it")
    r.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="kernel precision (reported sums are float64 either way)")
    r.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bar = r.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show the progress bar")

    d = r.add_argument_group(
        "several hosts", "run one process per host (or per GPU) through jax.distributed; "
        "each takes a share of the paths, and process 0 writes the report")
    d.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed run, its settings detected from the cluster "
                        "launcher (SLURM, Open MPI, ...) unless given below")
    d.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address of process 0's coordination service")
    d.add_argument("--num-processes", type=_positive_int, metavar="N")
    d.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. N-1")

    v = sub.add_parser("validate", help="check a config without running it")
    v.add_argument("config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "validate":
            n = len(config.uncertain_parameters())
            print(f"{args.config}: valid ({config.grid.num_months} months, "
                  f"{n} uncertain parameters, {config.simulation.paths:,} paths)")
            return 0
        config = config.with_simulation(paths=args.paths, seed=args.seed,
                                        chunk_size=args.chunk_size)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError("--out", args.out, "a directory (or a path that does not exist)")
    except ConfigError as exc:
        print(f"mcsim: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    import jax

    if args.distributed or args.coordinator:
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes,
                                   process_id=args.process_id)

    from .engine import run
    from .report import format_summary, write_report

    results = run(config, dtype=args.dtype, progress=args.progress)
    if jax.process_index() != 0:  # every process holds the merged results; one writes
        return 0
    out = write_report(results, args.out, plots=not args.no_plots)
    print(format_summary(results))
    print(f"report written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
