"""A job's task config from config files read once per sweep: the sweeper's shortcut through Hydra's composition.

Hydra's composition of a job is slow for a sweep: it rereads every config file, rebuilds OmegaConf objects for
each step of its defaults list, and merges them. A grid of methods x datasets x backbones has
hundreds of distinct choices of config options, so a sweep spent minutes before submitting anything.
Here each config file is loaded once per sweep (by Hydra's own config repository, so YAML parsing,
`# @package` headers and defaults lists are Hydra's), the defaults list of a choice is walked with
Hydra's own defaults elements (their config paths and packages), and the files are merged as plain
dicts with OmegaConf's merge rules.

It covers what this project's config tree uses: group defaults, `optional`, `_self_`, `null`,
packages and `# @package` headers, defaults that interpolate other groups' choices
(conf/recipe/layers/), and `group=option` on the command line. Anything else (a `+group`, `~group`
or `group@pkg` override, a list of options, `override` outside the primary config, a config that is
missing or backed by a dataclass, two values for one group, a merge OmegaConf does not do by plain
replacement) is not proven to compose as Hydra does: `compose` returns None and Hydra composes.
The `hydra` node is left out (the task config drops it): Hydra's configs (hydra/config, conf/hydra/)
are not walked, as they fill that node only, and a job that overrides them is Hydra's. A file of
ours that writes into it (conf/config.yaml, conf/grid/) is trusted only once Hydra has composed a
choice with it and the shortcut agreed (`confirm`): the shortcut's first choice of a sweep is
always checked, and Hydra's own checks of that node (its schemas) still stop a sweep Hydra would stop.
"""
import copy
import re
from typing import Dict, List, Optional, Tuple

from hydra.core.default_element import ConfigDefault, GroupDefault, InputDefault
from hydra.core.override_parser.types import Override, OverrideType
from hydra.plugins.config_source import ConfigLoadError, ConfigSource
from omegaconf import DictConfig, OmegaConf

MISSING = "???"
ENV_ONLY = re.compile(r"^\$\{oc\.env:[^${}]*\}$")  # a value that reads the environment and nothing else
_CHOICE = re.compile(r"\$\{([A-Za-z_][\w]*)\}")  # `${method}` in a defaults list: the choice of group `method`


class Unproven(Exception):
    """The shortcut cannot show that it composes what Hydra composes: Hydra composes instead."""


def copy_tree(x):
    """A copy of a plain config tree (dicts, lists, scalars): three times faster than copy.deepcopy."""
    if isinstance(x, dict):
        return {k: copy_tree(v) for k, v in x.items()}
    if isinstance(x, list):
        return [copy_tree(v) for v in x]
    return x


def merge(dest: dict, src: dict) -> None:
    """OmegaConf's merge of untyped configs, on plain dicts: mappings merge key by key, a missing value
    (`???`) keeps what is there, anything else replaces. Raises Unproven where OmegaConf resolves first
    (a mapping or list onto an interpolation)."""
    for k, v in src.items():
        if k not in dest:
            dest[k] = copy_tree(v)
        elif isinstance(v, dict) and isinstance(dest[k], dict):
            merge(dest[k], v)
        elif isinstance(v, str) and v == MISSING:
            continue
        elif isinstance(v, (dict, list)) and isinstance(dest[k], str) and "${" in dest[k]:
            raise Unproven(k)
        else:
            dest[k] = copy_tree(v)


def resolve_env(cfg: dict, seen: dict) -> Optional[dict]:
    """`cfg` with its `${oc.env:...}` values read (in place) as OmegaConf reads them; None where another
    interpolation is left (a value the job's overrides may change). `seen` keeps each value's reading."""
    def walk(node) -> bool:
        for k, v in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(v, (dict, list)):
                if not walk(v):
                    return False
            elif isinstance(v, str) and "${" in v:
                if not ENV_ONLY.match(v):
                    return False
                if v not in seen:
                    seen[v] = OmegaConf.to_container(OmegaConf.create({"v": v}), resolve=True)["v"]
                node[k] = seen[v]
        return True
    return cfg if walk(cfg) else None


