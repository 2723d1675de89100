"""`adapter-engine runs`: the leaderboard of every run directory (ours and the seed's), and the
user's words about a run (label, tags, note), archiving and deleting.

    adapter-engine runs [DIR] [--where EXPR] [--state S ...] [--archived] [--json | --md]
    adapter-engine runs --sweep ID [--metric M]      a sweep's runs, and which settings mattered
    adapter-engine runs --diff RUN_A RUN_B           how two runs differ (settings, code, data, host)
    adapter-engine runs label RUN TEXT | tag RUN +best -draft | note RUN TEXT
    adapter-engine runs archive RUN... | unarchive RUN... | delete RUN... --yes

RUN is a run directory, or a run's name inside the runs directory.
"""

from __future__ import annotations

import argparse
import json
import sys

from common.text import plural, printable

ACTIONS = ("label", "tag", "note", "archive", "unarchive", "delete")
REFERENCE_NOTE = ("† the reference's figures, from its acceptance_metrics.json: E acc@γ is its sd_consecutive_gamma5, "
                  "speedup its speedup_e2e (docs/SEED.md)")


def _listing_flags(p: argparse.ArgumentParser) -> None:
    from engine.rundir.hparams import METRICS
    from engine.rundir.states import STATES
    from engine.rundir.summary import SORT_KEYS

    p.add_argument("--runs", metavar="DIR", help="runs directory (default: $ADAPTER_RUNS, else runs/ beside the "
                                                 "nearest adapters.toml from here up, else ./runs)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON rows")
    fmt.add_argument("--md", action="store_true", help="print a Markdown table like the seed's Results table "
                                                       "(done runs unless --state or --all says otherwise)")
    p.add_argument("--sort", default="best_val_loss", choices=SORT_KEYS, metavar="KEY",
                   help=f"sort column, best first (one of: {', '.join(SORT_KEYS)}; default best_val_loss)")
    p.add_argument("--where", metavar="EXPR", help="filter, e.g. 'speedup>1.2 level=L4 tag=best' (see docs/TUI.md)")
    p.add_argument("--state", nargs="+", choices=STATES + ("unreadable",), metavar="STATE",
                   help="only runs in these states")
    p.add_argument("--all", action="store_true", help="every state (with --md)")
    p.add_argument("--archived", action="store_true", help="include archived runs")
    p.add_argument("--sweep", metavar="ID", help="the runs of one sweep, then its settings ranked by effect")
    p.add_argument("--metric", default="best_val_loss", choices=METRICS, metavar="M",
                   help=f"the metric --sweep ranks settings by (one of: {', '.join(METRICS)})")
    p.add_argument("--rescan", action="store_true",
                   help="read every run's files, not the run index (RUNS/.index.db), and rebuild the index")
    p.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="how two runs differ: settings, lineage (code version, data fingerprint, host)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="leaderboard of every run; label, tag, note, archive or delete runs",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    # Everything after the first word is parsed by run(): `tag RUN -draft` must keep its -draft.
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="[DIR | ACTION RUN ...]")
    _listing_flags(p)
    p.set_defaults(func=run)


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _params(n: int | None) -> str:
    return "–" if n is None else (f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _json_rows(rows: list[dict]) -> str:
    """A JSON list with one row a line: as readable as indented JSON for a few runs, and at
    10,000 runs written by the C encoder (indent= falls back to the pure-Python one)."""
    if not rows:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]"


def run(args: argparse.Namespace) -> int:
    if args.words and args.words[0] in ACTIONS:
        return _action(args.words[0], args.words[1:], args)
    listing = argparse.ArgumentParser(prog="adapter-engine runs", add_help=False)
    listing.add_argument("dir", nargs="?", metavar="DIR")
    _listing_flags(listing)
    more = listing.parse_args(args.words)
    for name, value in vars(more).items():  # flags given before or after DIR
        if value not in (None, False) and name != "dir":
            setattr(args, name, value)
    return _list(args, more.dir)


