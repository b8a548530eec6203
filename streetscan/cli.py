"""`streetscan`: the command line."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import __version__
from .logs import configure as configure_logging
from .pipeline.catalogue import CATALOGUE
from .pipeline.config import (
    DEFAULT_JSONL_MAX_MB,
    DEFAULT_STREAM,
    DEFAULT_WEBHOOK_TIMEOUT_S,
    ConfigError,
    StreamsConfig,
    load_config,
)
from .pipeline.decode import SourceError
from .pipeline.models import ModelCard, ModelError, card_paths, default_model_name, load_card, models_dir, resolve_model
from .pipeline.serving import BASELINE_MODEL, SERVED_AP50, Service, Status, by_status, default_shortfalls, services

app = typer.Typer(
    help="StreetScan: find street-scene violations in city camera video and emit case events.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
DeviceOption = Annotated[
    str,
    typer.Option(
        help="Inference device: cpu, cuda, tensorrt (ONNX Runtime) or torch-cuda, torch-cpu (PyTorch, fp16 on "
        "CUDA; yolo models whose card names their checkpoint)."
    ),
]
ThreadsOption = Annotated[int | None, typer.Option(help="Inference threads on CPU (default: all cores).")]
err = Console(stderr=True)
WebhookOption = Annotated[
    str | None,
    typer.Option(help="Case platform webhook: POST each event (signed, idempotency key) to this http(s) URL."),
]
WebhookSecretOption = Annotated[
    Path | None,
    typer.Option(help="File holding the webhook's shared HMAC secret (default: $STREETSCAN_WEBHOOK_SECRET)."),
]
WebhookCaOption = Annotated[
    Path | None,
    typer.Option(help="CA certificate(s) to verify the webhook's TLS certificate with (default: the system's)."),
]
WebhookTimeoutOption = Annotated[float, typer.Option(help="Seconds the webhook receiver has to answer.")]
OutputOption = Annotated[
    list[str] | None,
    typer.Option(
        "--output",
        help=(
            "Where cases go, by URL (repeatable): jsonl: or jsonl:PATH, redis://HOST:PORT/DB?stream=KEY, https://... "
            "(a webhook, signed with --webhook-secret-file)."
        ),
    ),
]
TrustedProxyOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Address of a reverse proxy in front of the console whose X-Forwarded-For/-Proto are believed "
        "(repeat for several); by default no forwarded header is believed."
    ),
]
CookieSecureOption = Annotated[
    bool,
    typer.Option(
        "--cookie-secure",
        help="Always mark the console's session cookie Secure (behind TLS); it is marked "
        "so anyway on a request a trusted proxy says came over https.",
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _scene_list(items: list[Service], with_objects: bool = True) -> str:
    return ", ".join(f"{s.scene.code} ({', '.join(s.objects)})" if with_objects else s.scene.code for s in items)


def print_served(card: ModelCard) -> list[str]:
    """Say which scene classes the loaded model serves, as measured, and which it cannot: never silently."""
    by = by_status(card)
    served = by[Status.SERVED]
    console.print(
        f"model [bold]{card.name}[/]: serves {len(served)}/{len(CATALOGUE)} scene classes "
        f"(AP50 >= {SERVED_AP50} on human val boxes): " + (_scene_list(served, False) or "none"),
        highlight=False,
    )
    if by[Status.WEAK]:
        console.print(
            "  weak (an object below that bar; expect false cases): " + _scene_list(by[Status.WEAK]),
            style="yellow",
            highlight=False,
        )
    if by[Status.UNMEASURED]:
        console.print(
            "  unmeasured (objects never scored on human boxes): " + _scene_list(by[Status.UNMEASURED]),
            style="yellow",
            highlight=False,
        )
    if by[Status.MISSING]:
        console.print(
            "  cannot serve (no detector class for their objects): " + _scene_list(by[Status.MISSING], False),
            style="yellow",
            highlight=False,
        )
    return [s.scene.code for s in by[Status.MISSING]]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each event and stage detail.")] = False,
    log_format: Annotated[str, typer.Option(help="Log lines as 'text' or 'json' (one object per line).")] = "text",
) -> None:
    if log_format not in ("text", "json"):
        _fail(f"--log-format must be text or json, not {log_format!r}")
    configure_logging(logging.INFO if verbose else logging.WARNING, log_format)


@app.command()
def run(
    streams: Annotated[Path, typer.Option(help="streams.yaml: the cameras, zones and rules.")] = Path("streams.yaml"),
    model: Annotated[
        str | None, typer.Option(help="Model name in models/, a card .yaml or an .onnx with its card.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder: evidence/, events.jsonl (when written), spool.")] = Path(
        "out/live"
    ),
    spool: Annotated[Path | None, typer.Option(help="Durable event spool (SQLite). Default: OUT/spool.db.")] = None,
    output: OutputOption = None,
    redis: Annotated[
        str | None,
        typer.Option(help="Case queue: Redis URL (redis://host:port/db); also where verification requests come from."),
    ] = None,
    redis_stream: Annotated[str, typer.Option(help="Redis Stream key for events.")] = DEFAULT_STREAM,
    jsonl: Annotated[
        bool | None,
        typer.Option(
            "--jsonl/--no-jsonl",
            help="Write OUT/events.jsonl (default: only when no other output is given here or in streams.yaml).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            help=(
                "Address for /metrics, /healthz, /readyz and /verify (unauthenticated but for /verify: loopback "
                "unless a scraper or probe needs more; the k8s manifests set 0.0.0.0)."
            )
        ),
    ] = "127.0.0.1",
    metrics_port: Annotated[int, typer.Option(help="Port for /metrics, /healthz, /readyz (0: any free port).")] = 9108,
    max_batch: Annotated[int, typer.Option(help="Most frames (one per camera) per inference call.")] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for a batch to fill.")] = 20.0,
    threads: ThreadsOption = None,
    device: DeviceOption = "cpu",
    watch: Annotated[bool, typer.Option(help="Reload when streams.yaml changes (SIGHUP always reloads).")] = False,
    shutdown_timeout: Annotated[float, typer.Option(help="Seconds SIGTERM may take to drain and flush.")] = 20.0,
    evidence_days: Annotated[
        float,
        typer.Option(help="Delete evidence older than this, unless its event is open or undelivered (0: keep all)."),
    ] = 30.0,
    jsonl_max_mb: Annotated[
        float, typer.Option(help="Start a new events.jsonl past this size; the old one is kept, renamed with the time.")
    ] = DEFAULT_JSONL_MAX_MB,
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Serve the operator console on this port (0: any free port); needs a user from `streetscan users add`."
        ),
    ] = None,
    http_host: Annotated[str, typer.Option(help="Address the console listens on.")] = "127.0.0.1",
    trusted_proxy: TrustedProxyOption = None,
    cookie_secure: CookieSecureOption = False,
    webhook: WebhookOption = None,
    webhook_secret_file: WebhookSecretOption = None,
    webhook_ca: WebhookCaOption = None,
    webhook_timeout: WebhookTimeoutOption = DEFAULT_WEBHOOK_TIMEOUT_S,
    command_stream: Annotated[
        str,
        typer.Option(
            help=(
                "With --redis: the Redis Stream the case platform sends verification requests to (replies on "
                "<stream>:replies)."
            )
        ),
    ] = "streetscan:commands",
    shard: Annotated[
        str | None,
        typer.Option(
            help=(
                "Analyse only shard K/N of streams.yaml's cameras (K from 0; rendezvous hashing). Default: "
                "$STREETSCAN_SHARD, or $STREETSCAN_SHARD_COUNT with a StatefulSet host name, else all cameras."
            )
        ),
    ] = None,
    reader_processes: Annotated[
        int,
        typer.Option(
            min=0,
            help=(
                "Decode cameras in this many reader processes (about one per core; frames reach inference through "
                "shared memory, evidence at the model's input size). 0: reader threads in the daemon."
            ),
        ),
    ] = 0,
) -> None:
    """Run the live daemon against the cameras in streams.yaml until SIGTERM/SIGINT; SIGHUP reloads."""
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # a daemon's state changes belong in its log
    from .infra.shard import Shard, ShardError
    from .startup import ConsoleOptions, LiveSettings, Startup, StartupError
    from .workers.supervisor import DaemonOptions

    try:
        my_shard = Shard.parse(shard) if shard else Shard.from_environment()
    except ShardError as exc:
        _fail(str(exc))
    options = DaemonOptions(
        streams_path=streams,
        out_dir=out,
        spool_path=spool or out / "spool.db",
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        shutdown_timeout_s=shutdown_timeout,
        watch_config=watch,
        evidence_days=evidence_days,
        verify_secret=_platform_secret(webhook_secret_file) if webhook else None,
        command_redis=redis,
        command_stream=command_stream,
        shard=my_shard,
        reader_processes=reader_processes,
    )
    console_options = (
        ConsoleOptions(http_host, http_port, tuple(trusted_proxy or ()), cookie_secure)
        if http_port is not None
        else None
    )
    urls = _output_urls(output, redis, redis_stream, webhook)
    settings = LiveSettings(
        options,
        model=model,
        outputs=_outputs(urls, webhook_secret_file, webhook_ca, webhook_timeout, jsonl_max_mb),
        jsonl=jsonl,
        jsonl_max_mb=jsonl_max_mb,
        console=console_options,
        detector_threads=threads,
        device=device,
    )
    startup = Startup(settings)
    try:
        startup.init_config()
        startup.init_detector()
        assert startup.card is not None
        print_served(startup.card)
        daemon = startup.prepare()
    except StartupError as exc:
        _fail(str(exc))
    raise typer.Exit(daemon.run())


def _output_urls(output: list[str] | None, redis: str | None, redis_stream: str, webhook: str | None) -> list[str]:
    """--output URLs, with --redis/--redis-stream and --webhook as the output URLs they stand for."""
    from .delivery.outputs import redis_output

    return [*(output or []), *([redis_output(redis, redis_stream)] if redis else []), *([webhook] if webhook else [])]


def _outputs(
    urls: list[str],
    secret_file: Path | None,
    ca: Path | None,
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S,
    jsonl_max_mb: float = DEFAULT_JSONL_MAX_MB,
) -> tuple:
    """Output settings for URLs given on the command line (the webhook flags apply to http(s) ones)."""
    from pydantic import ValidationError

    from .pipeline.config import OutputConfig

    try:
        return tuple(
            OutputConfig(url=u, secret_file=secret_file, ca_file=ca, timeout_s=timeout_s, max_mb=jsonl_max_mb)
            for u in urls
        )
    except ValidationError as exc:
        _fail("--output: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))


@app.command()
def replay(
    paths: Annotated[list[str], typer.Argument(help="Video files (any format FFmpeg reads).")],
    streams: Annotated[Path | None, typer.Option(help="streams.yaml giving the camera's zones and rules.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id in --streams whose zones apply to the footage.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name in models/, a card .yaml or an .onnx with its card.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder: events.jsonl, evidence/, report.md, spool.db.")] = Path(
        "out"
    ),
    output: OutputOption = None,
    redis: Annotated[str | None, typer.Option(help="Also send events to this Redis (redis://host:port/db).")] = None,
    redis_stream: Annotated[str, typer.Option(help="Redis Stream key for events.")] = DEFAULT_STREAM,
    analysis_fps: Annotated[
        float | None, typer.Option(help="Override the camera's analysed frames per second.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Frames per detector call.")] = 4,
    start_time: Annotated[
        datetime | None,
        typer.Option(help="Wall-clock time of the first frame (default: file metadata, else mtime)."),
    ] = None,
    device: DeviceOption = "cpu",
    webhook: WebhookOption = None,
    webhook_secret_file: WebhookSecretOption = None,
    webhook_ca: WebhookCaOption = None,
    webhook_timeout: WebhookTimeoutOption = DEFAULT_WEBHOOK_TIMEOUT_S,
    verify: Annotated[
        Path | None,
        typer.Option(
            help=(
                'Verification requests to ask while the footage plays: JSON lines {"at_s": stream seconds, '
                '"request_id", "event_id"}; answers in OUT/verifications.jsonl.'
            )
        ),
    ] = None,
) -> None:
    """Replay recorded footage faster than real time: events, evidence images and a report."""
    from .pipeline.detect import load_detector
    from .workers.replay import OutputFull, ReplayJob
    from .workers.report import write_replay_figures, write_report

    try:
        config = load_config(streams) if streams else None
        card = resolve_model(model)
    except (ConfigError, ModelError) as exc:
        _fail(str(exc))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        _fail(f"no such file: {', '.join(missing)}")
    outputs = _outputs(
        _output_urls(output, redis, redis_stream, webhook), webhook_secret_file, webhook_ca, webhook_timeout
    )
    requests = _verify_requests(verify) if verify else []
    cameras = _replay_cameras(paths, config, streams, camera, analysis_fps)
    unserved = print_served(card)
    try:
        detector = load_detector(card, device=device)
    except ModelError as exc:
        _fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    # Always OUT/events.jsonl (the report and the console read it), whole: a replay is not rotated.
    sinks = _open_sinks([_outputs(["jsonl:"], None, None, jsonl_max_mb=0)[0], *outputs], out, ping=True)
    results = []
    try:
        for path in paths:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                FootageColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task(Path(path).name, total=None)

                def on_progress(t: float, total: float | None, task: TaskID = task) -> None:
                    progress.update(task, completed=t, total=total)

                job = ReplayJob(
                    cameras[path],
                    detector,
                    out_dir=out,
                    sinks=sinks,
                    batch_size=batch,
                    start_time=start_time,
                    on_progress=on_progress,
                    verify=requests,
                )
                try:
                    results.append(job.run(path))
                except (SourceError, OutputFull) as exc:
                    _fail(str(exc))
    except OSError as exc:  # the output folder's disk: the spool, the events file, a picture
        _fail(f"{out}: cannot write ({exc.strerror or exc})")
    finally:
        for s in sinks:
            try:
                s.close()
            except OSError:
                pass
    _print_replay(results, card.name)
    try:
        report = write_report(out, results, card, unserved)
        write_replay_figures(out, results)
    except OSError as exc:
        _fail(f"{out}: report not written ({exc.strerror or exc})")
    console.print(f"events: {out / 'events.jsonl'}   report: {report}", highlight=False)


class FootageColumn(ProgressColumn):
    """Seconds of footage analysed of the clip's length, and how many times faster than real time."""

    def render(self, task) -> Text:
        done = f"{task.completed:.0f}/{task.total:.0f} s" if task.total else f"{task.completed:.0f} s"
        speed = f" · {task.speed:.1f}x real time" if task.speed else ""
        return Text(done + speed)