class _File:
    """One config file as Hydra's repository loads it: its content (no defaults list), header, defaults."""

    def __init__(self, content: dict, header: Optional[str], defaults: List[InputDefault]):
        self.content, self.header, self.defaults = content, header, defaults


class Composer:
    """The task configs of one sweep's jobs, each config file read once (see the module's docstring)."""

    def __init__(self, repository, config_name: str):
        self.repository, self.config_name = repository, config_name
        self._files: Dict[str, Optional[_File]] = {}
        self._unproven: Dict[str, str] = {}  # config path -> why the shortcut cannot take it
        self._hydra_ok: set = set()  # files that write into the `hydra` node, composed by Hydra already
        self._pending: Dict[tuple, List[str]] = {}  # a choice's files that wait for Hydra's word on the `hydra` node

    def compose(self, overrides: List[Override]) -> Optional[dict]:
        """The task config (no `hydra` node, unresolved) of `overrides`, the group choices of a job; None
        where the shortcut cannot prove it is Hydra's."""
        try:
            entries = self._defaults(overrides)
            cfg: dict = {}
            waiting = []
            for path, package in entries:
                part = self._file(path).content
                for p in reversed(package.split(".") if package else []):
                    part = {p: part}
                if "hydra" in part:
                    if path not in self._hydra_ok:
                        waiting.append(path)
                    part = {k: v for k, v in part.items() if k != "hydra"}
                merge(cfg, part)
        except Unproven:
            return None
        if waiting:
            self._pending[tuple(o.input_line for o in overrides)] = waiting
            return None
        return cfg

    def confirm(self, overrides: List[Override], hydra_cfg: dict) -> bool:
        """Hydra composed `overrides` as `hydra_cfg` (its task config, unresolved): trust the files it wrote
        into its `hydra` node if the shortcut composes the rest the same. False where it does not."""
        waiting = self._pending.pop(tuple(o.input_line for o in overrides), None)
        if waiting is None:
            return True
        self._hydra_ok.update(waiting)
        ours = self.compose(overrides)
        if ours == hydra_cfg:
            return True
        self._hydra_ok.difference_update(waiting)
        return False

    def _file(self, path: str) -> Optional[_File]:
        """The config at `path`, loaded once (None: there is none); Unproven if Hydra would not merge it as is."""
        if path in self._unproven:
            raise Unproven(self._unproven[path])
        if path not in self._files:
            try:
                self._files[path] = self._load(path)
            except Unproven as e:
                self._unproven[path] = str(e)
                raise
        return self._files[path]

    def _load(self, path: str) -> Optional[_File]:
        ret = self.repository.load_config(config_path=path)
        if ret is None:
            return None
        if ret.is_schema_source or not ret.path.startswith("file://"):
            raise Unproven(f"{path}: not a YAML file")
        try:  # a dataclass of the same name validates the file (Hydra's deprecated automatic schema matching)
            self.repository.get_schema_source().load_config(ConfigSource._normalize_file_name(path))
            raise Unproven(f"{path}: has a schema")
        except ConfigLoadError:
            pass
        if not isinstance(ret.config, DictConfig) or ret.config._is_typed():
            raise Unproven(f"{path}: not a plain mapping")
        return _File(OmegaConf.to_container(ret.config, resolve=False), ret.header.get("package"),
                     list(ret.defaults_list or []))

    def _defaults(self, overrides: List[Override]) -> List[Tuple[str, str]]:
        """Hydra's defaults list for these group choices, less the `hydra` node's part: (config path, package)."""
        choices = {}
        for o in overrides:
            value = o.value()
            if o.type != OverrideType.CHANGE or o.package is not None or not isinstance(value, str) \
                    or "${" in value or o.key_or_group.startswith("hydra"):
                raise Unproven(o.input_line)
            choices[o.key_or_group] = value
        root = ConfigDefault(path=self.config_name, primary=True)
        root.update_parent("", "")
        known: Dict[str, Optional[str]] = {}
        used: set = set()
        entries = self._node(root, choices, known, used)
        if used != set(choices):  # Hydra: "Could not override ..."
            raise Unproven("an override matches no default")
        keys = [k for _, _, k in entries if k is not None]
        if len(keys) != len(set(keys)):  # Hydra: "... appears more than once in the final defaults list"
            raise Unproven("a group twice")
        return [(path, package) for path, package, _ in entries]

    def _node(self, d: InputDefault, choices: dict, known: dict, used: set) -> List[Tuple[str, str, Optional[str]]]:
        """The defaults-list entries of `d` and what it includes, in merge order: (config path, package,
        the group's override key for a leaf group default)."""
        group = isinstance(d, GroupDefault)
        if group and d.get_name() is None:  # `group: null`: chosen, nothing merged
            self._know(d, known)
            return []
        if d.get_name() == MISSING:
            raise Unproven(f"{d.get_config_path()}: no option chosen")
        path = d.get_config_path()
        f = self._file(path)
        if f is not None:
            d.set_package_header(f.header)
        if group:
            self._know(d, known)
        if f is None:
            if d.is_optional():
                return []
            raise Unproven(f"{path}: no such config")
        if not f.defaults:
            return [(path, d.get_final_package(), d.get_override_key() if group else None)]
        defaults = [copy.copy(x) for x in f.defaults]
        selfs = sum(x.is_self() for x in defaults)
        if selfs > 1 or (selfs == 0 and d.primary) or all(x.is_override() for x in defaults):
            raise Unproven(f"{path}: its _self_")
        if selfs == 0:
            defaults.append(ConfigDefault(path="_self_"))
        parent_dir, package = d.get_group_path(), d.get_final_package()
        parts: List[Optional[list]] = [None] * len(defaults)
        deferred = []
        for i in reversed(range(len(defaults))):  # Hydra's order: the last default's choice is known first
            x = defaults[i]
            if x.is_self():
                parts[i] = [(path, package, None)]
                continue
            x.update_parent(parent_dir, package)
            hydra_node = isinstance(x, GroupDefault) and x.get_group_path().split("/")[0] == "hydra"
            if hydra_node and d.primary:
                parts[i] = []  # the `hydra` node's part: not in the task config
                continue
            if x.is_override() or hydra_node:
                raise Unproven(f"{path}: overrides a default")
            if isinstance(x, GroupDefault):
                key = x.get_override_key()
                if key in choices:
                    x.value = choices[key]
                    used.add(key)
                if x.is_options():
                    raise Unproven(f"{path}: a list of options")
            if x.is_interpolation():
                deferred.append(i)
            else:
                parts[i] = self._node(x, choices, known, used)
        snapshot = dict(known)  # interpolated defaults see the choices made before any of them
        for i in deferred:
            x = defaults[i]
            if not isinstance(x, GroupDefault):
                raise Unproven(f"{path}: an interpolated config path")
            x.value = self._interpolate(x.get_name(), snapshot)
            x.update_parent(parent_dir, package)
            parts[i] = self._node(x, choices, known, used)
        return [e for part in parts for e in part]

    @staticmethod
    def _know(d: GroupDefault, known: dict) -> None:
        key = d.get_override_key()
        if key in known and known[key] != d.get_name():  # Hydra: "Multiple values for ..."
            raise Unproven(f"two values for {key}")
        known[key] = d.get_name()

    @staticmethod
    def _interpolate(value: str, known: dict) -> str:
        """`${recipe}/vtab/${method}` with the groups' choices; Unproven for any other interpolation."""
        def choice(m) -> str:
            if not isinstance(known.get(m[1]), str):
                raise Unproven(f"{value}: no choice of {m[1]} yet")
            return known[m[1]]

        out = _CHOICE.sub(choice, value)
        if any(c in _CHOICE.sub("", value) for c in "${}\\"):
            raise Unproven(value)
        return out
