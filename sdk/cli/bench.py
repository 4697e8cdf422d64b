"""``salsdk bench`` / ``python -m salsdk bench``: measure, compare with PyTorch eager and the papers, report.

Actions (first positional argument, default ``run``):

* ``run``: benchmark ``--model NAME`` (converted on the fly into cached bundles) and/or ``--bundles DIR...`` on
  every runtime available here, print the table (PyTorch eager as reference row, ratio column), the targets and
  (``--claims``) the papers' claims; store the rows in the database; write report.md, results.json and charts;
* ``claims``: the papers' claims next to our counted figures and the latest stored measurements;
* ``import FILE...``: LiteRT ``benchmark_model`` logs or Android demo JSON into the database;
* ``report``: Markdown/JSON/PNG report of stored runs (``--run``, ``--model``, ``--machine`` or ``--all``);
* ``plan``: the on-device plan for phones (``benchmark_model`` command lines per TFLite bundle and delegate).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from salsdk.errors import InputError

from . import add_weights_source

HELP = "latency, memory, size and MACs per format and runtime, against the papers"

ACTIONS = ("run", "claims", "import", "report", "plan")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk bench``."""
    parser.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                        help="run (default), claims, import FILE..., report, plan")
    parser.add_argument("files", nargs="*",
                        help="for import: benchmark_model output files, Android demo JSON or the web page's JSON")
    parser.add_argument("--model", help="zoo model name (bundles are converted on the fly and cached)")
    add_weights_source(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    parser.add_argument("--bundles", nargs="+", type=Path, metavar="DIR",
                        help="bundle folders, or folders of bundles, to benchmark (or to enrich imports/plan)")
    parser.add_argument("--formats", default=None,
                        help="formats converted for --model (default onnx-fp32,onnx-int8,tflite-fp32,tflite-int8,openvino-bf16)")
    parser.add_argument("--size", action="append", default=None, metavar="HxW",
                        help="input size(s), e.g. 192x256 or 480x640,192x256 (default: native, +480x640 for KDSalBox)")
    parser.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: all usable cores)")
    parser.add_argument("--runtimes", default=None,
                        help="only these: pytorch,onnxruntime,litert,coreml,executorch,openvino")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up runs after the first run (default 3)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per measurement (default 20; plan: 50 on the phone)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="time budget of the timed runs per measurement (default 20; at least 3 runs)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds per measurement, best kept (noisy machines; default 1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the operator profiles")
    parser.add_argument("--browser", action="store_true",
                        help="also run the ONNX/TFLite bundles in headless Chromium (onnxruntime-web, LiteRT.js; WASM) "
                             "at the same thread counts, in the same run")
    parser.add_argument("--no-gpu", action="store_true", help="do not measure CUDA even if a GPU is present")
    parser.add_argument("--min-cc", type=float, default=0.99, help="fidelity gate of on-the-fly conversions")
    parser.add_argument("--cache-dir", type=Path, help="converted bundles (default $SALSDK_HOME/bench/bundles)")
    parser.add_argument("--claims", action="store_true", help="print the papers' claims next to ours")
    parser.add_argument("--db", type=Path, help="results database (default $SALSDK_HOME/bench/results.sqlite)")
    parser.add_argument("--no-store", action="store_true", help="do not store the results in the database")
    parser.add_argument("--out", type=Path, help="report folder (default $SALSDK_HOME/bench/reports/<run>)")
    parser.add_argument("--no-report", action="store_true", help="do not write report files")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or conversion log")
    parser.add_argument("--run", dest="run_id", help="report: this stored run (default: the latest)")
    parser.add_argument("--machine", help="report: only rows of this machine id")
    parser.add_argument("--all", action="store_true", help="report: every stored row")
    parser.add_argument("--device-name", help="import: name of the phone (default: from the file, or 'android')")
    parser.add_argument("--format", dest="import_format", help="import: format key if the log does not say it")
    parser.add_argument("--delegates", default="cpu,xnnpack,gpu,nnapi", help="plan: delegates (default all four)")


def _ints(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} {text!r}: use comma-separated integers, e.g. 1,2") from None


def _sizes(values: list[str] | None) -> list[tuple[int, int]] | None:
    from .convert import parse_size

    if not values:
        return None
    return [parse_size(v.strip()) for item in values for v in item.split(",") if v.strip()]


