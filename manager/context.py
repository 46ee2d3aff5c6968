"""The ``Manager`` object: wires config, layout, gate, cache, channels, catalog and registry.

Every door (ComfyUI glue, standalone server, CLI) builds one of these and passes it down;
nothing in the core reaches for module-level state. Construction does no network I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, ChannelFiles, ParseCache
from .channel_cache import CachedFile, ChannelCache
from .channels import ChannelSet, check_allowed, parse_channels_list
from .config import Config, resolve_config_path
from .config_share import load_config
from .errors import ManagerError
from .git import GitClient
from .host import Host, StandaloneHost
from .inventory import Inventory, scan
from .layout import Layout
from .network import NetworkGate, NetworkMode, NetworkPolicy, run_sync, with_download_rules
from .records import Channel, Notice
from .registry import RegistryClient
from .tasks import Runner, TaskQueue

if TYPE_CHECKING:
    from .kinds import PlannedTask
    from .operations import DepsStep
    from .tasks import Task

log = logging.getLogger("offline_manager")

CHANNEL_FILES = (
    "custom-node-list.json",
    "model-list.json",
    "extension-node-map.json",
    "alter-list.json",
    "github-stats.json",
)
SHIPPED_CHANNELS_LIST = Path(__file__).resolve().parent.parent / "channels.list"


@dataclass(frozen=True)
class CatalogView:
    """A loaded catalog plus what the user must be told about its data (stale, missing files)."""

    catalog: Catalog
    channel: Channel
    notices: tuple[Notice, ...]
    sources: Mapping[str, str]  # file name -> cache source (fresh/stale/local/...)
    oldest_age_seconds: float


def build_network_policy(config: Config) -> NetworkPolicy:
    """Translate settings into the gate's policy.

    In private mode only mirrors the admin named are reachable: ``private_mirrors``,
    ``allowed_channels``, ``allowed_pip_sources`` and ``model_store`` URLs, ``pip_index_url``, and
    ``channel_url``/``registry_url`` when set away from their public defaults. Shipped public
    defaults never become allowed by accident.
    """
    allowed: list[str] = [u for u in config["allowed_channels"] if "://" in u]
    allowed += [u for u in config["allowed_pip_sources"] if "://" in u]
    allowed += [u for u in config["model_store"] if u.startswith(("http://", "https://"))]
    if config["pip_index_url"]:
        allowed.append(config["pip_index_url"])
    for key in ("channel_url", "registry_url"):
        if config.source(key) != "default":
            allowed.append(config[key])
    policy = NetworkPolicy(
        mode=NetworkMode(config["network_mode"]),
        private_mirrors=tuple(config["private_mirrors"]),
        allowed_prefixes=tuple(allowed),
        connect_timeout=float(config["http_connect_timeout"]),
        total_timeout=float(config["http_timeout"]),
        bypass_ssl=bool(config["bypass_ssl"]),
    )
    return with_download_rules(policy, config)  # https only, redirect allow-list (docs/network.md)


@dataclass
class Manager:
    """One ComfyUI tree, its settings and the services built from them."""

    host: Host
    config: Config
    gate: NetworkGate
    cache: ChannelCache
    channels: ChannelSet
    registry: RegistryClient
    git: GitClient
    parse_cache: ParseCache = field(default_factory=ParseCache)
    # the step that installs a pack's requirements; None: the real installer (tests pass a recording one)
    deps_step: DepsStep | None = None
    _catalog_view: CatalogView | None = field(default=None, repr=False)
    _queue: TaskQueue | None = field(default=None, repr=False)
    _runner_factories: list[Callable[[Manager], Mapping[str, Runner]]] = field(default_factory=list, repr=False)

    @classmethod
    def create(
        cls,
        host: Host,
        *,
        cli: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> Manager:
        """Build a Manager from the host's tree; reads config.ini and channels.list, nothing else."""
        env = os.environ if env is None else env
        path = resolve_config_path(host.layout, env, config_path)
        config = load_config(host.layout, path, env=env, cli=cli)  # our own file on top where shared
        gate = NetworkGate(build_network_policy(config), logger=log)
        cache = ChannelCache(host.layout.cache_dir / "channels", gate, ttl=float(config["cache_ttl"]))
        channels = load_channel_set(host.layout)
        registry = RegistryClient(
            config["registry_url"],
            gate,
            ChannelCache(host.layout.cache_dir / "registry", gate, ttl=float(config["cache_ttl"])),
        )
        git = GitClient(gate, git_exe=config["git_exe"], mirror_root=host.layout.git_mirror_dir)
        manager = cls(host=host, config=config, gate=gate, cache=cache, channels=channels, registry=registry, git=git)
        manager.add_runners(_table_runners)
        adopt = getattr(host, "adopt_config", None)
        if callable(adopt):  # a live host applies what it owns itself (ComfyUI: preview_method)
            adopt(config)
        return manager

    @classmethod
    def standalone(cls, comfyui_root: str | os.PathLike[str], **kw: Any) -> Manager:
        return cls.create(StandaloneHost.from_root(comfyui_root), **kw)

    @property
    def layout(self) -> Layout:
        return self.host.layout

    def apply_config(self, config: Config) -> None:
        """Adopt a saved or re-read ``Config``: the gate follows its network settings and a
        changed ``channel_url`` drops the loaded catalog view (the next read loads the new one)."""
        channel_changed = config["channel_url"] != self.config["channel_url"]
        self.config = config
        self.gate.set_policy(build_network_policy(config))
        if channel_changed:
            self._catalog_view = None

    def active_channel(self) -> Channel:
        """The channel ``channel_url`` names (a channels.list name or URL), checked against policy."""
        wanted = self.config["channel_url"]
        try:
            channel = self.channels.resolve(wanted)
        except ManagerError:
            # channel_url may be a URL outside channels.list: the classic manager accepted those
            channel = Channel(name="custom", url=wanted)
        check_allowed(
            channel,
            allow_remote_channel=self._remote_channels_allowed(channel),
            allowed_channels=self.config["allowed_channels"],
            http_channel_enabled=self.config["http_channel_enabled"],
        )
        return channel

    def _remote_channels_allowed(self, channel: Channel) -> bool:
        # The shipped default channel list is trusted; other remote channels need the flag.
        return bool(self.config["allow_remote_channel"]) or channel.name in self.channels.names()

    async def _fetch_catalog(self, *, refresh: str = "auto", channel: Channel | None = None) -> CatalogView:
        """Load the channel's files through the cache (fresh, revalidated, stale or local) into a Catalog."""
        channel = channel or self.active_channel()
        results = await asyncio.gather(*(self._fetch_channel_file(channel, name, refresh) for name in CHANNEL_FILES))
        files: dict[str, bytes] = {}
        notices: list[Notice] = []
        sources: dict[str, str] = {}
        ages: list[float] = []
        for name, result in zip(CHANNEL_FILES, results, strict=True):
            if isinstance(result, ManagerError):
                level = "error" if name == "custom-node-list.json" else "warning"
                notices.append(Notice(level, result.code, f"{name}: {result.message}", result.hint))
                if name == "custom-node-list.json":
                    raise result
                continue
            files[name] = result.data
            sources[name] = result.source
            ages.append(result.age_seconds)
            if result.notice:
                notices.append(result.notice)
        catalog = Catalog.build([ChannelFiles(channel, files)], parse_cache=self.parse_cache)
        return CatalogView(catalog, channel, tuple(notices), sources, max(ages) if ages else 0.0)

    def load_catalog(self, **kw: Any) -> CatalogView:
        """A fresh catalog view (not kept); sync, like the rest of the core (docs/decisions.md)."""
        return run_sync(self._fetch_catalog(**kw))

    def catalog_view(self, *, refresh: str = "auto") -> CatalogView:
        """The in-memory catalog view, loaded once; ``refresh="force"`` reloads it through the cache.
        Sync: the HTTP door calls it through ``asyncio.to_thread``."""
        if self._catalog_view is None or refresh == "force":
            self._catalog_view = self.load_catalog(refresh=refresh)
        return self._catalog_view

    def inventory(self, *, with_catalog: bool = True) -> Inventory:
        """What is installed now (enabled, disabled, conflicts), matched against the catalog if loaded."""
        catalog = self._catalog_view.catalog if (with_catalog and self._catalog_view) else None
        return scan(self.layout, catalog=catalog)

    # -- task queue -----------------------------------------------------------------------
    def add_runners(self, factory: Callable[[Manager], Mapping[str, Runner]]) -> None:
        """Register a factory of task runners (kind -> callable); used before the queue is built."""
        if self._queue is not None:
            raise RuntimeError("runners must be registered before the queue is first used")
        self._runner_factories.append(factory)

    @property
    def queue(self) -> TaskQueue:
        """The one task queue of this Manager, built on first use from the registered runners."""
        if self._queue is None:
            runners: dict[str, Runner] = {}
            for factory in self._runner_factories:
                runners.update(factory(self))
            self._queue = TaskQueue(
                runners,
                lock_path=self.layout.locks_dir / "operations.lock",
                lock_anchor=self.layout.manager_dir.parent,
                logger=log,
            )
        return self._queue

    # -- planned work: every door's changes go through these two ----------------------------------
    def plan(
        self,
        kind: str,
        target: str = "",
        params: Mapping[str, Any] | None = None,
        *,
        listen: str,
        peer: str | None = None,
        door: str = "",
        view: CatalogView | None = None,
        enforce: bool = True,
        task_id: str | None = None,
        client_id: str | None = None,
    ) -> PlannedTask:
        """Validate, classify and decide one request of the task table (``kinds.plan``). ``peer``
        is the request's address (None: a local caller such as the CLI); ``door`` names the door."""
        from .kinds import plan

        return plan(
            self,
            kind,
            target,
            params,
            listen=listen,
            peer=peer,
            door=door,
            view=view,
            enforce=enforce,
            task_id=task_id,
            client_id=client_id,
        )

    def vet(self, planned: Sequence[PlannedTask]) -> None:
        """The submit-time checks that read disk or the cache (``kinds.vet``; blocking)."""
        from .kinds.planner import vet

        vet(self, planned)

    def submit(self, planned: Sequence[PlannedTask], *, vetted: bool = False) -> list[Task]:
        """Queue decided tasks; a batch with one refusal queues nothing (``kinds.submit``)."""
        from .kinds import submit

        return submit(self, planned, vetted=vetted)

    def preview(self, planned: PlannedTask) -> Mapping[str, Any]:
        """What a planned task would change, changing nothing (``kinds.preview``; blocking)."""
        from .kinds import preview

        return preview(self, planned)

    async def _fetch_channel_file(self, channel: Channel, name: str, refresh: str) -> CachedFile | ManagerError:
        try:
            return await self.cache.aget(self.channels.file_url(channel, name), refresh=refresh)
        except ManagerError as exc:
            return exc


def _table_runners(manager: Manager) -> Mapping[str, Runner]:
    """The runner of every kind of the task table (imported when the queue is first built)."""
    from .kinds import queue_runners

    return queue_runners(manager)


def load_channel_set(layout: Layout) -> ChannelSet:
    """channels.list from the manager data folder, else the shipped one."""
    for candidate in (layout.channels_file, SHIPPED_CHANNELS_LIST):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            return ChannelSet(parse_channels_list(text, source=str(candidate)))
    return ChannelSet([])