def _replay_cameras(
    paths: list[str],
    config: StreamsConfig | None,
    streams: Path | None,
    camera_id: str | None,
    analysis_fps: float | None,
) -> dict:
    """The camera (zones, rules) each recording is analysed as; a stand-in without --streams."""
    from .pipeline.config import camera_for_file
    from .workers.replay import camera_for_path

    cameras = {}
    for path in paths:
        try:
            cam = camera_for_path(config, path, camera_id) if config is not None else camera_for_file(path)
        except KeyError as exc:
            _fail(f"{streams}: {exc.args[0]}")
        cameras[path] = cam.with_analysis_fps(analysis_fps) if analysis_fps else cam
    return cameras


def _open_sinks(specs, out: Path, ping: bool = False) -> list:
    """The outputs' sinks (delivery.outputs); `ping`: reach each that can be reached now, so an
    analyst gets a typo before the footage, not after it."""
    from .delivery.outputs import OutputError, open_outputs
    from .delivery.sinks import SinkError

    try:
        sinks = open_outputs(list(specs), out)
    except OutputError as exc:
        _fail(str(exc))
    if ping:
        for sink in sinks:
            try:
                getattr(sink, "ping", lambda: None)()
            except SinkError as exc:
                for s in sinks:
                    s.close()
                _fail(str(exc))
    return sinks