def _config(args: argparse.Namespace):
    from salsdk.bench.measure import DEFAULT_FORMATS, BenchConfig

    weights = None if args.random_init else (args.weights or "official")
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip()) if args.formats else DEFAULT_FORMATS
    runtimes = tuple(r.strip() for r in args.runtimes.split(",")) if args.runtimes else None
    args.runs = 20 if args.runs is None else args.runs
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1:
        raise InputError("--runs and --rounds must be >= 1, --warmup >= 0")
    return BenchConfig(model=args.model, weights=weights, seed=args.seed, bundles=list(args.bundles or []),
                       sizes=_sizes(args.size), threads=_ints(args.threads, "--threads"), formats=formats,
                       runtimes=runtimes, warmup=args.warmup, runs=args.runs, max_seconds=args.max_seconds,
                       min_runs=min(3, args.runs), rounds=args.rounds, profile=not args.no_profile,
                       cache_dir=args.cache_dir, min_cc=args.min_cc, gpu=False if args.no_gpu else None)


def _store(args: argparse.Namespace):
    from salsdk.bench.store import ResultStore

    return ResultStore(args.db)


def _log(args: argparse.Namespace):
    return (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))


def _finish(args: argparse.Namespace, rows, title: str, default_out: Path | None) -> None:
    """Targets, claims, table, report files, database: shared by run, import and report."""
    from salsdk.bench.claims import claims_table, claims_text
    from salsdk.bench.report import text_table, write_report
    from salsdk.bench.targets import check_all, targets_text

    targets = check_all(rows)
    models = []
    for r in rows:
        if r.model not in models:
            models.append(r.model)
    try:
        claims = claims_table([m for m in models if _has_claims(m)], rows)
    except Exception as exc:  # noqa: BLE001 - a foreign model name (import) has no card
        claims = []
        print(f"(claims unavailable: {exc})", file=sys.stderr)
    if args.json:
        json.dump([r.to_dict() for r in rows], sys.stdout, indent=2, default=str)
        print()
        return
    print()
    print(text_table(rows))
    ref_missing = {(r.model, r.size_label) for r in rows if r.source == "measured"} - {
        (r.model, r.size_label) for r in rows if r.is_reference and r.status == "ok"}
    for model, size in sorted(ref_missing):
        print(f"note: no PyTorch eager reference for {model} at {size}: no ratio for its rows")
    if targets:
        print("\nTargets (best artifact with CC >= 0.99, same machine, same run):")
        print(targets_text(targets))
    if args.claims and claims:
        print("\nPapers' claims vs ours:")
        print(claims_text(claims))
    if not args.no_report and default_out is not None:
        out = args.out or default_out
        written = write_report(rows, out, targets, claims, title=title)
        print(f"\nreport: {written['markdown']} (+ results.json" + (", " + ", ".join(
            Path(written[k]).name for k in ("latency", "pareto", "memory") if k in written) if len(written) > 2
            else "") + ")")


def _has_claims(model: str) -> bool:
    from salsdk.registry import get_card

    try:
        return bool(get_card(model).claims)
    except Exception:  # noqa: BLE001
        return False


def run_bench(args: argparse.Namespace) -> int:
    from salsdk.bench.measure import benchmark
    from salsdk.bench.store import default_db_path

    if not args.model and not args.bundles:
        if args.claims:
            return run_claims(args)
        raise InputError("salsdk bench needs --model NAME and/or --bundles DIR (or --claims, import, report, plan)")
    rows = benchmark(_config(args), progress=not args.quiet, log=_log(args))
    if args.browser:
        rows = _with_browser_rows(args, rows)
    if not args.no_store and rows:
        store = _store(args)
        store.add(rows)
        print(f"stored {len(rows)} rows in {store.path} (run {rows[0].run_id})", file=sys.stderr)
    home = (args.db.parent if args.db else default_db_path().parent) / "reports"
    _finish(args, rows, f"salsdk bench: {', '.join(sorted({r.model for r in rows}))}",
            home / (rows[0].run_id if rows else "empty"))
    return 0 if any(r.status == "ok" for r in rows) else 1