def _list(args: argparse.Namespace, directory: str | None) -> int:
    from common.errors import UserInputError
    from engine.rundir.layout import resolve_runs_dir
    from engine.rundir.query import FilterError, parse_filter
    from engine.rundir.index import load_indexed
    from engine.rundir.summary import sort_runs

    if directory and args.runs:
        raise UserInputError("give the runs directory once: DIR or --runs DIR")
    runs = resolve_runs_dir(directory or args.runs)
    root = runs.path
    if not root.is_dir():
        raise UserInputError(f"runs directory {runs.describe()} does not exist; train something or pass DIR")
    if args.diff:
        return _diff(root, args.diff, args)
    try:
        where = parse_filter(args.where or "")
    except FilterError as exc:
        raise UserInputError(f"--where: {exc}") from None
    states = args.state or (("done",) if args.md and not args.all else None)
    every = load_indexed(root, rescan=args.rescan, notice=lambda line: print(line, file=sys.stderr))
    rows = [r for r in every if (args.archived or not r.archived) and where.matches(r)
            and (states is None or r.state in states) and (args.sweep is None or r.sweep == args.sweep)]
    if args.sweep and not rows:
        raise UserInputError(f"no run of sweep {args.sweep!r} under {root} yet (its jobs may still be queued: "
                             "`adapter-engine queue ls`)")
    rows = sort_runs(rows, args.sort)
    if not rows and not (args.where or args.state or args.json):
        from engine.rundir.layout import SEARCH_DEPTH

        print(f"no runs under {runs.describe()}: looked {SEARCH_DEPTH} levels down for directories holding "
              "config.json, history.json, status.json or acceptance_metrics.json" + ("" if not args.md else
              " (--md lists done runs; --all lists every state)"), file=sys.stderr)
        return 0
    effects = None
    if args.sweep:
        from engine.rundir.hparams import rank

        effects = rank(rows, args.metric)
    if args.json:
        if effects is not None:
            from engine.rundir.hparams import as_rows

            print(json.dumps({"runs": [r.as_dict() for r in rows], "settings": as_rows(effects)}, indent=2))
        else:
            print(_json_rows([r.as_dict() for r in rows]))
        return 0
    if args.md:
        measured = any(r.speedup_measured is not None for r in rows)
        print("| Run | Level | Params | Val Loss | cos_sim | Accept@0.90 | Speedup (est.) |"
              + (" Speedup (measured) | τ |" if measured else ""))
        print("|-----|-------|--------|----------|---------|-------------|----------------|"
              + ("--------------------|---|" if measured else ""))
        for r in rows:
            accept = "–" if r.accept_90 is None else f"{100 * r.accept_90:.1f}%"
            speedup = "–" if r.speedup is None else f"{r.speedup:.2f}x" + ("†" if r.eval_source == "reference" else "")
            name = r.run + (f" ({r.label})" if r.label else "") + ("" if r.state == "done" else f" [{r.state}]")
            name = printable(name).replace("|", "\\|")  # a user's label: no escapes, no extra column
            print(f"| {name} | {r.level} | {_params(r.params)} | {_fmt(r.best_val_loss, '.4f')} | "
                  f"{_fmt(r.cos_sim, '.3f')} | {accept} | {speedup} |"
                  + (f" {_fmt(r.speedup_measured, '.2f')}{'x' if r.speedup_measured else ''} | {_fmt(r.tau, '.2f')} |"
                     if measured else ""))
        if effects is not None:
            from engine.rundir.hparams import markdown

            print(f"\nWhich settings matter in sweep {args.sweep} ({plural(len(rows), 'run')}):\n")
            print(markdown(effects, args.metric))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    reference = any(r.eval_source == "reference" for r in rows)
    table = Table(title=Text(f"Runs in {printable(runs.describe())}"), caption=REFERENCE_NOTE if reference else None)
    columns = ("run", "level", "params", "state", "epochs", "val loss", "cos", "acc@.90", "cons@.90",
               "E acc@γ", "est. ×", "meas. ×", "τ", "time", "tags")
    for name in columns:
        table.add_column(name, justify="left" if name in ("run", "level", "state", "tags") else "right")
    for r in rows:
        epochs = f"{r.epochs_done}/{r.num_epochs}" if r.num_epochs else str(r.epochs_done)
        state = r.state if not r.error else f"{r.state} ({r.error})"
        mark = "†" if r.eval_source == "reference" else ""
        name = (r.run + (f" · {r.label}" if r.label else "") + (" (archived)" if r.archived else "")
                + (" (linked, read-only)" if r.linked else ""))
        name, state = Text(printable(name)), Text(printable(state))  # user-written: no markup, no escapes
        table.add_row(name, r.level, _params(r.params), state, epochs, _fmt(r.best_val_loss, ".4f"),
                      _fmt(r.cos_sim, ".3f"), _fmt(r.accept_90, ".3f"), _fmt(r.consecutive_90, ".2f"),
                      _fmt(r.expected_tokens, ".2f") + mark, _fmt(r.speedup, ".2f") + mark,
                      _fmt(r.speedup_measured, ".2f"), _fmt(r.tau, ".2f"), _duration(r.duration_s),
                      Text(printable(" ".join(r.tags))))
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    if effects is not None:
        ranking = Table(title=f"Which settings matter: {args.metric} (spread of group means)")
        for name in ("setting", "effect", "best", "rank corr.", "groups (mean, runs)"):
            ranking.add_column(name, justify="left" if name in ("setting", "best", "groups (mean, runs)") else "right")
        for e in effects:
            ranking.add_row(e.name, f"{e.effect:.4g}", e.best, "–" if e.correlation is None else f"{e.correlation:+.2f}",
                            "; ".join(f"{label}: {mean:.4g} ({n})" for label, mean, n in e.groups))
        console.print(ranking)
    return 0


