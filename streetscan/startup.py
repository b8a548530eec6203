"""How `streetscan run` is put together, as named steps (Frigate's app.py starts the same way).

    init_config          streams.yaml, validated
    init_detector        the model card and its detector
    init_outputs         the sinks: --output URLs, then streams.yaml's `outputs:` (JSONL if none)
    init_console_index   the console's case index, one more sink with its own cursor (--http-port)
    init_daemon          the fleet, runner, probes, verification desk
    init_console         the operator console, handed to the daemon as a service

This is the one module that knows every part; `workers/` knows nothing of the console, and the
console knows the daemon only through its fleet view (console.fleet.DaemonFleet).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .delivery.outputs import OutputError, open_outputs
from .delivery.sinks import CaseSink
from .delivery.webhook import WebhookConfigError, load_secret
from .pipeline.config import DEFAULT_JSONL_MAX_MB, ConfigError, OutputConfig, StreamsConfig, load_config, output_scheme
from .pipeline.detect import Detector, load_detector
from .pipeline.models import ModelCard, ModelError, resolve_model
from .workers.supervisor import Daemon, DaemonOptions

if TYPE_CHECKING:
    from .console.index import CaseIndex

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class ConsoleOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    trusted_proxies: tuple[str, ...] = ()  # its reverse proxies (ConsoleSettings)
    cookie_secure: bool = False  # the session cookie always `Secure` (ConsoleSettings.https_only)


@dataclass(frozen=True)
class LiveSettings:
    """What the command line asks of the daemon."""

    daemon: DaemonOptions
    model: str | None = None
    outputs: tuple[OutputConfig, ...] = ()
    jsonl: bool | None = None  # OUT/events.jsonl: True always, None when no other output, False never
    jsonl_max_mb: float = DEFAULT_JSONL_MAX_MB  # that file starts anew past this size (0: never)
    console: ConsoleOptions | None = None  # None: no console
    detector_threads: int | None = None
    device: str = "cpu"


@dataclass
class Startup:
    settings: LiveSettings
    config: StreamsConfig | None = None
    card: ModelCard | None = None
    detector: Detector | None = None
    sinks: list[CaseSink] = field(default_factory=list)
    case_index: CaseIndex | None = None
    daemon: Daemon | None = None

    def prepare(self) -> Daemon:
        """Every init_* step in order (those not taken yet); a StartupError says which part could not be made."""
        if self.config is None:
            self.init_config()
        if self.detector is None:
            self.init_detector()
        self.init_outputs()
        self.init_console_index()
        self.init_daemon()
        self.init_console()
        assert self.daemon is not None
        return self.daemon

    def init_config(self) -> None:
        try:
            self.config = load_config(self.settings.daemon.streams_path)
        except ConfigError as exc:
            raise StartupError(str(exc)) from None

    def init_detector(self) -> None:
        try:
            self.card = resolve_model(self.settings.model)
            self.detector = load_detector(
                self.card, threads=self.settings.detector_threads, device=self.settings.device
            )
        except ModelError as exc:
            raise StartupError(str(exc)) from None

    def init_outputs(self) -> None:
        assert self.config is not None
        specs = [*self.settings.outputs, *self.config.outputs]
        jsonl = self.settings.jsonl
        if jsonl or (jsonl is None and not specs):
            specs.insert(0, OutputConfig(url="jsonl:", max_mb=self.settings.jsonl_max_mb))
        out = self.settings.daemon.out_dir
        out.mkdir(parents=True, exist_ok=True)
        try:
            self.sinks = open_outputs(specs, out)
        except OutputError as exc:
            raise StartupError(str(exc)) from None

    def init_console_index(self) -> None:
        if self.settings.console is None:
            return
        from .console.app import ConsoleSettings
        from .console.index import CaseIndex
        from .console.users import UserError, require_users

        out = self.settings.daemon.out_dir
        try:
            require_users(ConsoleSettings.for_output(out).users_path, out)
        except UserError as exc:
            raise StartupError(str(exc)) from None
        # One more sink with its own outbox cursor: the console's index misses nothing the outbox
        # delivers, and its outage (a locked disk) holds back no other sink.
        index = CaseIndex(ConsoleSettings.for_output(out).index_path)
        self.case_index = index
        self.sinks.append(index)

    def init_daemon(self) -> None:
        assert self.config is not None and self.detector is not None
        options = self.settings.daemon
        outputs = [*self.settings.outputs, *self.config.outputs]
        webhooks = [o for o in outputs if output_scheme(o.url) in ("http", "https")]
        if options.verify_secret is None and webhooks:
            # The case platform signs its verification requests with the webhook's shared secret.
            try:
                options = dataclasses.replace(options, verify_secret=load_secret(webhooks[0].secret_file))
            except WebhookConfigError as exc:
                raise StartupError(str(exc)) from None
        try:
            self.daemon = Daemon(options, self.config, self.detector, self.sinks, case_index=self.case_index)
        except OSError as exc:
            raise StartupError(f"cannot start: {exc}") from None

    def init_console(self) -> None:
        options = self.settings.console
        if options is None:
            return
        from .console.app import ConsoleSettings, create_app
        from .console.fleet import DaemonFleet
        from .console.server import ConsoleServer

        assert self.daemon is not None
        settings = dataclasses.replace(
            ConsoleSettings.for_output(self.settings.daemon.out_dir),
            https_only=options.cookie_secure,
            trusted_proxies=options.trusted_proxies,
        )
        try:
            server = ConsoleServer(
                create_app(settings, index=self.case_index, fleet=DaemonFleet(self.daemon)),
                options.host,
                options.port,
                settings.server_options(),
            )
        except OSError as exc:
            raise StartupError(f"cannot start: {exc}") from None
        self.daemon.services.append(server)
