"""Command line: ``mcsim run``, ``sensitivity``, ``sweep``, ``compare``, ``reproduce``,
``validate``. Only wires the pieces together."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .compile_cache import use_compile_cache
from .cpu_devices import use_cpu_cores
from .errors import ConfigError


def load_config(path):
    """:func:`mcsim.config.load_config`, imported when a command reads a config: the config
    module imports scipy (0.7 s), which ``--help`` and a misused flag should not wait for."""
    from .config import load_config as load

    return load(path)


EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
OUT_HELP = ("report directory: new, empty, or one mcsim wrote (its files are replaced "
            "atomically; files mcsim did not write are never touched)")
FORCE_HELP = ("write into a non-empty directory mcsim did not write: its files stay, "
              "mcsim adds (and later replaces) only its own")


#: The library names the Python argument in its errors; the CLI names the flag that set it.
FLAGS = {"out_dir": "--out", "num_base": "--base-rows", "by_month": "--by",
         "target_se": "--target-se", "resume": "--resume", "overrides": "--set",
         "grid": "--set", "dtype": "--dtype", "checkpoint": "--checkpoint-dir"}


def as_flags(exc: ConfigError) -> ConfigError:
    """``exc`` with a Python argument's name replaced by its flag: ``num_base`` ->
    ``--base-rows``, ``target_se['p_not_repaid']`` -> ``--target-se p_not_repaid``. An
    error about a file (it has a source) names the file's own key: ``grid`` there is
    summary.json's, not the sweep's argument."""
    if exc.source:
        return exc
    for name, flag in FLAGS.items():
        if exc.key == name:
            return exc.renamed(flag)
        if exc.key.startswith(f"{name}[") and exc.key.endswith("]"):
            inner = exc.key[len(name) + 1:-1].strip("'\"")
            return exc.renamed(f"{flag} {inner}")
    return exc


def _bad_input(exc: ConfigError) -> int:
    """Bad input: one line on stderr, exit status 2 (nothing has been written)."""
    print(f"mcsim: error: {as_flags(exc)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _write_failed(what: str, out, exc: OSError) -> int:
    """The results could not be written (a full disk, permissions): one line, exit 1; the
    writer has removed its staging files and left any earlier output as it was."""
    reason = exc.strerror or str(exc)
    print(f"mcsim: error: could not write {what} to {out}: {reason}; nothing was changed "
          "there", file=sys.stderr)
    return EXIT_FAILED


def _write(what: str, out, write) -> int | None:
    """Run ``write()`` (it writes into ``out``); on failure print the one line and return
    the exit status (2: bad input, 1: the disk), else None."""
    try:
        write()
    except ConfigError as exc:
        return _bad_input(exc)
    except OSError as exc:
        return _write_failed(what, out, exc)
    return None


def _checkpoint_dir(args, out: Path) -> Path:
    """``--checkpoint-dir`` (default OUT.checkpoint), checked before the run: a directory
    (or a path that can become one) outside the report directory."""
    from .report.outdir import check_output_dir

    text = args.checkpoint_dir
    ckpt_dir = Path(text) if text is not None else Path(f"{out.resolve()}.checkpoint")
    if text is not None:
        # files are written into it, never swapped in: no staging probe, a mount is fine
        check_output_dir(ckpt_dir, key="--checkpoint-dir", force=True, probe=False)
    report, ck = out.resolve(), ckpt_dir.resolve()
    if ck == report or report in ck.parents:
        raise ConfigError("--checkpoint-dir", str(text), "a directory outside --out (the "
                          "report directory is replaced when the run ends)")
    return ckpt_dir


def _initialize_distributed(args) -> None:
    """jax.distributed, with its failures (no cluster found, a bad process id) as one line."""
    import jax

    n, i = args.num_processes, args.process_id
    if i is not None and (i < 0 or (n is not None and i >= n)):
        raise ConfigError("--process-id", i, f"an integer in [0, {n})" if n is not None
                          else "an integer >= 0")
    try:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=n,
                                   process_id=i)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("--distributed", "", "a cluster to join: give --coordinator, "
                          f"--num-processes and --process-id, or run under a cluster "
                          f"launcher (jax.distributed: {first})") from None


def _positive_int(text: str) -> int:
    """A positive integer, also written as a whole float (``1e6``, ``2.5e5``), as a config's
    ``paths = 1e6`` may be."""
    expected = f"{text!r}: expected a positive integer (e.g. 100000, 100_000 or 1e5)"
    clean = text.replace("_", "").strip()
    try:
        value = int(clean)
    except ValueError:
        try:
            number = float(clean)
        except ValueError:
            raise argparse.ArgumentTypeError(expected) from None
        if math.isfinite(number) and not number.is_integer():
            raise argparse.ArgumentTypeError(f"{expected}; {number:g} is not a whole "
                                             "number") from None
        if not (number.is_integer() and 1 <= number < 2**63):
            raise argparse.ArgumentTypeError(expected) from None
        value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(expected)
    return value


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (a negative interval or nan would silently turn the
    checkpoints off)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds >= 0 "
                                         "(0: after every call)")
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


DESCRIPTION = ("mcsim simulates the economics of OpenAI's compute on Azure and its deal "
               "with Microsoft as a Monte Carlo of many possible futures, and reports the "
               "distributions (Azure spend, revenue, when Microsoft is repaid) with their "
               "Monte Carlo errors.")
EPILOG = ("Every command takes --help. In the terminal output, \"±\" is 1.96 standard "
          "errors (a 95% interval) of a Monte Carlo estimate.")

#: Each subcommand: (one-line help in ``mcsim --help``, description in its own ``--help``).
SUBCOMMANDS = {
    "run": ("simulate a config and write its report",
            "Simulate a config's paths (and, with [observations], its conditioned pass) and "
            "write the report directory: summary.json, CSV tables, plots and report.html."),
    "reproduce": ("run again the run that wrote a summary.json",
                  "Rebuild a run from its summary.json alone (config, paths, seed and dtype) "
                  "and run it again into a new report directory."),
    "sensitivity": ("Sobol indices of every uncertain parameter; tornado chart",
                    "Estimate the Sobol indices (first-order and total) of every uncertain "
                    "parameter for the config's own questions (by default cumulative Azure "
                    "spend; with [funding] the funding-gap month; with Microsoft's equity "
                    "its whole position, in present value with a discount rate; the "
                    "repayment month and repaid-by-a-month; or any --output), and draw the "
                    "tornado chart. An output with no variance (every path repaid by the "
                    "month) is left out with a one-line warning."),
    "sweep": ("run a grid of overrides and compare the runs",
              "Run a config at every point of a grid of overridden values (batched in one "
              "kernel where shapes allow), one report per point, and tabulate and plot "
              "them."),
    "compare": ("headline differences (with their errors) of finished runs, or paired "
                "differences of two configs",
                "Compare finished runs from their report directories (conditioned results "
                "where a run has them): headline numbers side by side, each difference with "
                "its error, and overlaid charts. With --paired, run two configs on the same "
                "paths (common random numbers) and print each difference with its paired "
                "error."),
    "validate": ("check a config without running it",
                 "Check a config (after any --set overrides) without running it, and say "
                 "what it holds."),
}


def _version_text() -> str:
    """``mcsim X.Y.Z (jax A.B.C)``, JAX's version read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    from ._version import __version__

    try:
        jax_version = version("jax")
    except PackageNotFoundError:
        jax_version = "not installed"
    return f"mcsim {__version__} (jax {jax_version})"


