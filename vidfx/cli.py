"""The `vidfx` command line.

Exit codes: 0 success; 2 bad graph, parameter or command line; 3 media or file-system
trouble (missing/corrupt input, unwritable output, full disk, missing weights); 1 an
internal error (a bug: rerun with --debug for the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from .core.errors import VidfxError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_MEDIA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 128 + 13  # as a tool killed by SIGPIPE


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every output is aborted cleanly."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP (render farms, `timeout`, `docker stop`, a closed
    terminal) raise ``Terminated``; the previous handlers come back afterwards."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    signals = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])  # no SIGHUP on Windows
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vidfx")
    except PackageNotFoundError:
        return "0+unknown"


# Features with training/evaluation commands: `vidfx train vsr ...` -> vidfx.vsr.train:main(argv).
FEATURES = ("vsr", "segment", "jumpcut", "fill", "translate")
# Training commands of their own: `vidfx train distill ...` -> vidfx.fill.distill:main(argv).
TRAIN_ONLY = {"distill": "vidfx.fill.distill"}


class Progress:
    """A one-line progress bar on stderr: frames, fps and ETA."""

    def __init__(self, stream=sys.stderr, min_interval: float = 0.25):
        self.stream = stream
        self.start = time.monotonic()
        self.last = 0.0
        self.min_interval = min_interval
        self.tty = stream.isatty()

    def __call__(self, done: int, total: int, note: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.min_interval and done < total:
            return
        if not self.tty and now - self.last < 5 and done < total:
            return  # logs get a line every few seconds, not a flood
        self.last = now
        elapsed = now - self.start
        fps = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / fps if fps > 0 else 0.0
        width = 30
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        line = f"[{bar}] {done}/{total} frames  {fps:5.1f} fps  elapsed {_clock(elapsed)}  ETA {_clock(eta)}"
        if note:
            line += f"  {note}"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def cluster(self, state) -> None:
        """A cluster run's progress (``vidfx.scale.backend.RayProgress``): frames in finished
        segments, with segments done and retried."""
        note = f"segments {state.segments_done}/{state.segments}, {state.retried} retried"
        self(state.done, state.total, note)

    def finish(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _parse_frames(text: str) -> tuple[int | None, int | None]:
    start, sep, end = text.partition(":")
    try:
        a = int(start) if start else None
        b = int(end) if end else None
    except ValueError:
        raise VidfxError(f"--frames {text}: expected A:B with frame numbers, e.g. 0:100") from None
    if not sep or (a is not None and b is not None and b <= a) or (a is not None and a < 0):
        raise VidfxError(f"--frames {text}: expected A:B with 0 <= A < B, e.g. 0:100")
    return a, b


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise VidfxError(f"--set {item}: expected node.param=value")
        out[key] = value
    return out


def _parse_output_options(args) -> dict[int, dict[str, str]]:
    """``--codec``/``--bit-depth``/``--start-number`` (for the first output, the one ``-o``
    names) and ``--output-option [N:]KEY=VALUE`` (output N, counted from 1) by output index."""
    options: dict[int, dict[str, str]] = {}
    for key in ("codec", "bit_depth", "start_number"):
        value = getattr(args, key, None)
        if value is not None:
            options.setdefault(0, {})[key] = value
    for item in getattr(args, "output_option", None) or []:
        where, sep, rest = item.partition(":")
        index = 0
        if sep and where.isdigit():
            index, item = int(where) - 1, rest
        key, sep, value = item.partition("=")
        if not sep or not key or index < 0:
            raise VidfxError(f"--output-option {item}: expected [N:]KEY=VALUE, e.g. 2:codec=ffv1")
        options.setdefault(index, {})[key.replace("-", "_")] = value
    return options


def _load_graph(args):
    from .core.graph import load

    graph = load(args.graph, input=args.input, output=args.output, set=_parse_sets(args.set))
    for index, options in _parse_output_options(args).items():
        graph.set_output_options(index, options)
    if getattr(args, "strict", False):
        for name, node in graph.nodes.items():
            if node.type_name == "read":
                graph.set_param(name, "strict", True)
    return graph


def cmd_run(args) -> int:
    graph = _load_graph(args)
    frames = _parse_frames(args.frames) if args.frames else None
    progress = None if args.quiet else Progress()
    if args.backend == "local":
        for flag in ("address", "workers", "segment_frames", "work_dir"):
            if getattr(args, flag) is not None:
                raise VidfxError(f"--{flag.replace('_', '-')} is an option of --backend ray")
        summary = graph.run(device=args.device, frames=frames, progress=progress)
    else:
        options = {k: getattr(args, k) for k in ("address", "workers", "segment_frames", "work_dir")}
        summary = graph.run(
            device=args.device,
            frames=frames,
            progress=progress.cluster if progress else None,
            backend=args.backend,
            resume=args.resume,
            **{k: v for k, v in options.items() if v is not None},
        )
    if progress:
        progress.finish()
    if not args.quiet:
        for label, count in summary.frames.items():
            print(f"wrote {count} frames to {label}", file=sys.stderr)
        print(f"done in {summary.seconds:.1f} s ({summary.fps:.1f} fps)", file=sys.stderr)
        for message in summary.messages:
            print(f"note: {message}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args) -> int:
    graph = _load_graph(args)
    infos = graph.dry_run(device=args.device)
    print(f"{args.graph}: ok ({len(graph.nodes)} nodes, {len(graph.outputs)} outputs)")
    for label, info in infos.items():
        print(f"  {label}: {info.width}x{info.height}, {info.num_frames} frames at {info.fps}")
    return EXIT_OK


def cmd_nodes(args) -> int:
    from .core.params import Param
    from .core.schemas import load_schemas, param_from

    schemas = load_schemas()  # cached: listing nodes needs no torch
    types = schemas["nodes"]
    if args.name:
        if args.name not in types:
            raise VidfxError(f"unknown node type {args.name!r}; known: {', '.join(types)}")
        types = {args.name: types[args.name]}
    if args.json:
        print(json.dumps(types, indent=2))
        return EXIT_OK
    for name, schema in types.items():
        inputs = schema["inputs"]
        counted = "1 or more inputs" if inputs < 0 else f"{inputs} input{'s' if inputs != 1 else ''}"
        print(f"{name} ({counted}): {schema['description']}")
        for p in schema["params"]:
            print(f"    {param_from(p).describe()}")
    if not args.name:
        print("outputs (options under each entry of `outputs:`):")
        outputs: list[Param] = [param_from(p) for p in schemas["outputs"]]
        for p in outputs:
            print(f"    {p.describe()}")
    return EXIT_OK


def cmd_probe(args) -> int:
    from .io.probe import probe

    info = probe(args.file)
    if args.json:
        print(json.dumps(_info_dict(info), indent=2, default=str))
        return EXIT_OK
    for key, value in _info_dict(info).items():
        print(f"{key:>18}: {value}")
    return EXIT_OK


def _info_dict(info) -> dict:
    d = {
        "size": f"{info.width}x{info.height}",
        "fps": f"{info.fps.numerator}/{info.fps.denominator} ({float(info.fps):.3f})",
        "frames": info.num_frames,
        "duration": f"{info.duration:.3f} s",
        "channels": info.channels,
        "bit_depth": info.bit_depth,
        "pix_fmt": info.pix_fmt,
        "codec": info.codec,
        "primaries": info.colour.primaries,
        "transfer": info.colour.transfer,
        "matrix": info.colour.matrix,
        "range": info.colour.range,
        "rotation": info.rotation,
        "time_base": str(info.time_base),
        "timecode": str(info.timecode) if info.timecode is not None else "none",
        "first_number": info.first_number,
    }
    if info.audio:
        a = info.audio
        d["audio"] = f"{a.codec}, {a.sample_rate} Hz, {a.channels} ch"
    else:
        d["audio"] = "none"
    return d


def _dispatch(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise VidfxError(f"{module} is not available ({exc})") from None
    return int(mod.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="vidfx", description="Temporally aware video effects.")
    parser.add_argument("--version", action="version", version=f"vidfx {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    # the global flags are also accepted after the sub-command: `vidfx run g.yaml --debug`
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser

    def command(name: str, **kwargs):
        return add_parser(name, parents=[common], **kwargs)

    def graph_args(p):
        p.add_argument("graph", help="graph file (YAML)")
        p.add_argument("-i", "--input", help="replace the first input's path")
        p.add_argument("-o", "--output", help="replace the first output's path")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NODE.PARAM=VALUE",
            help="override a node parameter (repeatable)",
        )
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
        p.add_argument("--strict", action="store_true", help="damaged data in an input is an error, not a warning")
        out = p.add_argument_group("output options (the first output, the one -o names)")
        out.add_argument("--codec", help="e.g. prores_422hq, dnxhr_hqx, ffv1, h264, exr, dpx")
        out.add_argument("--bit-depth", dest="bit_depth", help="8, 10, 16 or auto")
        out.add_argument("--start-number", dest="start_number", help="first file number of an image sequence")
        out.add_argument(
            "--output-option",
            action="append",
            default=[],
            metavar="[N:]KEY=VALUE",
            help="any output option, for output N (from 1; default the first), repeatable",
        )

    p = command("run", help="render a graph")
    graph_args(p)
    p.add_argument("--frames", help="render output frames A:B only (B exclusive)")
    scale = p.add_argument_group("scale-out (docs/scale-out.md)")
    scale.add_argument("--backend", default="local", help="local (default) or ray (needs vidfx[ray])")
    scale.add_argument("--address", help="ray: auto or ray://HOST:PORT to join a cluster (default: start a local Ray)")
    scale.add_argument("--workers", type=int, help="ray: segments rendered at once (default 2)")
    scale.add_argument("--segment-frames", dest="segment_frames", type=int, help="ray: output frames per segment")
    scale.add_argument("--work-dir", dest="work_dir", help="ray: segment folder every worker can write")
    scale.add_argument("--resume", action="store_true", help="ray: reuse segments a killed run finished")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_run)

    p = command(
        "validate",
        help="dry run: probe inputs, configure every node, check outputs; render and write nothing",
    )
    graph_args(p)
    p.set_defaults(func=cmd_validate)

    p = command("nodes", help="list node types with their parameters")
    p.add_argument("name", nargs="?", help="only this node type")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_nodes)

    p = command("probe", help="describe a media file as vidfx sees it")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_probe)

    for verb in ("train", "eval"):
        choices = FEATURES + (tuple(TRAIN_ONLY) if verb == "train" else ())
        p = command(verb, help=f"{verb} a model ({', '.join(choices)}); see `vidfx {verb} FEATURE -h`")
        p.add_argument("feature", choices=choices)
        p.add_argument("args", nargs=argparse.REMAINDER)
        module = "evaluate" if verb == "eval" else "train"
        p.set_defaults(
            func=lambda a, m=module: _dispatch(TRAIN_ONLY.get(a.feature) or f"vidfx.{a.feature}.{m}", a.args)
        )

    p = sub.add_parser("serve", help="run the render server the OFX plugin talks to")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: _dispatch("vidfx.server", a.args))

    p = sub.add_parser("ofx", help="build or install the OFX plugin bundle (ofx build|install)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: _dispatch("vidfx.ofx_bridge.build", a.args))
    return parser


# Sub-commands whose arguments belong to another module's parser (argparse's REMAINDER
# would swallow none of a leading `--flag`).
PASS_THROUGH = {"serve": "vidfx.server", "ofx": "vidfx.ofx_bridge.build"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vidfx` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        try:
            return _dispatch(PASS_THROUGH[argv[0]], argv[1:])
        except VidfxError as exc:
            print(f"vidfx: error: {exc}", file=sys.stderr)
            return exc.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="vidfx: %(levelname)s: %(message)s"
    )
    try:
        with _terminate_like_interrupt():
            return args.func(args)
    except BrokenPipeError:
        # the reader went away (`vidfx probe f | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Terminated as exc:
        name = signal.Signals(exc.signum).name
        print(f"\nvidfx: stopped by {name}; unfinished outputs were removed", file=sys.stderr)
        return 128 + exc.signum
    except VidfxError as exc:
        if args.debug:
            raise
        print(f"vidfx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nvidfx: interrupted; unfinished outputs were removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if args.debug:
            raise
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"vidfx: error:{name} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_MEDIA
    except MemoryError:
        print("vidfx: error: out of memory (try a smaller tile/chunk size or --device cuda)", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug:
            raise
        print(f"vidfx: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