def _with_browser_rows(args: argparse.Namespace, rows: list) -> list:
    """``rows`` plus the same bundles measured in headless Chromium at the same thread counts (same machine)."""
    from salsdk.bench.browser import measure_browser
    from salsdk.bench.measure import attach_ratios
    from salsdk.bench.mobile import enrich_from_bundles

    bundles = sorted({Path(r.bundle) for r in rows if r.bundle and r.source == "measured"})
    threads = sorted({r.threads for r in rows if r.threads}) or [1]
    machines = {r.threads: r.machine_info for r in rows if r.machine_info and r.source == "measured"}
    found = measure_browser(bundles, threads, machines, runs=args.runs, warmup=args.warmup, log=_log(args))
    for row in found:
        row.run_id = rows[0].run_id if rows else ""
    return attach_ratios(rows + enrich_from_bundles(found, bundles))


def run_claims(args: argparse.Namespace) -> int:
    """Claims of --model (or of every model with claims) against the stored measurements."""
    from salsdk.bench.claims import claims_markdown, claims_table, claims_text, models_with_claims

    models = [args.model] if args.model else models_with_claims()
    store = _store(args)
    rows = [r for m in models for r in store.query(model=m)]
    claims = claims_table(models, rows)
    if args.json:
        json.dump([c.to_dict() for c in claims], sys.stdout, indent=2)
        print()
    else:
        print(claims_text(claims))
        if not rows:
            print("\n(no stored measurements: run `salsdk bench --model NAME` for our latency figures)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "claims.md").write_text(claims_markdown(claims) + "\n", encoding="utf-8")
        print(f"\nwritten: {args.out / 'claims.md'}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from salsdk.bench.measure import discover_bundles, new_run_id
    from salsdk.bench.mobile import enrich_from_bundles, import_file

    if not args.files:
        raise InputError("salsdk bench import needs files: benchmark_model output (.txt) or Android demo JSON")
    run_id = new_run_id()
    rows = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        try:
            rows += import_file(path, args.device_name, args.model, args.import_format)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
    if args.bundles:
        rows = enrich_from_bundles(rows, discover_bundles(args.bundles))
    for r in rows:
        r.run_id = run_id
    if not args.no_store:
        store = _store(args)
        store.add(rows)
        print(f"imported {len(rows)} rows into {store.path} (run {run_id})", file=sys.stderr)
    _finish(args, rows, "salsdk bench import", args.out)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from salsdk.bench.store import default_db_path

    store = _store(args)
    if args.all or args.model or args.machine:
        rows = store.query(model=args.model, machine_id=args.machine, run_id=args.run_id)
    else:
        run_id = args.run_id or store.latest_run_id(source=None)
        if run_id is None:
            raise InputError(f"no stored results in {store.path}: run `salsdk bench --model NAME` first")
        rows = store.query(run_id=run_id)
    if not rows:
        raise InputError("no stored rows match")
    from salsdk.bench.measure import attach_ratios

    rows = attach_ratios(rows)
    out = args.out or (args.db.parent if args.db else default_db_path().parent) / "reports" / (
        args.run_id or ("all" if args.all else rows[-1].run_id))
    _finish(args, rows, "salsdk bench report", out)
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from salsdk.bench.measure import discover_bundles
    from salsdk.bench.mobile import device_plan, plan_markdown, plan_script

    if not args.bundles:
        raise InputError("salsdk bench plan needs --bundles DIR (TFLite bundles to run on the phone)")
    threads = tuple(_ints(args.threads, "--threads")) or (1, 4)
    delegates = tuple(d.strip() for d in args.delegates.split(",") if d.strip())
    plan = device_plan(discover_bundles(args.bundles), threads=threads, delegates=delegates, runs=args.runs or 50)
    if not plan:
        raise InputError("no TFLite bundles among --bundles: convert with --format tflite first")
    print(plan_markdown(plan))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "plan.sh").write_text(plan_script(plan), encoding="utf-8")
        (args.out / "plan.md").write_text(plan_markdown(plan) + "\n", encoding="utf-8")
        (args.out / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
        print(f"\nwritten: {args.out / 'plan.sh'} (run it with a phone attached; then `salsdk bench import "
              f"logs/*.txt --bundles ...`), plan.md, plan.json")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch on the action."""
    if args.action == "run" and args.files:
        raise InputError(f"unexpected arguments {' '.join(args.files)} (files are for `salsdk bench import`)")
    return {"run": run_bench, "claims": run_claims, "import": run_import, "report": run_report,
            "plan": run_plan}[args.action](args)