class _Parser(argparse.ArgumentParser):
    """argparse with its misuse errors as one line (the README's promise), not the usage
    block: ``mcsim run: error: the following arguments are required: --out (see mcsim run
    --help)``, with the nearest name where a flag or command is misspelt."""

    def error(self, message: str) -> NoReturn:
        hint = self._nearest(message)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}{hint} "
                                  f"(see {self.prog} --help)\n")

    def _nearest(self, message: str) -> str:
        """"; did you mean --paths?" for an unknown flag or command close to a known one."""
        import difflib
        import re

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            given, known = choice[1], re.findall(r"'([^']*)'", choice[2])
        else:
            unknown = re.search(r"unrecognized arguments: (\S+)", message)
            if not unknown or not unknown[1].startswith("--"):
                return ""
            given = unknown[1].split("=", 1)[0]
            known = [o for a in self._actions for o in a.option_strings]
        close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mcsim", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=_version_text())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands")

    def command(name: str):
        short, long = SUBCOMMANDS[name]
        return sub.add_parser(name, help=short, description=long)

    r = command("run")
    r.add_argument("config", help="TOML config file")
    r.add_argument("--out", required=True, help=OUT_HELP)
    r.add_argument("--force", action="store_true", help=FORCE_HELP)
    r.add_argument("--paths", type=_positive_int, help="number of paths (overrides config)")
    r.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                   help="override any config key with a TOML value, e.g. "
                        "--set deal.revenue_share=0.1 (repeatable)")
    r.add_argument("--seed", type=_seed, help="seed in [0, 2^63) (overrides config)")
    r.add_argument("--target-se", action="append", default=[], metavar="STAT=VALUE",
                   help="run until STAT's standard error is at most VALUE (or N%% of the "
                        "estimate), looking after 65,536 x 2^k paths; --paths is then the "
                        "budget. STAT: cumulative_azure_spend, p_not_repaid, "
                        "p_credits_left or a horizon total (repeatable)")
    r.add_argument("--chunk-size", type=_positive_int,
                   help="paths per device per call (rounded up to 1024 times a power of two; "
                        "default from the device's memory); results do not depend on it")
    r.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="kernel precision (reported sums are float64 either way)")
    r.add_argument("--variance-reduction", choices=("none", "antithetic", "sobol"),
                   help="antithetic pairs or scrambled Sobol parameters (overrides "
                        "simulation.variance_reduction; see README)")
    r.add_argument("--no-condition", action="store_true",
                   help="skip the conditioned pass of a config with [observations]")
    r.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    r.add_argument("--save-paths", type=_positive_int, metavar="K",
                   help="also write the parameters and monthly flows of the first K paths "
                        "(sample_parameters.csv, sample_paths.csv)")
    bar = r.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show the progress bar")

    c = r.add_argument_group(
        "checkpoints", "the accumulators are saved every so often; a killed run continues "
        "with --resume and gives the same numbers as if never stopped")
    c.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint of this same run, if there is one")
    c.add_argument("--checkpoint-dir", metavar="DIR",
                   help="where checkpoints go (default: OUT.checkpoint beside the report); "
                        "once the report is written mcsim removes its checkpoint files, and "
                        "the directory only if it created it")
    c.add_argument("--checkpoint-interval", type=_seconds, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (default 60; 0: after every call)")
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

    rp = command("reproduce")
    rp.add_argument("summary", help="a summary.json written by mcsim run")
    rp.add_argument("--out", required=True, help=OUT_HELP)
    rp.add_argument("--force", action="store_true", help=FORCE_HELP)
    rp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    se = command("sensitivity")
    se.add_argument("config", help="TOML config file")
    se.add_argument("--out", required=True, help="directory for sensitivity.csv, "
                                                 "sensitivity.json, drivers.csv, tornado.png "
                                                 "and drivers.png")
    se.add_argument("--force", action="store_true", help=FORCE_HELP)
    se.add_argument("--base-rows", type=_positive_int, default=4096, metavar="N",
                    help="rows of each base matrix, a power of two (default 4096); the "
                         "model runs N x (parameters + 3) times")
    se.add_argument("--by", metavar="YYYY-MM",
                    help="month of the 'by' outputs: repaid_by, funding_gap_by, ... "
                         "(default 2030-12, or the horizon)")
    se.add_argument("--output", action="append", metavar="NAME[,NAME...]",
                    help="an output to measure instead of the defaults (repeatable): "
                         "cumulative_azure_spend, a horizon total (funding_to_find, "
                         "microsoft_whole_position, ...), an event's month "
                         "(repayment_month, funding_gap_month, cap_reached_month, ...) or "
                         "its 'by' indicator (repaid_by, funding_gap_by, ...); a wrong "
                         "name lists those of the config")
    se.add_argument("--bootstrap", type=_positive_int, default=1000,
                    help="bootstrap resamples for the intervals (default 1000)")
    se.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="override a config key first (repeatable)")
    se.add_argument("--seed", type=_seed, help="seed of the design, shocks and bootstrap")
    se.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    sec = se.add_argument_group(
        "checkpoints", "the evaluated design rows are saved every so often; a killed study "
        "continues with --resume and gives the same indices as if never stopped")
    sec.add_argument("--resume", action="store_true",
                     help="continue from the rows this same study saved, if any")
    sec.add_argument("--checkpoint-dir", metavar="DIR",
                     help="where the rows are saved (default: OUT.checkpoint beside the "
                          "study's directory); removed once the study is written, the "
                          "directory only if mcsim created it")
    sec.add_argument("--checkpoint-interval", type=_seconds, default=60.0, metavar="SECONDS",
                     help="seconds between checkpoints (default 60; 0: after every call)")

    sw = command("sweep")
    sw.add_argument("config", help="TOML config file")
    sw.add_argument("--set", action="append", required=True, metavar="TABLE.KEY=V1,V2,...",
                    help="values to sweep for one key (TOML literals; repeat for a grid)")
    sw.add_argument("--out", required=True, help="directory for sweep.csv, sweep.png and "
                                                 "each point's report (replaced atomically)")
    sw.add_argument("--force", action="store_true", help=FORCE_HELP)
    sw.add_argument("--paths", type=_positive_int, help="paths per point")
    sw.add_argument("--seed", type=_seed, help="seed (the same for every point)")
    sw.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    sw.add_argument("--no-plots", action="store_true")
    sw.add_argument("--no-batch", action="store_true",
                    help="run the points one after the other (each then bit-identical to "
                         "its own mcsim run) instead of batched in one kernel")
    swc = sw.add_argument_group(
        "checkpoints", "each point is saved once its batch is done; a killed sweep "
        "continues with --resume, skipping the saved points, with the same results")
    swc.add_argument("--resume", action="store_true",
                     help="read back the points this same sweep saved, run the rest")
    swc.add_argument("--checkpoint-dir", metavar="DIR",
                     help="where the points are saved (default: OUT.checkpoint beside the "
                          "sweep's directory); removed once the sweep is written, the "
                          "directory only if mcsim created it")

    cp = command("compare")
    cp.add_argument("runs", nargs="+", metavar="OUT",
                    help="report directories; with --paired, two TOML config files A B")
    cp.add_argument("--names", help="comma-separated labels (default: directory names; "
                                    "with --paired: the files' names)")
    cp.add_argument("--out", help="write compare.txt and compare.png into this directory "
                                  "(with --paired: paired.txt and paired.csv)")
    cp.add_argument("--force", action="store_true", help=FORCE_HELP)
    pr = cp.add_argument_group(
        "paired", "mcsim compare --paired A.toml B.toml: both configs run on the same paths "
        "(same seed: common random numbers); prints B - A with its paired error")
    pr.add_argument("--paired", action="store_true",
                    help="the two arguments are configs to run on common paths")
    pr.add_argument("--paths", type=_positive_int,
                    help="paths of both runs (default: the configs' common simulation.paths)")
    pr.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="override a key of config B only (repeatable), e.g. mcsim compare "
                         "--paired base.toml base.toml --set deal.revenue_share=0.25")
    pr.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="kernel precision (the differences are summed in float64)")

    v = command("validate")
    v.add_argument("config", help="TOML config file")
    v.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                   help="override a config key before checking, as mcsim run's --set "
                        "(repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``mcsim`` command: the arguments parsed first (``--help``, ``--version`` and a
    misused flag answer without importing JAX, in a fraction of a second), then one CPU
    device per core (:mod:`mcsim.cpu_devices`) and the cache of compiled kernels
    (:mod:`mcsim.compile_cache`), then the subcommand."""
    args = _parse(argv)

    def setup() -> int | None:
        use_compile_cache()
        try:
            use_cpu_cores()
        except ValueError as exc:
            print(f"mcsim: error: {exc}", file=sys.stderr)
            return 2
        return None

    return run_command(argv, args=args, setup=setup)


#: when the running command began (after the interpreter and the parsing): a command's
#: closing line gives its whole time, writing included, beside the run's own
_STARTED = time.perf_counter()


def _elapsed() -> float:
    """Seconds since the running command began."""
    return time.perf_counter() - _STARTED


def run_command(argv: list[str] | None = None, *, args: argparse.Namespace | None = None,
                setup: Callable[[], int | None] | None = None) -> int:
    """A subcommand, on the devices JAX already has (tests call this in-process);
    ``args``: ``argv`` already parsed; ``setup``: run after parsing, before the command
    (a status it returns ends the command)."""
    global _STARTED
    _STARTED = time.perf_counter()
    try:
        args = _parse(argv) if args is None else args
        failed = setup() if setup is not None else None
        if failed is not None:
            return failed
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        # the reader went away (``mcsim ... | head``): the files are written; say nothing
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments (argparse exits on ``--help``, ``--version`` and misuse)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser, which knows its flags (for "did you mean")
        commands = next(a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _validate(args) -> int:
    """``mcsim validate``: parse the config (after ``--set``) and say what it holds."""

    try:
        config = load_config(args.config)
        config = _with_overrides_warned(config, args.set)
    except ConfigError as exc:
        return _bad_input(exc)
    n = len(config.uncertain_parameters())
    changed = f" with {len(args.set)} override{'s' * (len(args.set) != 1)}" \
        if args.set else ""
    print(f"{args.config}{changed}: valid ({config.grid.num_months} months, "
          f"{n} uncertain parameters, {config.simulation.paths:,} paths)")
    return 0


def _target(text: str) -> tuple[str, str]:
    """``--target-se STAT=VALUE`` as (STAT, VALUE); the API checks both."""
    stat, sep, value = text.partition("=")
    if not sep:
        raise ConfigError("--target-se", text, "STAT=VALUE (VALUE a number, or N%)")
    return stat.strip(), value.strip()


def _run(args) -> int:
    """``mcsim run``: simulate a config (and its conditioned pass) and write its report."""
    from .report.outdir import check_output_dir

    try:
        config = load_config(args.config)
        config = _with_overrides_warned(config, args.set)
        config = config.with_simulation(paths=args.paths, seed=args.seed,
                                        chunk_size=args.chunk_size,
                                        variance_reduction=args.variance_reduction)
        out = check_output_dir(args.out, force=args.force)
        ckpt_dir = _checkpoint_dir(args, out)
        # checked by simulate before it runs anything
        targets = dict(_target(t) for t in args.target_se)
        if args.distributed or args.coordinator:
            _initialize_distributed(args)
    except ConfigError as exc:
        return _bad_input(exc)
    # the default OUT.checkpoint is mcsim's by its name; a --checkpoint-dir only if new
    # (known before the lock, whose file lives in it, makes it)
    ckpt_dir_is_ours = args.checkpoint_dir is None or not ckpt_dir.exists()
    process = _process()
    return _holding_locks(out if process[0] == 0 else None, None if targets else ckpt_dir,
                          process, lambda: _run_locked(args, config, ckpt_dir, targets),
                          ckpt_dir_is_ours)


def _process() -> tuple[int, int]:
    """(this process, processes): JAX is imported only when a distributed run started it
    (a refusal by a lock should not wait for JAX's import)."""
    if "jax" not in sys.modules:
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def _holding_locks(out: Path | None, ckpt_dir: Path | None, process: tuple[int, int],
                   command: Callable[[], int], ckpt_dir_is_ours: bool = False) -> int:
    """``command()`` while this process holds the locks on the report directory ``out``
    and its checkpoint directory (:mod:`mcsim.locks`): a second mcsim on either is refused
    in one line (exit 2) before it runs anything; the locks go when the command ends,
    however it ends. Then the checkpoint directory, when mcsim's (``ckpt_dir_is_ours``)
    and empty (its checkpoints were removed, or none was written), is removed."""
    from .locks import checkpoint_lock_file, hold, output_lock_file

    try:
        with contextlib.ExitStack() as held:
            if out is not None:
                held.enter_context(hold(output_lock_file(out), key="--out", value=str(out),
                                        what="report directory"))
            if ckpt_dir is not None:
                held.enter_context(hold(checkpoint_lock_file(ckpt_dir, *process),
                                        key="--checkpoint-dir", value=str(ckpt_dir),
                                        what="checkpoint directory"))
            return command()
    except ConfigError as exc:  # the command turns its own errors into exit statuses
        return _bad_input(exc)
    finally:
        if ckpt_dir is not None and ckpt_dir_is_ours:
            with contextlib.suppress(OSError):
                ckpt_dir.rmdir()  # only when empty; the lock's file is gone by now


def _run_locked(args, config, ckpt_dir: Path, targets: dict) -> int:
    """``mcsim run`` once its input is checked and its directories are locked."""
    import warnings

    from .engine.progress import say

    # said at once, before JAX's import (seconds); the first bar waits for the first chunk
    budget = " at most (--target-se may stop sooner)" if targets else ""
    say(args.progress, f"simulating {config.simulation.paths:,} paths of {args.config}"
                       f"{budget}")

    import jax

    from .api import simulate
    from .checkpoint import checkpoint_file
    from .report import format_summary, write_report

    if args.resume and not checkpoint_file(ckpt_dir, jax.process_index(),
                                           jax.process_count()).exists():
        print(f"mcsim: no checkpoint in {ckpt_dir}; starting from the beginning",
              file=sys.stderr)
    # a precision target stops early at looks, which checkpoints do not cover
    checkpoints = {} if targets else {"checkpoint": ckpt_dir, "resume": args.resume,
                                      "checkpoint_interval": args.checkpoint_interval,
                                      "checkpoint_at_end": False}
    try:
        with warnings.catch_warnings():  # the summary below prints the ESS warning
            warnings.simplefilter("ignore", UserWarning)
            results = simulate(config, dtype=args.dtype, progress=args.progress,
                               target_se=targets,
                               condition=bool(config.observations) and not args.no_condition,
                               **checkpoints)
    except ConfigError as exc:
        return _bad_input(exc)
    if jax.process_index() != 0:  # every process holds the merged results; one writes
        return 0
    if results.precision is not None:  # a run that may stop early says when and why
        from .precision import stop_text

        print(f"mcsim: {stop_text(results.precision, config.simulation.paths)}",
              file=sys.stderr)
    written = _timed_write(args.progress, args.out, lambda on_stage: write_report(
        results, args.out, plots=not args.no_plots, sample_paths=args.save_paths or 0,
        force=args.force, on_stage=on_stage))
    if not isinstance(written, float):
        return written
    out = Path(args.out)
    from .checkpoint import remove_checkpoints

    # the report is safe: the checkpoints are not needed; remove only what this run wrote
    # (the directory, when mcsim's, once the lock's file in it is gone: _holding_locks)
    remove_checkpoints(ckpt_dir, jax.process_count(), remove_directory=False)
    print(format_summary(results))
    print(_closing_line(out, results, written))
    return 0


def _closing_line(out: Path, results, write_seconds: float) -> str:
    """``report written to OUT/ (23.1 s in all: ...)``: the command's whole time, writing
    included (the summary's header gives the run's alone, which is not what one waits)."""
    run = getattr(results.info, "seconds", None)
    cond = results.conditioned
    cond_s = getattr(getattr(cond, "info", None), "seconds", None) if cond is not None \
        else None
    parts = [f"simulating {run:.1f} s"] if run is not None else []
    if cond_s is not None:
        parts.append(f"conditioning {cond_s:.1f} s")
    parts.append(f"writing the report {write_seconds:.1f} s")
    return f"report written to {out}/ ({_elapsed():.1f} s in all: {', '.join(parts)})"


def _timed_write(progress: bool | None, out, write: Callable[[Callable[[str], None]], object]
                 ) -> int | float:
    """:func:`_write` of a report, said on the terminal (it takes seconds: tables, plots,
    report.html) before it starts, with a bar of its parts (each file named as it is
    begun) and with its time when done, so that the run's own time in the summary below
    is not mistaken for the whole command's. ``write(on_stage)`` writes it. Returns the
    seconds it took, or the exit status of a failure."""
    from .engine.progress import progress_bar, progress_shown

    shown = progress_shown(progress)
    if shown:
        print(f"mcsim: writing the report into {out}/ (tables, plots, report.html)",
              file=sys.stderr, flush=True)
    bar = progress_bar(None, progress, desc="mcsim: writing the report",
                       bar_format="{desc} [{elapsed}]{postfix}")

    def on_stage(name: str) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"part {bar.n}: {name}", refresh=False)

    t = time.perf_counter()
    try:
        failed = _write("the report", out, lambda: write(on_stage))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t
    if failed is not None:
        return failed
    if shown:
        print(f"mcsim: report written in {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds


def _sensitivity(args) -> int:
    """``mcsim sensitivity``: Sobol indices and the tornado chart."""
    from .report.outdir import check_output_dir

    try:
        config = load_config(args.config)
        config = _with_overrides_warned(config, args.set)
        config = config.with_simulation(seed=args.seed)
        out = check_output_dir(args.out, force=args.force)
        ckpt_dir = _checkpoint_dir(args, out)
    except ConfigError as exc:
        return _bad_input(exc)
    # the default OUT.checkpoint is mcsim's by its name; a --checkpoint-dir only if new
    ckpt_dir_is_ours = args.checkpoint_dir is None or not ckpt_dir.exists()
    return _holding_locks(out, ckpt_dir, (0, 1), lambda: _sensitivity_locked(
        args, config, out, ckpt_dir), ckpt_dir_is_ours)


def _sensitivity_locked(args, config, out: Path, ckpt_dir: Path) -> int:
    """``mcsim sensitivity`` once its input is checked and its directories are locked."""
    from .checkpoint import remove_checkpoints
    from .report.sensitivity import write_sensitivity
    from .sensitivity import ROWS_FILE, sensitivity

    outputs = None
    if args.output:
        outputs = [n.strip() for part in args.output for n in part.split(",") if n.strip()]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = sensitivity(config, num_base=args.base_rows, by_month=args.by,
                                 outputs=outputs,
                                 num_bootstrap=args.bootstrap, dtype=args.dtype,
                                 checkpoint=ckpt_dir, resume=args.resume,
                                 checkpoint_interval=args.checkpoint_interval,
                                 progress=None)
    except ConfigError as exc:
        return _bad_input(exc.renamed("--output") if exc.key == "outputs" else exc)
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"mcsim: warning: {message}", file=sys.stderr)
    from .engine.progress import say, ticking

    say(None, f"sensitivity: writing the study into {args.out}/ (tables, tornado and "
              "drivers charts)")
    t = time.perf_counter()
    with ticking(None, "mcsim: sensitivity: writing"):
        failed = _write("the sensitivity study", args.out,
                        lambda: write_sensitivity(result, config, out, force=args.force))
    if failed is not None:
        return failed
    say(None, f"sensitivity: written in {time.perf_counter() - t:.1f} s "
              f"({_elapsed():.1f} s in all)")
    # the study is written: its saved rows are not needed; remove only those
    remove_checkpoints(ckpt_dir, 0, remove_directory=False, names=[ROWS_FILE])
    print(f"mcsim sensitivity: {result.num_rows:,} model runs (N = {result.num_base:,}), "
          f"{result.seconds:.1f} s; Sobol indices with "
          f"{result.indices[result.lead].confidence:.0%} bootstrap intervals")
    for name, idx in result.indices.items():
        print(f"  {name}: {_output_summary(result, config, name)}; largest total indices")
        frame = idx.to_frame().head(5)
        signed = result.direction_frame(name)
        for factor, row in frame.iterrows():
            rho = float("nan") if signed is None else \
                signed["rank_correlation"].get(factor, float("nan"))
            sign = f"  rank correlation {rho:+.2f}" if rho == rho else ""
            print(f"    {factor:<26} total {row['total']:.3f} [{row['total_low']:.3f}, "
                  f"{row['total_high']:.3f}]  first {row['first']:.3f} "
                  f"[{row['first_low']:.3f}, {row['first_high']:.3f}]{sign}")
    print(f"written {out}/sensitivity.csv, sensitivity.json, drivers.csv, tornado.png and "
          "drivers.png")
    return 0