def _platform_secret(path: Path | None) -> bytes:
    from .delivery.webhook import WebhookConfigError, load_secret

    try:
        return load_secret(path)
    except WebhookConfigError as exc:
        _fail(str(exc))


def _verify_requests(path: Path) -> list[tuple[float, dict]]:
    """A replay's verification requests: one JSON object per line with at_s; the rest is the request."""
    import json

    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            at = float(doc.pop("at_s"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            _fail(f"{path}:{n}: expected a JSON object with a numeric at_s ({type(exc).__name__}: {exc})")
        out.append((at, doc))
    return out


def _print_replay(results: list, model_name: str) -> None:
    from .workers.report import class_totals

    table = Table(title=f"StreetScan replay — model {model_name}")
    # A name is what a reader looks for: it keeps its whole width, the figures' headers wrap instead.
    table.add_column("file", no_wrap=True, min_width=max((len(Path(r.path).name) for r in results), default=4))
    for col in ("frames decoded", "analysed", "analysed fps", "real-time factor", "decode errors"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            Path(r.path).name,
            str(r.frames_decoded),
            str(r.frames_analysed),
            f"{r.analysed_fps:.1f}",
            f"{r.realtime_factor:.2f}x",
            str(r.decode_errors),
        )
    console.print(table)
    for r in results:
        if r.ends_early:
            console.print(
                f"[yellow]warning: {Path(r.path).name} ends early: {r.missing_s:.1f} s of the "
                f"{r.duration_s:.1f} s its header declares have no frames (cut short or damaged)[/yellow]",
                highlight=False,
            )
    totals = class_totals(results)
    ev_table = Table(title="events by scene class")
    for col in ("scene class", "opened", "updated", "resolved"):
        ev_table.add_column(col)
    for code, scene in CATALOGUE.items():
        row = [totals[(code, s)] for s in ("opened", "updated", "resolved")]
        if any(row):
            ev_table.add_row(f"{code} {scene.name_zh}", *map(str, row))
    if ev_table.row_count:
        console.print(ev_table)
    else:
        console.print("no events", style="dim")
    undelivered = sum(r.undelivered for r in results)
    if undelivered:
        err.print(
            f"[yellow]warning:[/] {undelivered} event(s) not taken by a sink stay in the spool "
            "and are delivered by the next replay into this folder",
            highlight=False,
        )


@app.command()
def bench(
    clip: Annotated[
        Path | None,
        typer.Option(
            help="H.264 clip every simulated camera plays (default: staged footage at 1080p, else synthetic)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name, card or .onnx (default: models/DEFAULT).")] = None,
    analysis_fps: Annotated[
        list[float] | None, typer.Option(help="Analysis rate(s) per camera to size for (repeatable; default 1).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Short stages and trials (under 2 minutes on 2 cores).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for capacity.json and capacity.png.")] = Path("out/bench"),
    max_age: Annotated[float, typer.Option(help="Frame age bound (p95 seconds) a sustained load must keep.")] = 3.0,
    threads: ThreadsOption = None,
    max_batch: Annotated[int, typer.Option(help="Daemon's max batch.")] = 8,
    limit: Annotated[int, typer.Option(help="Most cameras to try.")] = 1024,
    gop_s: Annotated[
        float, typer.Option(help="Keyframe interval of the clip the benchmark encodes (cameras' I-frame interval).")
    ] = 2.0,
    device: DeviceOption = "cpu",
    reader_processes: Annotated[
        int,
        typer.Option(
            min=0,
            help="Run the simulated cameras' readers in this many processes, as `run --reader-processes` (0: threads).",
        ),
    ] = 0,
) -> None:
    """Capacity benchmark: stage figures, raw inference ceiling and the cameras this machine carries."""
    from .capacity import run as run_bench
    from .capacity import table

    if analysis_fps is None:
        analysis_fps = [1.0]
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    try:
        results = run_bench(
            clip=clip,
            model=model,
            analysis_fps=analysis_fps,
            quick=quick,
            out=out,
            max_age_s=max_age,
            threads=threads,
            device=device,
            max_batch=max_batch,
            limit=limit,
            gop_s=gop_s,
            reader_processes=reader_processes,
            log=lambda m: console.print(m, highlight=False),
        )
    except (ModelError, SourceError) as exc:
        _fail(str(exc))
    console.print(table(results), highlight=False)
    console.print(f"results: {out / 'capacity.json'}   plot: {out / 'capacity.png'}", highlight=False)


@app.command()
def evaluate(
    truths: Annotated[
        list[Path] | None, typer.Argument(help="Truth files (default: every .yaml in benchmarks/truth).")
    ] = None,
    streams: Annotated[Path, typer.Option(help="streams.yaml holding the cameras the truth files name.")] = Path(
        "examples/footage.yaml"
    ),
    model: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                "Model name in models/, a card .yaml or an .onnx with its card; repeat to compare models in one run "
                "(default: the default model)."
            )
        ),
    ] = None,
    footage: Annotated[
        list[Path] | None,
        typer.Option(
            help=(
                "Folder of the clips; repeat for several, searched in order (default: $STREETSCAN_ASSETS/footage, "
                "else ../shared/footage, then build/footage, where scripts/footage.py rebuilds the fetched clips)."
            )
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Score clips of this split only: all, tune or holdout.")] = "all",
    require_all: Annotated[
        bool,
        typer.Option("--require-all", help="Fail when a truth file's clip is missing (default: skip it and say so)."),
    ] = False,
    out: Annotated[
        Path, typer.Option(help="Output folder: accuracy.json, accuracy.md, each model's events and evidence.")
    ] = Path("out/accuracy"),
    device: DeviceOption = "cpu",
    substream: Annotated[
        str | None,
        typer.Option(
            help="Run every clip as a camera pair: the clip as main stream, a copy scaled to fit WxH "
            "(e.g. 640x360, made in OUT/substreams) as its detect_url."
        ),
    ] = None,
) -> None:
    """Event-level accuracy: replay clips with known truth, match cases to true violations, score per class."""
    import json
    import os

    from .accuracy import (
        TruthError,
        comparison_table,
        decision_table,
        find_clip,
        load_truth,
        markdown_table,
        run_evaluation,
    )
    from .capacity import machine
    from .pipeline.detect import load_detector

    if split not in ("all", "tune", "holdout"):
        _fail(f"--split must be all, tune or holdout, not {split!r}")
    sub_size = None
    if substream is not None:
        try:
            w, h = (int(v) for v in substream.lower().split("x"))
            assert w > 0 and h > 0
            sub_size = (w, h)
        except (ValueError, AssertionError):
            _fail(f"--substream must be WxH, e.g. 640x360, not {substream!r}")
    paths = truths or sorted(Path("benchmarks/truth").glob("*.yaml"))
    if not paths:
        _fail("no truth files given and none in benchmarks/truth")
    folders = footage or [Path(os.environ.get("STREETSCAN_ASSETS") or "../shared") / "footage", Path("build/footage")]
    try:
        loaded = [load_truth(p) for p in paths]
        config = load_config(streams)
        cards = [resolve_model(m) for m in (model or (None,))]
    except (TruthError, ConfigError, ModelError) as exc:
        _fail(str(exc))
    loaded = [t for t in loaded if split == "all" or t.split == split]
    absent = [t.clip for t in loaded if find_clip(t.clip, folders) is None]
    if absent:
        what = f"{len(absent)} of {len(loaded)} clips not found in {', '.join(map(str, folders))}: {', '.join(absent)}"
        if require_all:
            _fail(what + " (scripts/footage.py rebuilds them from the repository snapshots)")
        console.print(f"[yellow]skipped: {what}[/yellow] (scripts/footage.py rebuilds them)", highlight=False)
        loaded = [t for t in loaded if t.clip not in absent]
    if not loaded:
        _fail("no clip to score")
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for card in cards:
        model_out = out / card.name if len(cards) > 1 else out
        model_out.mkdir(parents=True, exist_ok=True)
        try:
            runs[card.name] = run_evaluation(
                loaded,
                footage=folders,
                config=config,
                detector=load_detector(card, device=device),
                out_dir=model_out,
                substream=sub_size,
            )
        except (TruthError, KeyError, SourceError) as exc:
            _fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    splits = {t.clip: t.split for t in loaded}
    doc = {
        "date": stamp,
        "machine": machine(),
        "streams": str(streams),
        "split": split,
        "skipped": absent,
        "splits": splits,
        "models": {
            name: {
                "settings": run.settings,
                **run.score.as_dict(),
                "by_split": {
                    sp: run.pooled([t for t in loaded if t.split == sp]).as_dict()
                    for sp in ("tune", "holdout")
                    if any(t.split == sp for t in loaded)
                },
                "by_clip": {t.clip: run.pooled([t]).as_dict() for t in loaded},
            }
            for name, run in runs.items()
        },
    }
    (out / "accuracy.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    parts = [
        f"# Event accuracy, {stamp}\n",
        f"Clips: {', '.join(t.clip for t in loaded)}"
        f" ({sum(t.duration_s for t in loaded):.0f} s)"
        + (f"; skipped (not found): {', '.join(absent)}" if absent else ""),
    ]
    for name, run in runs.items():
        parts.append(f"\n## {name}, all clips pooled\n\n{markdown_table(run.score)}")
    parts.append(f"\n## All scene classes pooled\n\n{decision_table(loaded, runs)}")
    classes = sorted({c for run in runs.values() for c in run.score.classes})
    for code in classes:
        parts.append(f"\n## {code}: per clip and pooled per split\n\n{comparison_table(loaded, runs, code)}")
    (out / "accuracy.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    for name, run in runs.items():
        console.print(f"[bold]{name}[/bold]", highlight=False)
        console.print(markdown_table(run.score), highlight=False)
        for code, s in sorted(run.score.classes.items()):
            for what, items in (("missed", s.missed), ("false", s.false)):
                if items:
                    console.print(f"{code} {what}: {', '.join(items)}", highlight=False)
    console.print(f"results: {out / 'accuracy.json'}   tables: {out / 'accuracy.md'}", highlight=False)


@app.command()
def classes() -> None:
    """List the 14 scene classes: category, objects, rule and default parameters."""
    table = Table(title="StreetScan scene classes")
    for col in ("code", "中文", "category", "objects", "rule", "zones", "defaults (arterial)"):
        table.add_column(col)
    for c in CATALOGUE.values():
        table.add_row(
            c.code,
            c.name_zh,
            c.category.value,
            ", ".join(c.objects),
            c.rule,
            ", ".join(k.value for k in c.zone_kinds),
            ", ".join(f"{k}={v}" for k, v in c.defaults.items()),
        )
    console.print(table)


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="One model: its status per scene class.")] = None,
) -> None:
    """List the installed models: scene classes each serves as measured, and whether it clears the bar for
    the default."""
    if name:
        try:
            card = resolve_model(name)
        except ModelError as exc:
            _fail(str(exc))
        measured = card.quality.objects if card.quality else {}
        table = Table(title=f"{card.name} {card.version}: scene classes")
        for col in ("scene class", "status", "objects (AP50 on human val boxes)"):
            table.add_column(col)
        for s in services(card):
            objs = [
                f"{o} {measured[o].ap50:.3f}" if o in measured else f"{o} -"
                for o in s.scene.objects
                if o in card.objects
            ]
            table.add_row(s.scene.code, s.status.value, ", ".join(objs))
        console.print(table)
        return
    cards, broken = [], []
    for path in card_paths(models_dir()):
        try:
            cards.append(load_card(path))
        except ModelError as exc:
            broken.append(str(exc))
    default = default_model_name()
    # Fits 80 columns whole: names and figures are what a reader looks for, so no cell is cut.
    rows = []
    for card in cards:
        by = by_status(card)
        q = card.quality.objects if card.quality else {}
        rows.append((
            card.name + (" *" if card.name == default else ""),
            card.version,
            f"{card.input_width}" + ("r" if card.rect else ""),
            f"{len(by[Status.SERVED])}/{len(CATALOGUE)}",
            str(len(by[Status.UNMEASURED])),
            *(f"{q[o].ap50:.3f}" if o in q else "-" for o in ("person", "car")),
            card.quality.measured[:10] if card.quality else "-",
        ))  # fmt: skip
    heads = ("model", "ver", "input", "served", "unmeas.", "person", "car", "measured")
    table = Table(title=f"Models in {models_dir()}", box=None, padding=(0, 2, 0, 0), pad_edge=False)
    for i, head in enumerate(heads):
        table.add_column(head, no_wrap=True, min_width=max([len(head), *(len(r[i]) for r in rows)]))
    for r in rows:
        table.add_row(*r)
    table.caption = "* the default · input r: rectangular · person, car: AP50 on the build's val boxes"
    console.print(table)
    baseline = next((c for c in cards if c.name == BASELINE_MODEL), None)
    for card in cards:
        if baseline is None or card is baseline:
            continue
        short = default_shortfalls(card, baseline)
        console.print(
            f"{card.name}: bar for the default " + ("met" if not short else "not met: " + "; ".join(short)),
            highlight=False,
            soft_wrap=True,
        )
    for message in broken:
        err.print(f"[yellow]skipped:[/] {message}", highlight=False, soft_wrap=True)