def _diff(root, refs: list[str], args: argparse.Namespace) -> int:
    from common.fileio import ReadError, read_json
    from common.errors import UserInputError
    from engine.rundir.diff import config_diff
    from engine.rundir.layout import CONFIG, find_run

    runs = [find_run(root, ref) for ref in refs]
    configs = []
    for run in runs:
        try:
            configs.append(read_json(run / CONFIG))
        except ReadError as exc:
            raise UserInputError(f"{run.name}: {exc}") from None
    rows = config_diff(configs)
    if args.json:
        print(json.dumps([{"key": key, runs[0].name: a, runs[1].name: b} for key, (a, b) in rows], indent=2,
                         default=str))
        return 0
    if not rows:
        print(f"{runs[0].name} and {runs[1].name} have the same settings, code and data")
        return 0
    width = max(len(key) for key, _ in rows)
    print(f"{'':{width}}  {runs[0].name}  →  {runs[1].name}")
    for key, (a, b) in rows:
        print(f"{key:{width}}  {a}  →  {b}")
    return 0


def _tag_words(words: list[str]) -> list[str]:
    """`-draft` is a tag to remove, not an option: put `--` before the changes so argparse keeps
    them, after moving the options (wherever they are) in front of it."""
    from common.errors import UserInputError

    options, changes, rest = [], [], list(words)
    while rest:
        word = rest.pop(0)
        if word == "--":
            changes += rest
            break
        if word in ("-h", "--help"):
            options.append(word)
        elif word == "--runs" or word.startswith("--runs="):
            options += [word] if "=" in word else [word, *rest[:1]]
            rest = rest if "=" in word else rest[1:]
        elif word.startswith("--"):
            raise UserInputError(f"runs tag: unknown option {word}; a tag starts with one + (add) or - (remove)")
        else:
            changes.append(word)
    return options + ["--", *changes]


def _action(action: str, words: list[str], args: argparse.Namespace) -> int:
    from common.errors import UserInputError
    from engine.rundir.delete import delete_run
    from engine.rundir.layout import find_run, resolve_runs_dir
    from engine.rundir.meta import tag_changes, update_meta

    p = argparse.ArgumentParser(prog=f"adapter-engine runs {action}")
    if action in ("label", "note"):
        p.add_argument("run", metavar="RUN")
        p.add_argument("text", nargs="?", help="" if action == "note" else "the label ('' removes it)")
        if action == "note":
            p.add_argument("--append", action="store_true", help="add a line to the note instead of replacing it")
        p.add_argument("--runs", metavar="DIR")
        opts = p.parse_args(words)
    elif action == "tag":
        p.add_argument("run", metavar="RUN")
        p.add_argument("changes", nargs="*", metavar="+TAG|-TAG")
        p.add_argument("--runs", metavar="DIR")
        opts = p.parse_args(_tag_words(words))
    else:
        p.add_argument("run", nargs="+", metavar="RUN")
        if action == "delete":
            p.add_argument("--yes", action="store_true", help="really delete (nothing is deleted without it)")
        p.add_argument("--runs", metavar="DIR")
        opts = p.parse_args(words)
    root = resolve_runs_dir(opts.runs or args.runs).path
    targets = [find_run(root, ref) for ref in (opts.run if isinstance(opts.run, list) else [opts.run])]
    if action == "tag":
        if not opts.changes:
            raise UserInputError("say which tags: +TAG adds, -TAG removes")
        added, removed = tag_changes(opts.changes)
        meta = update_meta(targets[0], add_tags=added, remove_tags=removed)
        print(f"{targets[0].name}: tags {' '.join(meta.tags) or '(none)'}")
    elif action == "label":
        meta = update_meta(targets[0], label=opts.text or None, clear_label=not opts.text)
        print(f"{targets[0].name}: label {meta.label or '(none)'}")
    elif action == "note":
        text = opts.text if opts.text is not None else sys.stdin.read()
        if opts.append:
            from engine.rundir.meta import read_meta

            current, _ = read_meta(targets[0])
            text = (current.note.rstrip("\n") + "\n" + text).lstrip("\n") if current.note else text
        update_meta(targets[0], note=text)
        print(f"{targets[0].name}: note saved ({len(text)} characters)")
    elif action in ("archive", "unarchive"):
        for target in targets:
            update_meta(target, archived=action == "archive")
            print(f"{target.name}: {action}d" + (" (hidden; `runs --archived` lists it)" if action == "archive" else ""))
    else:
        if not opts.yes:
            raise UserInputError(f"this deletes {plural(len(targets), 'run')} and their checkpoints for good; add --yes "
                                 "(or archive them: `runs archive` hides a run and keeps it)")
        for target in targets:
            left = delete_run(target, root)
            print(f"deleted {target.name}" + (f"; left {', '.join(left)} (not a run's file)" if left else ""))
    return 0