def _output_summary(result, config, name: str) -> str:
    """A study output in words with where it sits on the design's base rows: the mean of
    an amount, the median month of an event (and the share not by the horizon), the
    probability of a "by" output."""
    import numpy as np

    from .plots_sensitivity import output_label

    what, unit = output_label(name, result.by_month)
    y = result.base_outputs.get(name)
    if y is None:
        return what
    if unit == "$":
        mean = result.output_means[name]
        for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1.0, "")):
            if abs(mean) >= scale or scale == 1.0:
                return f"{what}, mean ${mean / scale:,.3g}{suffix}"
    if unit == "months":
        labels, T = config.grid.labels, config.grid.num_months
        median = int(np.sort(y)[(len(y) - 1) // 2])
        when = labels[median] if median < T else f"after {labels[-1]}"
        return f"{what}, median {when}, {np.mean(y >= T):.0%} not by {labels[-1]}"
    return f"{what}: {result.output_means[name]:.3f}"


def _with_overrides_warned(config, settings):
    """``--set`` overrides applied, each warning (e.g. correlation pairs dropped for a
    parameter fixed to a number) printed as one line."""
    from .overrides import parse_overrides, with_overrides

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        config = with_overrides(config, parse_overrides(settings))
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"mcsim: warning: {message}", file=sys.stderr)
    return config


def _sweep(args) -> int:
    """``mcsim sweep``: a grid of overrides, one report per point and a comparison."""
    import warnings

    from .overrides import grid_points, parse_sweep, with_overrides
    from .report.outdir import check_output_dir

    try:
        config = load_config(args.config).with_simulation(paths=args.paths, seed=args.seed)
        grid = parse_sweep(args.set)
        out = check_output_dir(args.out, force=args.force)
        ckpt_dir = _checkpoint_dir(args, out)
        # every point checked before a word of the sweep is said (run_sweep checks them
        # again, in microseconds, before its first run)
        with warnings.catch_warnings(record=True) as checked:
            warnings.simplefilter("always", UserWarning)
            for point in grid_points(grid):
                with_overrides(config, point)
    except ConfigError as exc:
        return _bad_input(exc)
    said = dict.fromkeys(str(w.message) for w in checked)  # once each, no source
    for message in said:
        print(f"mcsim: warning: {message}", file=sys.stderr)
    # the default OUT.checkpoint is mcsim's by its name; a --checkpoint-dir only if new
    ckpt_dir_is_ours = args.checkpoint_dir is None or not ckpt_dir.exists()
    return _holding_locks(out, ckpt_dir, (0, 1), lambda: _sweep_locked(
        args, config, grid, ckpt_dir, said), ckpt_dir_is_ours)


def _sweep_locked(args, config, grid, ckpt_dir: Path, said: dict) -> int:
    """``mcsim sweep`` once its input is checked and its directories are locked."""
    import warnings

    from .api import run_sweep
    from .checkpoint import remove_checkpoints
    from .overrides import grid_points
    from .report.sweep import sweep_table, write_sweep
    from .saved import point_files

    count = len(grid_points(grid))
    print(f"sweep: {count} points over {', '.join(grid)}", file=sys.stderr)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            # progress on a terminal: each batch's bar and a line per stage (a sweep of
            # 6 points x 100,000 paths ran 80 s without a word)
            runs = run_sweep(config, grid, dtype=args.dtype, progress=None,
                             batch=not args.no_batch, checkpoint=ckpt_dir,
                             resume=args.resume)
    except ConfigError as exc:
        return _bad_input(exc)
    for message in dict.fromkeys(str(w.message) for w in caught):
        if message not in said:
            print(f"mcsim: warning: {message}", file=sys.stderr)
    from .engine.progress import progress_bar, say

    say(None, f"sweep: writing {count} reports into {args.out}/")
    # a bar of the reports (seconds each: it ticks meanwhile, naming the part begun), and
    # a line as each is written, printed above the bar
    bar = progress_bar(count, None, desc="mcsim: sweep reports", unit="report")

    def written(k: int, name: str) -> None:
        line = f"sweep: report {k} of {count} written ({name}/)"
        if bar is None:
            say(None, line)
            return
        bar.update(1)
        bar.write(f"mcsim: {line}", file=sys.stderr)

    def stage(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name, refresh=False)

    try:
        failed = _write("the sweep", args.out,
                        lambda: write_sweep(runs, args.out, plots=not args.no_plots,
                                            force=args.force, on_point=written,
                                            on_stage=stage))
    finally:
        if bar is not None:
            bar.close()
    if failed is not None:
        return failed
    out = Path(args.out)
    # the sweep is written: its saved points are not needed; remove only those
    remove_checkpoints(ckpt_dir, 0, remove_directory=False,
                       names=point_files(ckpt_dir, count))
    rows = sweep_table(runs)
    keys = list(grid)
    for row in rows:
        point = ", ".join(f"{k}={row[k]}" for k in keys)
        print(f"{point}: median repayment {row['median_repayment_month']} "
              f"[{row['median_repayment_month_ci95_low']}, "
              f"{row['median_repayment_month_ci95_high']}] (95%); "
              f"P(repaid by {row['horizon']}) {row['p_repaid_by_horizon']:.3f} "
              f"± {1.96 * row['p_not_repaid_se']:.3f} (± = 1.96 × SE, 95%)")
    print(f"written {out}/sweep.csv" + ("" if args.no_plots else " and sweep.png"))
    return 0


def _compare(args) -> int:
    """``mcsim compare``: finished runs side by side (or, ``--paired``, two configs on
    common paths)."""
    from .report.compare import compare_text, load_summary, write_compare
    from .report.outdir import check_output_dir

    if args.paired:
        return _compare_paired(args)
    try:
        for flag, given in (("--paths", args.paths), ("--set", args.set)):
            if given:
                raise ConfigError(flag, given if flag == "--paths" else " ".join(given),
                                  "nothing without --paired (report directories are "
                                  "finished runs)")
        summaries = [load_summary(r) for r in args.runs]
        names = _labels(args.names, [Path(r).name for r in args.runs], args.runs)
        if args.out:
            check_output_dir(args.out, force=args.force)
    except ConfigError as exc:
        return _bad_input(exc)
    print(compare_text(summaries, names))
    if args.out:
        failed = _write("the comparison", args.out,
                        lambda: write_compare(summaries, names, args.out, force=args.force))
        if failed is not None:
            return failed
        out = Path(args.out)
        print(f"written {out / 'compare.txt'} and {out / 'compare.png'}")
    return 0


def _labels(text: str | None, defaults: list[str], given: list[str],
            tags: list[str] | None = None) -> list[str]:
    """``--names a,b,...``: one non-empty label per run, all different (a difference of
    two runs is printed as "b - a", so a repeated or empty label would hide which is
    which). Without it, the ``defaults`` (directory or file names), told apart where they
    coincide: by the arguments as given, else by ``tags`` ((1), (2), ...)."""
    if text is None:
        names = defaults
        if len(set(names)) < len(names):
            names = list(given)
        if len(set(names)) < len(names):
            tags = tags or [str(i + 1) for i in range(len(names))]
            names = [f"{n} ({t})" for n, t in zip(defaults, tags, strict=True)]
        return names
    names = [n.strip() for n in text.split(",")]
    if "" in names:
        raise ConfigError("--names", text, f"{len(given)} non-empty comma-separated labels "
                          f"(label {names.index('') + 1} is empty)")
    if len(names) != len(given):
        raise ConfigError("--names", text, f"{len(given)} comma-separated labels, one per "
                          f"run (got {len(names)})")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError("--names", text, f"a different label for each run ({repeated!r} "
                          "is given twice)")
    return names


def _compare_paired(args) -> int:
    """``mcsim compare --paired A.toml B.toml``: B (with ``--set``) minus A on the same
    paths, each difference with its paired error."""
    from .paired import paired_difference, paired_text

    try:
        if len(args.runs) != 2:
            raise ConfigError("--paired", " ".join(args.runs), "two config files A B")
        names = _labels(args.names, [Path(r).stem for r in args.runs], args.runs,
                        tags=["A", "B"])
        config_a = load_config(args.runs[0])
        config_b = _with_overrides_warned(load_config(args.runs[1]), args.set)
        if args.out:  # checked before the paths are run, as every --out is
            from .report.outdir import check_output_dir

            check_output_dir(args.out, force=args.force)
        # progress (default: on a terminal): a line, then a bar of the paths
        result = paired_difference(config_a, config_b, paths=args.paths, dtype=args.dtype,
                                   progress=None)
    except ConfigError as exc:
        return _bad_input(exc)
    sets = "".join(f" --set {t}" for t in args.set)
    header = f"A = {names[0]}: {args.runs[0]}; B = {names[1]}: {args.runs[1]}{sets}"
    text = paired_text(result, (names[0], names[1]))
    print(header)
    print(text)
    if args.out:
        from .paired import write_paired

        failed = _write("the paired comparison", args.out,
                        lambda: write_paired(result, header + "\n" + text, args.out,
                                             force=args.force))
        if failed is not None:
            return failed
        print(f"written {Path(args.out) / 'paired.txt'} and {Path(args.out) / 'paired.csv'}")
    return 0


def _locking_out(command: Callable[[argparse.Namespace], int]
                 ) -> Callable[[argparse.Namespace], int]:
    """``command`` holding the lock on its ``--out`` (:mod:`mcsim.locks`) while it runs,
    once ``--out`` passes its check (else ``command`` itself says what is wrong)."""
    import functools

    @functools.wraps(command)
    def locked(args: argparse.Namespace) -> int:
        from .report.outdir import check_output_dir

        try:
            out = check_output_dir(args.out, force=args.force)
        except ConfigError:
            return command(args)
        return _holding_locks(out, None, (0, 1), lambda: command(args))

    return locked


@_locking_out
def _reproduce(args) -> int:
    """``mcsim reproduce``: rebuild a run from its summary.json alone and run it again."""
    import warnings

    import jax

    from ._version import __version__
    from .api import reproduce
    from .report import format_summary, write_report
    from .report.outdir import check_output_dir

    try:
        check_output_dir(args.out, force=args.force)
        with warnings.catch_warnings():  # the summary below prints the ESS warning
            warnings.simplefilter("ignore", UserWarning)
            results, prov = reproduce(args.summary)
    except ConfigError as exc:
        return _bad_input(exc)
    then = (prov.get("mcsim_version"), prov.get("jax_version"))
    if then != (__version__, jax.__version__):
        print(f"mcsim: note: written by mcsim {then[0]} with JAX {then[1]}; this is mcsim "
              f"{__version__} with JAX {jax.__version__}: last bits may differ",
              file=sys.stderr)
    written = _timed_write(None, args.out, lambda on_stage: write_report(
        results, args.out, plots=not args.no_plots, force=args.force, on_stage=on_stage))
    if not isinstance(written, float):
        return written
    out = Path(args.out)
    print(format_summary(results))
    print(_closing_line(out, results, written))
    return 0


COMMANDS = {"run": _run, "reproduce": _reproduce, "sensitivity": _sensitivity,
            "sweep": _sweep, "compare": _compare, "validate": _validate}


if __name__ == "__main__":
    sys.exit(main())