@app.command("check-config")
def check_config(
    path: Annotated[Path, typer.Argument(help="streams.yaml to validate.")] = Path("streams.yaml"),
) -> None:
    """Validate a streams.yaml and list its cameras; exits 2 naming file, camera, field and reason."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        _fail(str(exc))
    for cam in config.resolved():
        zones = ", ".join(f"{z.id}({z.kind.value}/{z.grade.value})" for z in cam.zones)
        console.print(f"{cam.id}: {cam.name} @ {cam.analysis_fps:g} fps — zones {zones}", highlight=False)
    console.print(f"{path}: {len(config.cameras)} cameras OK", style="green")


@app.command()
def version() -> None:
    """Print the StreetScan version."""
    console.print(__version__)


users_app = typer.Typer(
    help="Console users (no default account exists: create the first admin here).", no_args_is_help=True
)
app.add_typer(users_app, name="users")
StateOption = Annotated[
    Path, typer.Option("--state", help="Folder of the console's users.db (default: the output folder).")
]


PasswordOption = Annotated[
    str | None,
    typer.Option(
        envvar="STREETSCAN_USER_PASSWORD", help="Read from the prompt when left out (never echoed, never logged)."
    ),
]


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    out: Annotated[Path, typer.Option(help="Output folder the console serves.")] = Path("out"),
    password: PasswordOption = None,
) -> None:
    """Create a console user with an argon2id password hash."""
    from .console.app import ConsoleSettings
    from .console.users import UserError, UserStore

    secret = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = UserStore(ConsoleSettings.for_output(out).users_path).add(name, secret, role)  # type: ignore[arg-type]
    except UserError as exc:
        _fail(str(exc))
    console.print(f"user {user.name} ({user.role}) created", highlight=False)


@users_app.command("passwd")
def users_passwd(
    name: str,
    out: Annotated[Path, typer.Option(help="Output folder the console serves.")] = Path("out"),
    password: PasswordOption = None,
) -> None:
    """Change a console user's password; every session of that user ends."""
    from .console.app import ConsoleSettings
    from .console.users import UserError, UserStore

    secret = password or typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    try:
        UserStore(ConsoleSettings.for_output(out).users_path).passwd(name, secret)
    except UserError as exc:
        _fail(str(exc))
    console.print(f"password of {name} changed; its sessions are ended", highlight=False)


