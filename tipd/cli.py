"""The ``tipd`` command line: one sub-command per job, each a thin layer over a module."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tipd import __version__
from tipd.errors import UserError
from tipd.taxonomy import SURFACES

if TYPE_CHECKING:
    from tipd.config import Settings
    from tipd.curve import Curve
    from tipd.train.fuse import VoteSettings


def _cmd_synth(args: argparse.Namespace) -> int:
    if args.sheet is not None:
        from tipd.synth.sheets import class_sheet

        surfaces = [args.surface] if args.surface else list(SURFACES)
        path = class_sheet(surfaces, args.sheet, per_class=args.per_class, seed=args.seed)
        print(f"wrote {path}")
        return 0
    if args.compare is not None:
        from tipd.synth.sheets import comparison_sheet

        if args.fixtures is None or not args.fixtures.is_dir():
            raise UserError(f"--compare needs --fixtures FOLDER of real scans, got {args.fixtures}")

        path = comparison_sheet(args.fixtures, args.compare, seed=args.seed)
        print(f"wrote {path}")
        return 0
    if args.surface is None or args.out is None or args.n is None:
        print("tipd synth: give --surface, --n and --out (or --sheet FILE.png)", file=sys.stderr)
        return 2
    from tipd.synth.shards import write_dataset

    manifest = write_dataset(
        args.surface,
        args.n,
        args.out,
        seed=args.seed,
        pixels=args.pixels,
        shard_size=args.shard_size,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(f"wrote {manifest}")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from tipd.logs import configure
    from tipd.sim.microscope import DEFAULT_SCAN_NM, ScanSettings, VirtualMicroscope
    from tipd.sim.server import SimEndpoints, SimServer
    from tipd.sim.tipstate import TipRates

    configure(json_lines=args.json_logs)
    settings = ScanSettings(
        pixels=args.pixels,
        scan_size_nm=args.scan_size or DEFAULT_SCAN_NM[args.surface],
        line_time_s=args.line_time,
        chunk_lines=args.chunk_lines,
        bias_V=args.bias,
        setpoint_A=args.setpoint,
    )
    rates = TipRates(change_per_line=args.change_per_line)
    mic = VirtualMicroscope(
        args.surface,
        seed=args.seed,
        settings=settings,
        rates=rates,
        start_tip=args.start_tip,
        name=args.microscope,
        executed=args.executed or args.truth.with_name(args.truth.stem + ".executed.jsonl"),
    )
    from tipd.curve import CurveError

    try:
        server = SimServer(
            mic,
            SimEndpoints(args.frames, args.control),
            truth_path=args.truth,
            max_frames=args.max_frames,
            action_time_scale=args.action_time_scale,
            curve=_curve_from_args(args),
        )
    except CurveError as exc:
        print(f"tipd sim: {exc}", file=sys.stderr)
        return 2
    return server.run()


def _add_frame_source_args(p: argparse.ArgumentParser, microscope: str) -> None:
    """``--frames``, ``--microscope`` and ``--surface`` of a command that publishes frames."""
    from tipd.sim.server import DEFAULT_FRAMES_ENDPOINT

    p.add_argument(
        "--frames", default=DEFAULT_FRAMES_ENDPOINT, help="tipd's frame endpoint, to connect to"
    )
    p.add_argument("--microscope", default=microscope, help="microscope id the frames carry")
    p.add_argument("--surface", help="surface the frames name (default: none, generic model)")


def _add_curve_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("CURVE (required when an endpoint binds beyond loopback)")
    g.add_argument("--curve-secret", type=Path, help="our key pair (.key_secret from tipd keys)")
    g.add_argument("--curve-allowed", type=Path, help="folder of client public keys we accept")
    g.add_argument("--curve-server-key", type=Path, help="public key of the server we connect to")


def _curve_from_args(args: argparse.Namespace) -> Curve | None:
    """The CURVE setup the flags describe, or None when no key is given; bad keys exit 2."""
    from tipd.curve import CurveError, from_paths

    try:
        return from_paths(args.curve_secret, args.curve_allowed, args.curve_server_key)
    except CurveError as exc:
        print(f"tipd: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _cmd_keys(args: argparse.Namespace) -> int:
    from tipd.curve import CurveError, generate

    try:
        public, secret = generate(args.directory, args.name, replace=args.replace)
    except (CurveError, OSError) as exc:
        print(f"tipd keys: {exc}", file=sys.stderr)
        return 2
    print(f"public key {public}  (give it to the peers)\nsecret key {secret}  (keep it here)")
    return 0


def _cmd_bridge(args: argparse.Namespace) -> int:
    import signal

    from tipd.bridges.nanonis import BridgeConfig, NanonisBridge
    from tipd.bridges.nanonis_tcp import NanonisClient, NanonisError
    from tipd.config import state_dir
    from tipd.curve import CurveError
    from tipd.logs import configure
    from tipd.safety import Limits

    configure(json_lines=args.json_logs)
    limits = Limits(
        max_bias_V=args.max_bias,
        max_crash_nm=args.max_crash,
        max_move_nm=args.max_move,
    )
    config = BridgeConfig(
        microscope=args.microscope,
        frames=args.frames,
        control=args.control,
        channel=args.channel,
        surface=args.surface,
        poll_s=args.poll,
        limits=limits,
        executed=args.executed or state_dir() / "nanonis-executed.jsonl",
    )
    try:
        client = NanonisClient(args.host, args.port, timeout_s=args.timeout)
        bridge = NanonisBridge(client, config, curve=_curve_from_args(args))
    except (NanonisError, CurveError, OSError) as exc:
        print(f"tipd bridge: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, bridge.stop)
    try:
        return bridge.serve(max_frames=args.max_frames)
    except NanonisError as exc:
        print(f"tipd bridge: {exc}", file=sys.stderr)
        return 1
    finally:
        bridge.close()
        client.close()


def _cmd_watch(args: argparse.Namespace) -> int:
    from tipd.watch import watch, write_sheet

    result = watch(args.frames, args.n, args.timeout)
    print(
        f"{len(result.frames)} frames, {result.chunks} line chunks, "
        f"{result.assembled_equal} frames identical to their assembled chunks, "
        f"{len(result.errors)} rejected messages"
    )
    if args.sheet is not None and result.frames:
        print(f"wrote {write_sheet(result.frames, args.sheet)}")
    return 0 if result.frames else 1


def _has_train_extra(command: str) -> bool:
    """True when torch and friends import; otherwise say how to get them."""
    try:
        import tipd.train.pipeline  # noqa: F401
    except ImportError as exc:
        print(
            f"tipd {command} needs the training extra: pip install 'tipd[train]' ({exc})",
            file=sys.stderr,
        )
        return False
    return True


def _cmd_train(args: argparse.Namespace) -> int:
    if not _has_train_extra("train"):
        return 2
    from tipd.models import ModelError, find
    from tipd.train.fit import resolve_device
    from tipd.train.pipeline import InitFromError, TrainConfig, train_surface

    out = args.out or Path("models") / args.surface
    cfg = TrainConfig(
        surface=args.surface,
        out=out,
        reports=args.reports,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        member_seconds=args.member_seconds,
        epochs=args.epochs,
        trees=args.trees,
        data=args.data,
        workers=args.workers,
        channels=tuple(args.channels),
        device=args.device,
        patience=args.patience,
        width=args.width,
        n_stack=args.n_stack,
        vote=_vote_settings(args),
    )
    try:
        resolve_device(args.device)
        if args.init_from:
            cfg.init_from = find(args.init_from)
    except (ValueError, RuntimeError, ModelError) as exc:  # RuntimeError: a device torch rejects
        print(f"tipd train: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = train_surface(cfg)
    except InitFromError as exc:  # raised before any data is made
        print(f"tipd train: {exc}", file=sys.stderr)
        return 2
    ens = manifest.metrics["table"]["Ensemble"]
    print(
        f"{manifest.name}: AUROC {ens['auroc']}, balanced accuracy {ens['balanced_accuracy']}, "
        f"precision {ens['precision']}, good/bad AUROC {ens['good_bad_auroc']}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if not _has_train_extra("evaluate"):
        return 2
    from tipd.train.evaluate import evaluate

    path = evaluate(args.model, args.reports, args.data, args.n, args.seed, args.workers)
    print(f"wrote {path}")
    return 0


def _cmd_revote(args: argparse.Namespace) -> int:
    if not _has_train_extra("revote"):
        return 2
    from tipd.models import ModelError, find
    from tipd.train.revote import revote

    settings = _vote_settings(args)
    try:
        folder = find(args.model)
        revote(folder, args.out, args.reports, settings, args.n_stack, args.workers)
    except (ModelError, ValueError) as exc:
        print(f"tipd revote: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_familiarity(args: argparse.Namespace) -> int:
    if not _has_train_extra("familiarity"):
        return 2
    from tipd.models import ModelError, find
    from tipd.train.familiar import fit_model

    try:
        path = fit_model(find(args.model), args.n_train, args.n_val, args.workers)
    except (ModelError, ValueError) as exc:
        print(f"tipd familiarity: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _vote_settings(args: argparse.Namespace) -> VoteSettings:
    """The :class:`tipd.train.fuse.VoteSettings` of ``--vote``, ``--logits-only`` and
    ``--no-mirror``."""
    from tipd.train.fuse import VoteSettings

    return VoteSettings(
        stacked=args.vote == "stacked", mirror=not args.no_mirror, hidden=not args.logits_only
    )


def _add_vote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vote",
        choices=["stacked", "weighted"],
        default="stacked",
        help="voted confidence: a logistic regression per label over every member's "
        "logits and hidden features (stacked, the default) or the members' weighted mean",
    )
    p.add_argument(
        "--logits-only",
        action="store_true",
        help="the stacked vote reads only the members' logits, not also the hidden features "
        "their last layers read",
    )
    p.add_argument(
        "--no-mirror",
        action="store_true",
        help="nets see the frame only as scanned (default: also mirrored left to right, "
        "twice the inference)",
    )
    p.add_argument(
        "--n-stack",
        type=int,
        default=6000,
        help="synthetic frames (a seed of their own) the stacked vote is fitted on",
    )


def _settings(command: str, path: Path | None, **overrides: Any) -> Settings:
    """tipd's settings from ``path`` (and ``TIPD_*``); bad ones are one line and exit 2."""
    from tipd import config

    try:
        return config.load(path, **overrides)
    except config.ConfigError as exc:
        print(f"tipd {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _cmd_run(args: argparse.Namespace) -> int:
    from tipd.logs import configure
    from tipd.service import run

    configure(json_lines=args.json_logs, level=args.log_level)
    overrides = {
        "advisory": True if args.advisory else (False if args.live else None),
        "model": args.model,
        "journal": args.journal,
    }
    references = []
    for path in args.reference:
        from tipd.readers import ReaderError, read_any

        try:
            references.append(read_any(path))
        except ReaderError as exc:
            print(f"tipd run: --reference: {exc}", file=sys.stderr)
            return 2
    return run(_settings("run", args.config, **overrides), args.config, references)


def _cmd_operator(args: argparse.Namespace) -> int:
    """``tipd hold | release | reset | status``: one request to the running daemon."""
    from tipd.operator import NoAnswerError, ask, describe
    from tipd.protocol import OperatorRequest, ProtocolError

    endpoint = args.endpoint or _settings(args.op, args.config).endpoints.operator
    frame_id = getattr(args, "frame_id", None)
    request = OperatorRequest(
        op=args.op, microscope=args.microscope, who=args.who, frame_id=frame_id
    )
    try:
        reply = ask(endpoint, request, args.timeout, _curve_from_args(args))
    except (NoAnswerError, ProtocolError) as exc:
        print(f"tipd {args.op}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(reply.model_dump_json())
    else:
        print("\n".join(describe(reply)))
    return 0 if reply.ok else 1


def _cmd_events(args: argparse.Namespace) -> int:
    from tipd.events import tail

    endpoint = args.endpoint or _settings("events", args.config).endpoints.events
    topics = ", ".join(args.topic) or "all topics"
    print(f"listening to tipd's events at {endpoint} ({topics}; Ctrl-C to stop)", file=sys.stderr)

    def quiet() -> None:
        print(
            f"nothing from {endpoint} yet: is tipd running there (`tipd run`)? It sends a "
            "health event every few seconds",
            file=sys.stderr,
        )

    try:
        lines = tail(
            endpoint,
            args.topic,
            args.seconds,
            _curve_from_args(args),
            quiet,
            frames_only=args.frames_only,
        )
        for line in lines:
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_journal(args: argparse.Namespace) -> int:
    import time as _time

    from tipd import journal

    since = _time.time() - args.minutes * 60 if args.minutes else None
    path = args.path or _settings("journal", args.config).journal
    table = "commands" if args.commands else "frames"
    try:
        states = journal.states(args.state) if args.state else None
        kind = "frame" if args.frames_only else None
        rows = journal.query(path, table, args.last, states, since, kind)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if args.csv:
        journal.write_csv(rows, sys.stdout)
        return 0
    for row in rows:
        if args.json:
            print(journal.as_json(row))
        elif args.commands:
            stamp = _time.strftime("%H:%M:%S", _time.localtime(row["t_sent"]))
            print(
                f"{stamp} {row['microscope']} {row['action']} {row['params']} "
                f"{row['status']}: {row['detail'] or ''}"
            )
        else:
            stamp = _time.strftime("%H:%M:%S", _time.localtime(row["t"]))
            known = row.get("familiarity")
            seen = "" if known is None else f"familiarity {known:.3f} "
            print(
                f"{stamp} {row['microscope']} {row['frame_id']} {row['kind']:<6} "
                f"{row['status']:<10} {row['state'] or '':<16} {seen}{row['detail'] or ''}"
            )
    if not rows and not (args.json or args.csv):
        print(f"no {table} rows in {path} match", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from tipd.readers import SUFFIXES, find_scans
    from tipd.replay import replay

    if not args.folder.is_dir():
        raise UserError(f"{args.folder}: not a folder")
    if not find_scans(args.folder):
        raise UserError(f"{args.folder}: no scan files in it (known: {', '.join(SUFFIXES)})")

    n = replay(
        args.folder,
        args.frames,
        args.microscope,
        args.surface,
        args.rate,
        args.line_time,
        args.chunk_lines,
        args.loop,
    )
    return 0 if n else 1


def _cmd_watch_folder(args: argparse.Namespace) -> int:
    from tipd.folder import watch_folder

    if not args.folder.is_dir():
        raise UserError(f"{args.folder}: not a folder")
    watch_folder(
        args.folder,
        args.frames,
        args.microscope,
        args.surface,
        args.poll,
        args.settle,
        args.existing,
        args.max_frames,
    )
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    import getpass

    import uvicorn

    from tipd.models import find, load_manifest
    from tipd.web.app import WebConfig, create_app
    from tipd.web.labels import Labelling

    settings = _settings("web", args.config)
    web = settings.web
    host, _, port = (args.listen or web.listen).rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--listen: expected HOST:PORT, got {args.listen or web.listen!r}")
    token = None
    token_file = args.token_file or web.token_file
    if token_file is not None:
        token = token_file.read_text().strip()
        if len(token) < 16:
            raise UserError(f"{token_file}: the token must be at least 16 characters")
    elif host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"listening on {host} (beyond loopback) needs a token: --token-file FILE")
    if args.scans is not None and not args.scans.is_dir():
        raise UserError(f"--scans {args.scans}: not a folder")
    source = args.scans or settings.archive.folder
    source.mkdir(parents=True, exist_ok=True)  # the archive, before the daemon's first frame
    model = args.model or settings.model
    classes = load_manifest(find(model), verify=False).classes
    labelling = Labelling(source, args.labels or web.labels, classes, _judge(model))
    curve = _curve_from_args(args)
    app = create_app(
        WebConfig(
            events=settings.endpoints.events,
            preview=settings.endpoints.preview,
            operator=settings.endpoints.operator,
            curve=curve,
            labelling=labelling,
            webhook=args.webhook or web.webhook,
            token=token,
            who=f"web:{getpass.getuser()}",
        )
    )
    print(
        f"tipd web on http://{host}:{port}/ (labelling {source} with {model}'s classes); "
        f"daemon events {settings.endpoints.events}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=host, port=int(port), log_level="warning", timeout_graceful_shutdown=5)
    return 0


def _judge(model: str) -> Callable[[Path], dict[str, Any]]:
    """tipd's verdict on a scan file with model ``model`` (for labelling any folder)."""
    from tipd.ensemble import Ensemble
    from tipd.models import find
    from tipd.readers import read_any

    @functools.cache
    def ensemble() -> Ensemble:  # loaded on the first scan without a verdict, if any
        return Ensemble(find(model))

    def judge(path: Path) -> dict[str, Any]:
        decision = ensemble().classify([read_any(path)])[0]
        return {
            "model": ensemble().manifest.name,
            "state": decision.state,
            "confidence": decision.confidence,
            "familiarity": decision.familiarity,
        }

    return judge


def _cmd_classify(args: argparse.Namespace) -> int:
    from tipd.classify import classify_files

    return classify_files(args.files, args.model, args.json, args.direction, args.sheet)


def _cmd_reprocess(args: argparse.Namespace) -> int:
    """``tipd reprocess``: a lab's scans judged again on Dask, the table and its report."""
    try:
        from tipd.reprocess.report import write_report
        from tipd.reprocess.run import reprocess
    except ImportError as exc:
        print(
            f"tipd reprocess: needs Dask and pyarrow ({exc.name} is missing): "
            "pip install 'tipd[reprocess]'",
            file=sys.stderr,
        )
        return 2
    from tipd.models import ModelError, find

    models = [args.model] + ([args.against] if args.against and args.against != "archive" else [])
    for m in models:
        try:
            find(m)
        except ModelError as exc:
            print(f"tipd reprocess: {exc}", file=sys.stderr)
            return 2
    missing = [str(p) for p in args.sources if not p.exists()]
    if missing:
        print(f"tipd reprocess: no such source: {', '.join(missing)}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    bar = tqdm(unit="scan", desc="reprocess", dynamic_ncols=True, disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = reprocess(
            args.sources, models, args.out, args.workers, args.scheduler, args.batch,
            progress=progress, archived=args.against == "archive",
        )  # fmt: skip
    except KeyboardInterrupt:
        bar.close()
        print(
            f"tipd reprocess: stopped; every batch written is kept in {args.out}.parts, and "
            "the same command goes on from there",
            file=sys.stderr,
        )
        return 130
    bar.close()
    print(
        f"{summary.scans} scans in {summary.batches} batches ({summary.skipped} written before), "
        f"{summary.unreadable} unreadable, on {summary.workers} workers in "
        f"{summary.seconds:.0f} s"
    )
    for failure in summary.failed:
        print(f"batch not written (run again for it): {failure}", file=sys.stderr)
    if not summary.complete:
        return 1
    print(f"wrote {args.out}")
    report = write_report(args.out, args.report or args.out.with_suffix(".report"), args.labels)
    print(f"wrote {report}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit 2), pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Help(argparse.HelpFormatter):
    """Help that ends each option's text with its default, where it has one to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or not action.option_strings
            or default in (None, False, [], argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub: Any, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    """A sub-command parser whose description is its help and whose options show defaults."""
    kw.setdefault("description", f"tipd {name}: {help}.")
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, formatter_class=_Help, **kw)
    return parser


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number of ``kind`` above zero."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above zero, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    from tipd.sim.microscope import DEFAULT_SCAN_NM
    from tipd.sim.server import DEFAULT_CONTROL_ENDPOINT, DEFAULT_FRAMES_ENDPOINT
    from tipd.sim.tipstate import TIP_KINDS

    parser = _Parser(prog="tipd", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"tipd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "synth", help="render labelled synthetic frames, or contact sheets")
    p.add_argument(
        "--surface",
        choices=[*SURFACES, "generic"],
        help="surface to render (--sheet: all when not given)",
    )
    p.add_argument("--n", type=_positive(int), help="number of frames (with --out)")
    p.add_argument("--out", type=Path, help="output folder for shards and manifest.json")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same frames")
    p.add_argument("--pixels", type=_positive(int), default=128, help="frame side in pixels")
    p.add_argument("--shard-size", type=_positive(int), default=1000, help="frames per shard file")
    p.add_argument("--workers", type=_positive(int), default=1, help="render processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--sheet", type=Path, help="write a contact sheet (one row per class) here")
    p.add_argument(
        "--per-class", type=_positive(int), default=8, help="frames per class on the sheet"
    )
    p.add_argument("--compare", type=Path, help="write a synthetic-vs-real sheet here")
    p.add_argument(
        "--fixtures",
        type=Path,
        help="folder of real scans for --compare (required with it)",
    )
    p.set_defaults(func=_cmd_synth)

    p = _command(sub, "keys", help="make a CURVE key pair for an endpoint")
    p.add_argument("directory", type=Path, help="where to write NAME.key and NAME.key_secret")
    p.add_argument("--name", default="tipd", help="key pair name")
    p.add_argument("--replace", action="store_true", help="overwrite an existing pair of that name")
    p.set_defaults(func=_cmd_keys)

    p = _command(sub, "bridge", help="put a real controller on wire protocol v1")
    bridges = p.add_subparsers(dest="controller", required=True)
    p = _command(bridges, "nanonis", help="a Nanonis controller over its TCP interface")
    p.add_argument("--host", default="127.0.0.1", help="Nanonis TCP interface host")
    p.add_argument("--port", type=int, default=6501, help="Nanonis TCP interface port")
    p.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="seconds per Nanonis call"
    )
    _add_frame_source_args(p, "stm1")
    p.add_argument("--control", default=DEFAULT_CONTROL_ENDPOINT, help="command endpoint to bind")
    p.add_argument("--channel", type=int, help="scan-buffer index of Z (default: found by name)")
    p.add_argument(
        "--poll", type=_positive(float), default=0.2, help="seconds between buffer polls"
    )
    p.add_argument("--max-frames", type=_positive(int), help="stop after this many frames")
    p.add_argument("--max-bias", type=float, default=8.0, help="bridge limit: |bias|, V")
    p.add_argument("--max-crash", type=float, default=3.0, help="bridge limit: crash depth, nm")
    p.add_argument("--max-move", type=float, default=1000.0, help="bridge limit: one move, nm")
    p.add_argument(
        "--executed",
        type=Path,
        help="file that keeps executed command ids across a crash of the bridge, written "
        "before each action (default: nanonis-executed.jsonl in tipd's state folder, "
        "~/.local/state/tipd or $STATE_DIRECTORY)",
    )
    _add_curve_args(p)
    p.add_argument("--json-logs", action="store_true", help="JSON log lines on stdout")
    p.set_defaults(func=_cmd_bridge)

    p = _command(sub, "sim", help="run the virtual microscope")
    p.add_argument("--microscope", default="stm1", help="microscope id the frames carry")
    p.add_argument("--surface", choices=SURFACES, default="au111", help="sample surface")
    p.add_argument("--seed", type=int, default=0, help="random seed of sample and tip")
    p.add_argument(
        "--frames",
        default=DEFAULT_FRAMES_ENDPOINT,
        help="tipd's frame endpoint, to connect to",
    )
    p.add_argument(
        "--control",
        default=DEFAULT_CONTROL_ENDPOINT,
        help="controller endpoint to bind (tipd connects to it)",
    )
    p.add_argument("--pixels", type=_positive(int), default=256, help="frame side in pixels")
    p.add_argument(
        "--scan-size",
        type=_positive(float),
        help="frame side, nm (default per surface: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_SCAN_NM.items())
        + ")",
    )
    p.add_argument(
        "--line-time",
        type=_positive(float),
        default=5.0 / 256,
        help="seconds per scan line (default 5 s per 256-line frame)",
    )
    p.add_argument(
        "--chunk-lines", type=_positive(int), default=16, help="lines per published chunk"
    )
    p.add_argument("--bias", type=float, default=0.5, help="reported sample bias, V")
    p.add_argument("--setpoint", type=float, default=100e-12, help="reported setpoint, A")
    p.add_argument(
        "--start-tip",
        choices=[*TIP_KINDS, "mixed"],
        default="sharp",
        help="the tip's state at the start (mixed: a random one per frame)",
    )
    _add_curve_args(p)
    p.add_argument(
        "--change-per-line",
        type=float,
        default=1 / 4000,
        help="probability of a spontaneous tip change per line",
    )
    p.add_argument(
        "--truth",
        type=Path,
        default=Path("sim-truth.jsonl"),
        help="JSON-lines log of the true tip state of every frame and every action",
    )
    p.add_argument(
        "--executed",
        type=Path,
        help="file that keeps executed command ids across a crash of the sim, written before "
        "each action (default: beside the truth log, NAME.executed.jsonl)",
    )
    p.add_argument("--max-frames", type=_positive(int), help="stop after this many frames")
    p.add_argument(
        "--action-time-scale",
        type=float,
        default=1.0,
        help="multiply the time actions take (0: instant)",
    )
    p.add_argument("--json-logs", action="store_true", help="JSON log lines on stdout")
    p.set_defaults(func=_cmd_sim)

    p = _command(sub, "train", help="train, evaluate and export one surface's ensemble")
    p.add_argument(
        "--surface", choices=[*SURFACES, "generic"], required=True, help="taxonomy to train"
    )
    p.add_argument("--out", type=Path, help="model folder (default models/<surface>)")
    p.add_argument(
        "--reports", type=Path, default=Path("reports"), help="folder for the report and figures"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="real labelled scans: one sub-folder per class of the surface's taxonomy",
    )
    p.add_argument(
        "--n-train",
        type=int,
        help="synthetic training frames (default on the CPU 24,000, 12,000 for generic; on a "
        "GPU 36,000)",
    )
    p.add_argument("--n-val", type=_positive(int), default=1500, help="synthetic validation frames")
    p.add_argument("--n-test", type=_positive(int), default=2000, help="synthetic test frames")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training frames")
    p.add_argument(
        "--member-seconds",
        type=float,
        help="wall-clock time per ensemble candidate, times its share (the first VGG-BN 1.2, "
        "its two forks 0.9 each; default on the CPU 250 s, 160 s on H:Si, which trains four full "
        "nets and the tip-change net; on a GPU 60 s, 48 s on H:Si); Table-I-only candidates get "
        "60 s or half this",
    )
    p.add_argument("--epochs", type=int, help="most epochs per net (default 30; GPU 40)")
    p.add_argument(
        "--patience",
        type=int,
        help="epochs without improvement before a net stops (default 5; GPU 6)",
    )
    p.add_argument(
        "--width",
        type=float,
        help="width multiplier of the CNNs but RW (default 0.25; 0.125 for generic on the "
        "CPU; see docs/models.md for what width costs in accuracy)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (the GPU when torch sees one), cpu, cuda, cuda:N",
    )
    p.add_argument("--trees", type=int, default=5000, help="random-forest trees (paper: 5000)")
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="model name or folder: the chain's first net (generic: each net) goes on from that "
        "model's best-weighted member, at 0.3 of its learning rate, instead of from scratch "
        "(e.g. a shipped model, on your own labelled scans)",
    )
    p.add_argument("--workers", type=_positive(int), default=2, help="threads / data processes")
    p.add_argument(
        "--channels",
        nargs="+",
        default=["height"],
        choices=["height", "autocorrelation"],
        help="model input channels",
    )
    _add_vote_args(p)
    p.set_defaults(func=_cmd_train)

    p = _command(
        sub, "revote", help="build a trained model's vote again (stacked, mirrored), nets unchanged"
    )
    p.add_argument("--model", required=True, help="model name or folder")
    p.add_argument("--out", type=Path, help="write the model here (default: in place)")
    p.add_argument(
        "--reports", type=Path, default=Path("reports"), help="where its report is rewritten"
    )
    p.add_argument("--workers", type=_positive(int), default=2, help="threads / data processes")
    _add_vote_args(p)
    p.set_defaults(func=_cmd_revote)

    p = _command(
        sub,
        "familiarity",
        help="fit how a model tells frames like its training frames from others (unfamiliar)",
    )
    p.add_argument("--model", required=True, help="model name or folder")
    p.add_argument(
        "--n-train", type=int, default=3000, help="training-seed frames for the class centres"
    )
    p.add_argument(
        "--n-val", type=int, default=1000, help="validation-seed frames for the reference"
    )
    p.add_argument("--workers", type=_positive(int), default=2, help="render processes")
    p.set_defaults(func=_cmd_familiarity)

    p = _command(sub, "evaluate", help="Table I of a shipped ensemble on labelled frames")
    p.add_argument("--model", required=True, help="model name or folder")
    p.add_argument(
        "--data",
        type=Path,
        help="real labelled scans: one sub-folder per class of the model's taxonomy "
        "(default: synthetic frames)",
    )
    p.add_argument("--n", type=_positive(int), default=2000, help="synthetic frames (no --data)")
    p.add_argument("--seed", type=int, default=99, help="synthetic seed (never a training one)")
    p.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="folder the report (MODEL.md, or MODEL-DATA.md for --data) and figures go to",
    )
    p.add_argument("--workers", type=_positive(int), default=2, help="render processes")
    p.set_defaults(func=_cmd_evaluate)

    p = _command(sub, "classify", help="classify scan files offline")
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="scan files (.sxm, .Z_mtrx, .gwy, .sm4, .npy) or folders of them",
    )
    p.add_argument("--model", default=None, help="model name or folder (default: generic)")
    p.add_argument("--json", action="store_true", help="one JSON object per file and line")
    p.add_argument(
        "--direction",
        choices=["forward", "backward"],
        default="forward",
        help="which scan direction of each file",
    )
    p.add_argument(
        "--sheet", type=Path, help="also write a contact sheet of the scans and verdicts here"
    )
    p.set_defaults(func=_cmd_classify)

    p = _command(
        sub, "reprocess", help="judge an archive again with a model, on Dask, into Parquet",
        description="tipd reprocess: every scan of the sources judged again by the daemon's "
        "decision step with --model (and --against), on a Dask cluster, into one Parquet table "
        "and a report of what each model's policy would have decided.",
    )  # fmt: skip
    p.add_argument(
        "sources", nargs="+", type=Path,
        help="the frame archive, folders of scans, scan files, or journals (.sqlite)",
    )  # fmt: skip
    p.add_argument("--model", default="generic", help="model name or folder")
    p.add_argument(
        "--against",
        help="a second model to compare with, or 'archive' for the verdicts the archive kept",
    )
    p.add_argument("--out", type=Path, required=True, help="the table (TABLE.parquet)")
    p.add_argument("--workers", type=_positive(int), help="local worker processes (default: cores)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler instead (tcp://…)")
    p.add_argument("--batch", type=_positive(int), default=64, help="scans per task")
    p.add_argument("--labels", type=Path, help="tipd web's labels folder, to compare with")
    p.add_argument("--report", type=Path, help="the report's folder (default: TABLE.report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reprocess)

    p = _command(sub, "run", help="run the daemon")
    p.add_argument("--config", type=Path, help="TOML settings (see config/tipd.toml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--advisory",
        action="store_true",
        help="decide and report, never command (the default unless the config says otherwise)",
    )
    mode.add_argument(
        "--live",
        action="store_true",
        help="send commands to the controller (within the safety limits); only after "
        "watching tipd in advisory mode on this microscope",
    )
    p.add_argument("--model", help="default model (when a frame names no known surface)")
    p.add_argument(
        "--journal",
        type=Path,
        help="SQLite journal (default: the settings', journal.sqlite in tipd's state folder)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        help="a scan file showing this sample with a good tip: later frames of its area and "
        "size are judged against it (repeatable)",
    )
    p.add_argument("--json-logs", action="store_true", help="JSON log lines on stdout (journald)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log lines shown",
    )
    p.set_defaults(func=_cmd_run)

    from tipd.operator import who

    for op, what in (
        ("hold", "halt every command to a microscope (withdraw aside) until released"),
        ("release", "end a hold"),
        ("reset", "clear needs_operator after looking at the tip"),
        ("reference", "say a frame shows a good tip: later frames of its area are judged by it"),
        ("status", "what each microscope's safety gate refuses now, and why"),
    ):
        p = _command(sub, op, help=what, description=f"tipd {op}: {what}.")
        if op == "status":
            p.add_argument("microscope", nargs="?", help="microscope id (default: all)")
        else:
            p.add_argument("microscope", help="microscope id, e.g. stm1")
        if op == "reference":
            p.add_argument(
                "frame_id", nargs="?", help="the frame (default: the microscope's latest)"
            )
        p.add_argument("--config", type=Path, help="tipd's settings: its operator endpoint")
        p.add_argument(
            "--endpoint", help="operator endpoint (default: the config's, tcp://127.0.0.1:5553)"
        )
        p.add_argument("--who", default=who(), help="journaled as the operator")
        p.add_argument("--timeout", type=_positive(float), default=5.0, help="seconds to wait")
        p.add_argument("--json", action="store_true", help="the reply as one JSON object")
        _add_curve_args(p)
        p.set_defaults(func=_cmd_operator, op=op)

    p = _command(sub, "events", help="tail the daemon's events in a readable form")
    p.add_argument(
        "--endpoint", help="events endpoint (default: the settings', tcp://127.0.0.1:5552)"
    )
    p.add_argument("--config", type=Path, help="tipd's settings (TOML), for the endpoint")
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        help="topic prefix, e.g. state.stm1 (repeatable; default all)",
    )
    p.add_argument("--seconds", type=_positive(float), help="stop after this long (default: never)")
    p.add_argument(
        "--frames-only",
        action="store_true",
        help="leave out the decisions on rolling windows of lines mid-frame",
    )
    _add_curve_args(p)
    p.set_defaults(func=_cmd_events)

    p = _command(sub, "journal", help="query the journal")
    p.add_argument(
        "--path",
        type=Path,
        help="journal file (default: the one the settings name, as `tipd run` uses it)",
    )
    p.add_argument("--config", type=Path, help="tipd's settings (TOML), for the journal path")
    p.add_argument("--last", type=_positive(int), default=20, help="newest this many rows")
    p.add_argument(
        "--state",
        help="only decisions of this state: good or bad (on every taxonomy), unfamiliar, "
        "unknown, or a class name such as double_tip",
    )
    p.add_argument("--minutes", type=_positive(float), help="only the last this many minutes")
    p.add_argument(
        "--commands", action="store_true", help="commands sent (or not) instead of decisions"
    )
    p.add_argument(
        "--frames-only",
        action="store_true",
        help="decisions on whole frames only, not on rolling windows mid-frame",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per row (ISO 8601 times)")
    out.add_argument("--csv", action="store_true", help="CSV with a header row, for a notebook")
    p.set_defaults(func=_cmd_journal)

    p = _command(sub, "replay", help="publish a folder of real scans as frames")
    p.add_argument("folder", type=Path, help="folder of scan files (searched recursively)")
    _add_frame_source_args(p, "replay")
    p.add_argument("--rate", type=_positive(float), default=1.0, help="whole frames per second")
    p.add_argument(
        "--line-time", type=_positive(float), help="publish line by line, seconds per line"
    )
    p.add_argument(
        "--chunk-lines", type=_positive(int), default=16, help="lines per chunk (--line-time)"
    )
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.set_defaults(func=_cmd_replay)

    p = _command(
        sub,
        "watch-folder",
        help="publish each new scan the acquisition software saves into a folder, once "
        "its file is complete",
    )
    p.add_argument("folder", type=Path, help="folder the scans are saved in (and its sub-folders)")
    _add_frame_source_args(p, "stm1")
    p.add_argument(
        "--settle",
        type=_positive(float),
        default=2.0,
        help="seconds a file must stay unchanged to count as complete",
    )
    p.add_argument("--poll", type=_positive(float), default=1.0, help="seconds between looks")
    p.add_argument(
        "--existing", action="store_true", help="also publish the scans already there at start"
    )
    p.add_argument("--max-frames", type=_positive(int), help="stop after this many frames")
    p.set_defaults(func=_cmd_watch_folder)

    p = _command(
        sub,
        "web",
        help="the live page, labelling, Prometheus metrics and webhooks, beside the daemon",
    )
    p.add_argument("--config", type=Path, help="tipd's settings (TOML): endpoints, [web]")
    p.add_argument("--listen", help="HOST:PORT (default: the settings', 127.0.0.1:8080)")
    p.add_argument(
        "--scans",
        type=Path,
        help="label this folder of scans (default: the daemon's frame archive)",
    )
    p.add_argument(
        "--labels", type=Path, help="folder labels go to (default: labels/ in the state folder)"
    )
    p.add_argument(
        "--model", help="whose classes to label with (default: the settings' model, generic)"
    )
    p.add_argument("--webhook", help="incoming-webhook URL for alerts (Slack, Mattermost, Zulip)")
    p.add_argument(
        "--token-file", type=Path, help="token browsers must give; required beyond loopback"
    )
    _add_curve_args(p)
    p.set_defaults(func=_cmd_web)

    p = _command(sub, "watch", help="bind the frame endpoint and show what arrives")
    p.add_argument("--frames", default=DEFAULT_FRAMES_ENDPOINT, help="endpoint to bind")
    p.add_argument(
        "--n", type=_positive(int), default=6, help="stop after this many complete frames"
    )
    p.add_argument("--timeout", type=_positive(float), default=120.0, help="give up after seconds")
    p.add_argument("--sheet", type=Path, help="write a contact sheet of the frames here")
    p.set_defaults(func=_cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command. A user error (a path that is not there or not readable, a file
    that is not what it should be, a bad endpoint) is one line on stderr and exit 2."""
    import sqlite3

    import zmq

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (UserError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"tipd {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (sqlite3.DatabaseError, zmq.ZMQError) as exc:
        if args.command == "run":  # the daemon reports its own start errors; others are bugs
            raise
        print(f"tipd {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


def _one_line(exc: Exception) -> str:
    """An error's message, with the file it names (``OSError``) first."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {(exc.strerror or str(exc)).lower()}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