@users_app.command("remove")
def users_remove(
    name: str, out: Annotated[Path, typer.Option(help="Output folder the console serves.")] = Path("out")
) -> None:
    """Remove a console user; its sessions end at once."""
    from .console.app import ConsoleSettings
    from .console.users import UserStore

    if not UserStore(ConsoleSettings.for_output(out).users_path).remove(name):
        _fail(f"no user {name!r}")
    console.print(f"user {name} removed", highlight=False)


@users_app.command("list")
def users_list(out: Annotated[Path, typer.Option(help="Output folder the console serves.")] = Path("out")) -> None:
    from .console.app import ConsoleSettings
    from .console.users import UserStore

    for user in UserStore(ConsoleSettings.for_output(out).users_path).list():
        console.print(f"{user.name}\t{user.role}", highlight=False)


def _require_console_user(out: Path) -> None:
    from .console.app import ConsoleSettings
    from .console.users import UserError, require_users

    try:
        require_users(ConsoleSettings.for_output(out).users_path, out)
    except UserError as exc:
        _fail(str(exc))


@app.command("console")
def console_cmd(
    out: Annotated[Path, typer.Option(help="A replay's or the daemon's output folder.")] = Path("out"),
    streams: Annotated[
        Path | None,
        typer.Option(
            help="streams.yaml of these cameras: their zones on the cameras page, and the zone editor writes it."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    redis: Annotated[
        str | None,
        typer.Option(
            help="Also index the cases of a fleet's Redis Stream (redis://host:port/db), read with a consumer group."
        ),
    ] = None,
    redis_stream: Annotated[str, typer.Option(help="The fleet's Redis Stream key.")] = DEFAULT_STREAM,
    redis_group: Annotated[
        str, typer.Option(help="This console's consumer group (one per console: each sees every case).")
    ] = "console",
    trusted_proxy: TrustedProxyOption = None,
    cookie_secure: CookieSecureOption = False,
) -> None:
    """Serve the operator console on an output folder (its events*.jsonl and evidence), or on a
    fleet's case stream with --redis."""
    import uvicorn

    from .console.app import ConsoleSettings, create_app
    from .console.fleet import RecordedFleet
    from .console.index import CaseIndex

    if not out.is_dir():
        _fail(f"{out}: no such output folder")
    if streams is not None:
        try:
            load_config(streams)
        except ConfigError as exc:
            _fail(str(exc))
    _require_console_user(out)
    settings = dataclasses.replace(
        ConsoleSettings.for_output(out), https_only=cookie_secure, trusted_proxies=tuple(trusted_proxy or ())
    )
    index = CaseIndex(settings.index_path)
    added = index.import_jsonl(out)
    console.print(f"case index {settings.index_path}: {index.count()} cases ({added} new revisions)", highlight=False)
    feed = None
    if redis:
        from .console.feed import RedisCaseFeed

        feed = RedisCaseFeed(index, redis, stream=redis_stream, group=redis_group)
        feed.start()
        console.print(f"indexing {redis_stream} as consumer group {redis_group!r}", highlight=False)
    fleet = RecordedFleet(out, streams, camera_ids=index.facets()["camera_id"])
    console.print(f"console on http://{host}:{port}/", highlight=False)
    try:
        uvicorn.run(create_app(settings, index=index, fleet=fleet), host=host, port=port, **settings.server_options())
    finally:
        if feed:
            feed.stop()
            feed.join(5)


dataset_app = typer.Typer(help="Training data from the cameras: operators' labels as a source.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("export")
def dataset_export(
    to: Annotated[Path, typer.Argument(help="Folder to write (replaced): images/, labels/, data.yaml, source.yaml.")],
    out: Annotated[Path, typer.Option(help="The console's output folder (its labels.db and labelling/).")] = Path(
        "out"
    ),
    name: Annotated[str, typer.Option(help="The source's name in the datasets manifest.")] = "operator_labels",
    val_fraction: Annotated[float, typer.Option(help="Share of camera-days held out for val.")] = 0.2,
) -> None:
    """Write the frames labelled in the console as a YOLO source the dataset builder reads."""
    from .dataset.export import export_labels
    from .dataset.labels import LabelStore
    from .pipeline.models import vocabulary

    if not (out / "labels.db").is_file():
        _fail(f"{out / 'labels.db'}: no labels here (label frames in the console's /label first)")
    store = LabelStore(out, vocabulary())
    try:
        summary = export_labels(store, to, name, val_fraction)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(
        f"{to}: {summary['frames']} frames, boxes {summary['boxes']}, cameras {', '.join(summary['cameras'])}, "
        f"{summary['labellers']} labeller(s); manifest entry in {to / 'source.yaml'}"
    )


dead_app = typer.Typer(
    help="Events a sink refused for good (e.g. a webhook answering 422): list and re-send them.", no_args_is_help=True
)
app.add_typer(dead_app, name="dead-letters")
SpoolOption = Annotated[Path, typer.Option(help="The spool holding them (the daemon's OUT/spool.db, or a replay's).")]


@dead_app.command("list")
def dead_letters_list(spool: SpoolOption = Path("out/live/spool.db")) -> None:
    """One line per dead letter: id, sink, event id:revision, camera, when, why."""
    for d in _open_spool(spool).dead_letters():
        stamp = datetime.fromtimestamp(d.at).astimezone().isoformat(timespec="seconds")
        console.print(
            f"{d.id}\t{d.sink}\t{d.event_id}:{d.revision}\t{d.camera_id}\t{stamp}\t{d.reason}",
            highlight=False,
            soft_wrap=True,
        )


@dead_app.command("resend")
def dead_letters_resend(
    webhook: Annotated[
        str | None, typer.Option(help="The webhook URL to send them to (after the receiver was fixed).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="Or any output URL to send them to (jsonl:, redis://, https://).")
    ] = None,
    spool: SpoolOption = Path("out/live/spool.db"),
    out: Annotated[
        Path | None, typer.Option(help="Output folder a jsonl: output is written in (default: the spool's folder).")
    ] = None,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only these dead letters (repeatable; default: all).")
    ] = None,
    webhook_secret_file: WebhookSecretOption = None,
    webhook_ca: WebhookCaOption = None,
    webhook_timeout: WebhookTimeoutOption = DEFAULT_WEBHOOK_TIMEOUT_S,
) -> None:
    """Send dead letters again, oldest first; each one delivered leaves the list, one refused again
    stays (with the new reason shown). Exits 1 when any is left."""
    from .delivery.sinks import EventRejected, SinkError

    if bool(webhook) == bool(output):
        _fail("say where to send them: --webhook URL or --output URL")
    store = _open_spool(spool)
    url = output or webhook
    assert url is not None  # exactly one of them is given (checked above)
    (sink,) = _open_sinks(_outputs([url], webhook_secret_file, webhook_ca, webhook_timeout), out or spool.parent)
    letters = [d for d in store.dead_letters() if not ids or d.id in ids]
    sent = 0
    try:
        for d in letters:
            try:
                sink.emit(d.event)
            except EventRejected as exc:
                err.print(f"{d.id}: refused again: {exc}", highlight=False, soft_wrap=True)
                continue
            except SinkError as exc:
                err.print(f"{d.id}: {exc}; stopping (the rest stay)", highlight=False, soft_wrap=True)
                break
            store.forget_dead_letter(d.id)
            sent += 1
    finally:
        sink.close()
    console.print(f"{sent} of {len(letters)} re-sent", highlight=False)
    if sent < len(letters):
        raise typer.Exit(1)


def _open_spool(path: Path):
    from .delivery.spool import EventSpool

    if not path.is_file():
        _fail(f"{path}: no such spool")
    # Opened beside a running daemon: SQLite in WAL mode lets both work on it.
    return EventSpool(path, [], maintenance=True)


@app.command()
def consume(
    redis: Annotated[str, typer.Option(help="Redis URL of the case stream (redis://host:port/db).")],
    stream: Annotated[str, typer.Option(help="The case stream the daemons write to.")] = DEFAULT_STREAM,
    group: Annotated[
        str, typer.Option(help="Consumer group: one per consuming system (each group sees every case).")
    ] = "platform",
    consumer: Annotated[
        str | None, typer.Option(help="This consumer's name within the group (default: host name).")
    ] = None,
    claim_idle: Annotated[
        float, typer.Option(help="Take over entries another consumer left unacknowledged this many seconds.")
    ] = 60.0,
    forward: WebhookOption = None,
    webhook_secret_file: WebhookSecretOption = None,
    max_events: Annotated[int, typer.Option("--max", help="Stop after this many events (0: run until Ctrl-C).")] = 0,
    idle_exit: Annotated[float, typer.Option(help="Stop after this many seconds without entries (0: never).")] = 0.0,
) -> None:
    """The reference consumer: read cases with a consumer group (XREADGROUP, XACK, XAUTOCLAIM of a
    dead consumer's entries), deduplicate on (event_id, revision), print each as a JSON line or
    forward it to a webhook. Integrators: this is the at-least-once pattern to copy."""
    import json
    import sys
    import time
    from collections import OrderedDict

    import redis as redis_lib

    from .delivery.consumer import CaseStreamConsumer
    from .delivery.sinks import SinkError

    reader = CaseStreamConsumer(redis, stream, group, consumer, claim_idle_s=claim_idle)
    sink = _open_sinks(_outputs([forward], webhook_secret_file, None), Path("."))[0] if forward else None
    seen: OrderedDict[tuple[str, int], None] = OrderedDict()  # recent keys: an entry may come twice
    handled, quiet_since = 0, time.monotonic()
    try:
        reader.ensure_group()
        while not max_events or handled < max_events:
            entries = reader.read()
            if not entries:
                if idle_exit and time.monotonic() - quiet_since > idle_exit:
                    break
                continue
            quiet_since = time.monotonic()
            done = []
            for entry_id, event in entries:
                if event is not None:
                    key = (event["event_id"], int(event["revision"]))
                    if key not in seen:
                        if sink is not None:
                            sink.emit(event)  # a failure leaves the entry pending: read again later
                        else:
                            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
                            sys.stdout.flush()
                        seen[key] = None
                        while len(seen) > 100_000:
                            seen.popitem(last=False)
                        handled += 1
                done.append(entry_id)
            reader.ack(done)
    except (redis_lib.RedisError, SinkError) as exc:
        _fail(str(exc), code=1)
    except KeyboardInterrupt:
        pass
    finally:
        if sink is not None:
            sink.close()
    err.print(f"{handled} case event(s) handled", highlight=False)
