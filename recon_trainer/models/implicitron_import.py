"""Importing a trained Implicitron experiment (pytorch3d's implicitron_trainer) as a run of ours.

An Implicitron exp_dir holds `expconfig.yaml` (the trainer's config, only the chosen
implementations' args) and `model_epoch_<8 digits>.pth` (the GenericModel's state dict after that
epoch; `_opt.pth` and `_stats.jgz` beside it are not read). `import_implicitron(src, dst)` writes
a run directory of ours at `dst`:

    dst/expconfig.yaml                       the translated config (only the chosen implementations)
    dst/checkpoint_epoch_<same epoch>.pth    the weights in our layout, an end-of-epoch checkpoint
    dst/implicitron_import.yaml              where it came from and every key that was left out

so that `recon_runner --config-dir dst --config-name expconfig` (e.g. with `eval_only=true`) and
`recon_visualizer exp_dir=dst` work on it. The optimizer state and the statistics are not
carried over: training on from there starts Adam's moments and the LR schedule afresh.

The config translation: our config mirrors Implicitron's (`<member>_class_type`,
`<member>_<Impl>_args`), so keys carry over except
- the root slots' implementations are renamed (`IMPLEMENTATION_RENAMES`, e.g.
  ImplicitronTrainingLoop -> ReconTrainingLoop), store_checkpoints_purge becomes
  checkpoint_keep_last (purge + 1 files kept);
- keys without a counterpart here are left out and listed (`LEFT_OUT` and what plugins add):
  visdom settings, path managers, the metrics' slots, log_vars (ours are used), ...; a model key
  that changes the computation must hold the only value we implement (e.g.
  cast_ray_bundle_as_cone=false), otherwise the import stops with one line naming it;
- outside the model, any other unknown key or implementation is left out (defaults here) and
  listed; inside the model it stops the import;
- where ours has a switch, Implicitron's behaviour is chosen (`IMPLICITRON_SEMANTICS`: the ray
  samplers' unit-length directions and one near/far per batch, the evaluator's metrics).

The state-dict mapping: Implicitron wraps each pass's implicit function
(`_implicit_functions.<i>._fn.<key>`; ours `_implicit_functions.<i>.<key>`). What is below a
member (implicit function, renderer, global encoder, ...) is mapped by the
`ImplicitronImplementation` registered for its class (`register_implicitron_implementation`): a
method plugin registers its own from its folder, so this module names none; an implicit function
without one cannot be imported, nor a member listed in NOT_AT_PARITY (it would load but render
otherwise than Implicitron's, or has not been checked: today the +WCE methods' feature extractor). Other
members keep their keys. The result must fit the translated model exactly (same keys and
shapes), else the import stops naming the tensors.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from recon_trainer.config import ConfigError
from recon_trainer.errors import DataFileError, RunDirectoryError, UserError, WriteError

IMPLICITRON_CONFIG = "expconfig.yaml"  # the config Implicitron's trainer writes into exp_dir
IMPLICITRON_CHECKPOINT = re.compile(r"^model_epoch_(\d{8})\.pth$")  # its model files (model_io.py)
IMPORT_RECORD = "implicitron_import.yaml"  # what we write beside the run: source and left-out keys
MODEL_CLASS = "GenericModel"  # the one Implicitron model whose weights are mapped
_WRAPPED_FUNCTION = re.compile(r"^_implicit_functions\.(\d+)\._fn\.(.+)$")

# Implementations of the root slots (and the evaluator) under another name here.
IMPLEMENTATION_RENAMES = {
    "ImplicitronDataSource": "ReconDataSource",
    "ImplicitronModelFactory": "ReconModelFactory",
    "ImplicitronOptimizerFactory": "ReconOptimizerFactory",
    "ImplicitronTrainingLoop": "ReconTrainingLoop",
    "ImplicitronEvaluator": "NVSEvaluator",
}


class _AnyValue:
    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyValue()  # a left-out key whose value does not matter here


@dataclasses.dataclass(frozen=True)
class LeftOut:
    """An Implicitron key with no counterpart here. `required`: the only value that computes what
    ours computes (ANY: any value; it only concerned logging, I/O or Implicitron's internals)."""

    required: Any = ANY
    why: str = ""


# (class name, key) -> LeftOut, for the core's classes. Plugins add theirs through
# ImplicitronImplementation.left_out.
LEFT_OUT: Dict[Tuple[str, str], LeftOut] = {
    ("Experiment", "hydra"): LeftOut(why="Hydra's own settings"),
    ("GenericModel", "log_vars"): LeftOut(why="our logged values are used"),
    ("GenericModel", "output_rasterized_mc"): LeftOut(why="an extra output; renders are unaffected"),
    ("GenericModel", "tqdm_trigger_threshold"): LeftOut(why="a progress-bar setting"),
    ("GenericModel", "view_metrics_class_type"): LeftOut(why="our view losses are built in"),
    ("GenericModel", "view_metrics_ViewMetrics_args"): LeftOut(why="our view losses are built in"),
    ("GenericModel", "regularization_metrics_class_type"): LeftOut(why="built in (loss_autodecoder_norm)"),
    ("GenericModel", "regularization_metrics_RegularizationMetrics_args"): LeftOut(why="built in"),
    ("AdaptiveRaySampler", "cast_ray_bundle_as_cone"): LeftOut(False, "cones (mip-NeRF) are not implemented"),
    ("NearFarRaySampler", "cast_ray_bundle_as_cone"): LeftOut(False, "cones (mip-NeRF) are not implemented"),
    ("ReconTrainingLoop", "visualize_interval"): LeftOut(why="visdom image logging"),
    ("ReconTrainingLoop", "visdom_env"): LeftOut(why="visdom"),
    ("ReconTrainingLoop", "visdom_port"): LeftOut(why="visdom"),
    ("ReconTrainingLoop", "visdom_server"): LeftOut(why="visdom"),
    ("NVSEvaluator", "camera_difficulty_bin_breaks"): LeftOut(why="unused by Implicitron too"),
    ("SequenceDataLoaderMapProvider", "consecutive_frames_max_gap_seconds"): LeftOut(why="not implemented"),
    ("JsonIndexDatasetMapProviderV2", "num_load_workers"): LeftOut(why="loading threads"),
    ("RenderedMeshDatasetMapProvider", "gpu_idx"): LeftOut(why="rendering device"),
}
# Keys left out wherever they appear (Implicitron's iopath path managers).
LEFT_OUT_ANYWHERE = {
    "path_manager_factory_class_type": LeftOut(why="file access goes through the OS here"),
    "path_manager_factory_PathManagerFactory_args": LeftOut(why="file access goes through the OS here"),
}
# (class name, key) -> (our key, value converter).
RENAMED_KEYS: Dict[Tuple[str, str], Tuple[str, Callable[[Any], Any]]] = {
    # Implicitron deletes epochs older than `purge` behind the newest, keeping purge + 1 files (0: all).
    ("ReconTrainingLoop", "store_checkpoints_purge"): ("checkpoint_keep_last", lambda p: int(p) + 1 if p > 0 else 0),
}
# Switches of ours whose default might not be Implicitron's behaviour: set where our schema has them.
IMPLICITRON_SEMANTICS: Dict[str, Dict[str, Any]] = {
    "AdaptiveRaySampler": {"unit_directions": True, "per_camera_near_far": False},
    "NearFarRaySampler": {"unit_directions": True},
    "NVSEvaluator": {"metrics_convention": "implicitron"},
}

# Members whose implementation loads but does not yet render as Implicitron's: member -> {class: why}.
NOT_AT_PARITY: Dict[str, Dict[str, str]] = {
    "image_feature_extractor": {
        "ResNetFeatureExtractor": "its feature maps equal Implicitron's, but our view pooling orders the reduced "
        "channels otherwise (Implicitron: per feature map, AVG then STD) and floors the weights and variances "
        "otherwise (Implicitron: 1e-2 and 1e-4)",
    },
}

StateDict = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ImplicitronImplementation:
    """How Implicitron's implementation `class_type` of GenericModel's `member` carries over.

    member: "implicit_function", "renderer", "global_encoder", "raysampler", ...
    class_type: the implementation's name (the same here and in Implicitron).
    map_state_dict: Implicitron's tensors below the member's module (keys relative to it, e.g.
        "xyz_encoder.mlp.0.0.weight") -> ours (relative keys); keys it does not know are passed
        on unchanged, so the final check names them. None: the keys are the same.
    left_out: Implicitron args of this class with no counterpart here (key -> LeftOut).
    """

    member: str
    class_type: str
    map_state_dict: Optional[Callable[[StateDict], StateDict]] = None
    left_out: Mapping[str, LeftOut] = dataclasses.field(default_factory=dict)


_IMPLEMENTATIONS: Dict[Tuple[str, str], ImplicitronImplementation] = {}


def register_implicitron_implementation(implementation: ImplicitronImplementation) -> ImplicitronImplementation:
    """Make `implementation` known to the importer (a plugin calls this when it is imported)."""
    _IMPLEMENTATIONS[(implementation.member, implementation.class_type)] = implementation
    return implementation


def registered_implementation(member: str, class_type: Optional[str]) -> Optional[ImplicitronImplementation]:
    """The registered mapping of `member`'s implementation `class_type`, or None."""
    return _IMPLEMENTATIONS.get((member, class_type)) if class_type is not None else None


def _left_out_rule(class_name: str, key: str) -> Optional[LeftOut]:
    for implementation in _IMPLEMENTATIONS.values():
        if implementation.class_type == class_name and key in implementation.left_out:
            return implementation.left_out[key]
    return LEFT_OUT.get((class_name, key)) or LEFT_OUT_ANYWHERE.get(key)


# --- the core's own state-dict mapping: the sequence autodecoder -------------------------------


def _map_sequence_autodecoder(state: StateDict) -> StateDict:
    """Implicitron's Autodecoder (`_autodecoder_codes` Embedding, `_key_map` name -> row) -> ours
    (`_codes`, extra state {"names": names in row order})."""
    mapped: StateDict = {}
    for key, value in state.items():
        if key == "autodecoder._autodecoder_codes.weight":
            mapped["autodecoder._codes.weight"] = value
        elif key == "autodecoder._key_map":
            rows = sorted(value.items(), key=lambda item: int(item[1]))
            if [int(row) for _, row in rows] != list(range(len(rows))):
                raise UserError(f"global_encoder.autodecoder._key_map: expected the rows 0..{len(rows) - 1}, "
                                f"got {sorted(int(r) for _, r in rows)}")
            mapped["autodecoder._extra_state"] = {"names": [str(name) for name, _ in rows]}
        else:
            mapped[key] = value
    return mapped


_PROJECTION = re.compile(r"^proj_layers\.(\d+)\.(weight|bias)$")


def _map_resnet_feature_extractor(state: StateDict) -> StateDict:
    """Implicitron's ResNetFeatureExtractor -> ours: the 1x1 projection of stage s is
    `proj_layers.<s - 1>` there (a ModuleList over stages 1..max) and `projections.<s>` here."""
    mapped: StateDict = {}
    for key, value in state.items():
        projection = _PROJECTION.match(key)
        mapped[f"projections.{int(projection.group(1)) + 1}.{projection.group(2)}" if projection else key] = value
    return mapped


register_implicitron_implementation(
    ImplicitronImplementation("global_encoder", "SequenceAutodecoder", map_state_dict=_map_sequence_autodecoder)
)
register_implicitron_implementation(ImplicitronImplementation(
    "image_feature_extractor", "ResNetFeatureExtractor", map_state_dict=_map_resnet_feature_extractor,
    left_out={"pretrained": LeftOut(why="the weights come from the checkpoint")},
))


# --- finding the files ------------------------------------------------------------------------


def find_implicitron_checkpoint(exp_dir: str, epoch: Optional[int] = None) -> Tuple[str, int]:
    """(path, epoch) of `model_epoch_<epoch>.pth` in exp_dir: the newest, or the given epoch.
    DataFileError naming exp_dir and what it holds when there is none."""
    found = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(exp_dir)
        if (match := IMPLICITRON_CHECKPOINT.match(name)) and os.path.isfile(os.path.join(exp_dir, name))
    )
    if not found:
        raise DataFileError(f"{exp_dir} holds no Implicitron model file model_epoch_<8 digits>.pth (is it the exp_dir "
                            "of an Implicitron run that finished an epoch?)")
    if epoch is None:
        epoch, name = found[-1]
        return os.path.join(exp_dir, name), epoch
    for number, name in found:
        if number == epoch:
            return os.path.join(exp_dir, name), epoch
    raise DataFileError(f"{exp_dir} has no model_epoch_{epoch:08d}.pth; its epochs: {[n for n, _ in found]}")


def read_implicitron_config(path: str) -> Dict[str, Any]:
    """The plain tree of an Implicitron expconfig.yaml (interpolations kept as written, never
    evaluated); DataFileError when it is missing or not a YAML mapping."""
    from omegaconf import OmegaConf

    if not os.path.isfile(path):
        raise DataFileError(f"{path} does not exist: an Implicitron exp_dir holds the expconfig.yaml its trainer wrote")
    try:
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as error:  # noqa: BLE001  (yaml's and OmegaConf's parse errors vary)
        raise DataFileError(f"{path}: not a readable YAML config ({str(error).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise DataFileError(f"{path}: expected a YAML mapping (Implicitron's Experiment config), "
                            f"got {type(tree).__name__}")
    return tree


def read_implicitron_state_dict(path: str) -> StateDict:
    """The state dict in an Implicitron model file (torch.load with weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (zip reader and unpickler errors vary)
        raise DataFileError(f"{path}: not a readable torch state dict ({type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise DataFileError(f"{path}: expected a state dict (a dict of named tensors), got {type(state).__name__}")
    return state


# --- the config translation -------------------------------------------------------------------


@dataclasses.dataclass
class Translation:
    """Our config tree translated from Implicitron's, and what was left out ("key=value: why")."""

    tree: Dict[str, Any]
    left_out: List[str] = dataclasses.field(default_factory=list)
    renamed: List[str] = dataclasses.field(default_factory=list)


def translate_config(implicitron: Mapping[str, Any], dst: str) -> Translation:
    """Implicitron's Experiment config tree -> ours (a plain tree to merge over our defaults).

    ConfigError (one line) for a model key or implementation we cannot reproduce.
    """
    from recon_trainer.config import expand_args_fields, get_default_args
    from recon_trainer.config.discovery import discover_plugins
    from recon_trainer.experiment import Experiment

    discover_plugins()
    expand_args_fields(Experiment)
    translation = Translation(tree={})
    schema = get_default_args(Experiment)
    _check_model_choice(implicitron, schema)
    translation.tree = _translate_node(implicitron, schema, "", False, translation)
    translation.tree["exp_dir"] = os.path.abspath(dst)
    _resume_from_the_import(translation.tree)
    return translation


def _translate_node(node: Mapping[str, Any], schema: Any, path: str, in_model: bool,
                    translation: Translation) -> Dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    from recon_trainer.models.base import ModelBase

    schema_class = OmegaConf.get_type(schema)
    class_name = getattr(schema_class, "__name__", "")
    in_model = in_model or (isinstance(schema_class, type) and issubclass(schema_class, ModelBase))
    members = getattr(schema_class, "_processed_members", {})
    out: Dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{path}{key}"
        rule = _left_out_rule(class_name, key)
        if rule is not None:
            _leave_out(dotted, value, rule, in_model, translation)
            continue
        new_key = _renamed_args_key(key)
        if (class_name, key) in RENAMED_KEYS:
            new_key, convert = RENAMED_KEYS[(class_name, key)]
            value = convert(value)
            translation.renamed.append(f"{dotted} -> {new_key}={value!r}")
        if new_key.endswith("_class_type") and isinstance(value, str):
            value = IMPLEMENTATION_RENAMES.get(value, value)
        if new_key not in schema:
            if in_model:
                raise ConfigError(f"{dotted}={_show(value)}: this Implicitron setting has no counterpart in "
                                  f"recon_trainer's {class_name}, so the model cannot be imported")
            translation.left_out.append(f"{dotted}={_show(value)}: not known here")
            continue
        member = new_key[: -len("_class_type")] if new_key.endswith("_class_type") else None
        spec = members.get(member) if member else None
        unknown_choice = isinstance(value, str) and value != "???" and value not in getattr(spec, "implementations", {})
        if spec is not None and spec.kind.replaceable and unknown_choice:
            if in_model:
                raise ConfigError(f"{dotted}={value}: recon_trainer has no {value} (choices: "
                                  f"{', '.join(spec.implementations)}), so the model cannot be imported")
            translation.left_out.append(f"{dotted}={value}: not implemented here; our default "
                                        f"{schema[new_key]} is used")
            continue
        child = schema._get_node(new_key)
        if isinstance(value, dict) and isinstance(child, DictConfig) and OmegaConf.get_type(child) not in (None, dict):
            value = _translate_node(value, child, dotted + ".", in_model, translation)
        out[new_key] = value
    for key, value in IMPLICITRON_SEMANTICS.get(class_name, {}).items():
        if key in schema:
            out[key] = value
    return out


def _renamed_args_key(key: str) -> str:
    for old, new in IMPLEMENTATION_RENAMES.items():
        if key.endswith(f"_{old}_args"):
            return key[: -len(f"{old}_args")] + f"{new}_args"
    return key


def _leave_out(dotted: str, value: Any, rule: LeftOut, in_model: bool, translation: Translation) -> None:
    if rule.required is not ANY and value != rule.required:
        where = "the model" if in_model else "the experiment"
        raise ConfigError(f"{dotted}={_show(value)}: only {rule.required!r} can be imported ({rule.why}); "
                          f"{where} would compute something else here")
    translation.left_out.append(f"{dotted}={_show(value)}: {rule.why or 'no counterpart here'}")


def _show(value: Any) -> str:
    return "{...}" if isinstance(value, dict) else repr(value) if isinstance(value, str) else str(value)


def _model_node(tree: Mapping[str, Any]) -> Tuple[str, Dict[str, Any], str]:
    """(model class type, its args tree, our dotted prefix of it) of a config tree, Implicitron's
    or translated (the model factory's implementation renamed in the prefix)."""
    factory_type = tree.get("model_factory_class_type", "ReconModelFactory")
    factory = tree.get(f"model_factory_{factory_type}_args", {})
    model_type = factory.get("model_class_type", MODEL_CLASS)
    model = factory.get(f"model_{model_type}_args", {})
    ours = IMPLEMENTATION_RENAMES.get(factory_type, factory_type)
    return model_type, model, f"model_factory_{ours}_args.model_{model_type}_args"


def _check_model_choice(implicitron: Mapping[str, Any], schema: Any) -> None:
    """Before translating: only GenericModel, with an implicit function whose weights a plugin
    maps and members whose renders are Implicitron's, can be imported. `schema`: our defaults."""
    from omegaconf import OmegaConf

    model_type, model, dotted = _model_node(implicitron)
    if model_type != MODEL_CLASS:
        raise ConfigError(f"model_class_type={model_type}: only Implicitron's {MODEL_CLASS} can be imported")
    function = model.get("implicit_function_class_type",
                         OmegaConf.select(schema, f"{dotted}.implicit_function_class_type"))
    if registered_implementation("implicit_function", function) is None:
        supported = sorted(c for m, c in _IMPLEMENTATIONS if m == "implicit_function")
        raise ConfigError(f"{dotted}.implicit_function_class_type={function}: importing its weights is not supported "
                          f"(supported: {', '.join(supported) or 'none'})")
    for member, why in NOT_AT_PARITY.items():
        chosen = model.get(f"{member}_class_type")
        if chosen in why:
            raise ConfigError(f"{dotted}.{member}_class_type={chosen}: importing it is not supported yet: "
                              f"{why[chosen]}")


def _resume_from_the_import(tree: Dict[str, Any]) -> None:
    """The model factory loads the imported checkpoint (the newest, the only one)."""
    factory_type = tree.get("model_factory_class_type", "ReconModelFactory")
    factory = tree.setdefault(f"model_factory_{factory_type}_args", {})
    factory.update(resume=True, resume_epoch=-1, force_resume=False)


def drop_unknown_zero_loss_weights(model_args: Any, translation: Translation, dotted: str) -> None:
    """Leave out loss_weights entries of weight 0 that our model never produces (e.g. loss_kl);
    a non-zero one stays, so building the model names it."""
    from recon_trainer.config import registry
    from recon_trainer.models.implicit_rendering_model import KNOWN_LOSSES
    from recon_trainer.rendering.renderer import BaseRenderer

    renderer = registry.get(BaseRenderer, model_args.renderer_class_type)
    known = set(KNOWN_LOSSES) | set(renderer.LOSS_NAMES)
    for key in [k for k, w in model_args.loss_weights.items() if k not in known and w == 0]:
        del model_args.loss_weights[key]
        translation.left_out.append(f"{dotted}.loss_weights.{key}=0: a loss this model does not produce")


# --- the state-dict mapping -------------------------------------------------------------------


def map_state_dict(state: StateDict, model_args: Any) -> StateDict:
    """Implicitron GenericModel's state dict -> ours, member by member (see the module docstring).
    `model_args`: the translated GenericModel config (for the members' class types)."""
    groups: Dict[Tuple[str, Optional[int]], StateDict] = {}
    for key, value in state.items():
        wrapped = _WRAPPED_FUNCTION.match(key)
        if wrapped:
            groups.setdefault(("implicit_function", int(wrapped.group(1))), {})[wrapped.group(2)] = value
        else:
            member, _, rest = key.partition(".")
            groups.setdefault((member, None), {})[rest] = value
    mapped: StateDict = {}
    for (member, index), part in groups.items():
        class_type = model_args.get(f"{member}_class_type") if isinstance(member, str) else None
        implementation = registered_implementation(member, class_type)
        if implementation is not None and implementation.map_state_dict is not None:
            part = implementation.map_state_dict(part)
        prefix = f"_implicit_functions.{index}." if index is not None else f"{member}."
        mapped.update({prefix + key: value for key, value in part.items()})
    return mapped


# --- the whole import --------------------------------------------------------------------------


@dataclasses.dataclass
class ImportResult:
    """What `import_implicitron` wrote: the run directory, the epoch, the model's implicit
    function, the number of tensors and the keys left out of the config."""

    exp_dir: str
    epoch: int
    implicit_function: str
    n_tensors: int
    left_out: List[str]


def import_implicitron(src: str, dst: str, epoch: Optional[int] = None) -> ImportResult:
    """Write the Implicitron exp_dir `src` (its expconfig.yaml and model_epoch_<epoch>.pth, the
    newest by default) as a run directory of ours at `dst`, which must not exist (or be empty).

    UserError subclasses (one line each) for a missing or unreadable file, a setting or
    implementation we cannot reproduce, tensors that do not fit, an existing destination.
    """
    from omegaconf import OmegaConf

    from recon_trainer.config import get_default_args, remove_unused_components
    from recon_trainer.experiment import Experiment
    from recon_trainer.training.model_factory import state_dict_mismatch

    if not os.path.isdir(src):
        raise DataFileError(f"{src} is not a folder: expected an Implicitron exp_dir (expconfig.yaml, "
                            "model_epoch_<8 digits>.pth)")
    _check_destination(dst)
    config_path = os.path.join(src, IMPLICITRON_CONFIG)
    translation = translate_config(read_implicitron_config(config_path), dst)
    checkpoint_path, epoch = find_implicitron_checkpoint(src, epoch)
    try:
        cfg = OmegaConf.merge(get_default_args(Experiment), translation.tree)
    except Exception as error:  # noqa: BLE001  (a value of the wrong type: OmegaConf's validation errors)
        raise ConfigError(f"{config_path}: {str(error).splitlines()[0]}") from None
    factory = cfg[f"model_factory_{cfg.model_factory_class_type}_args"]
    model_args = factory[f"model_{MODEL_CLASS}_args"]
    drop_unknown_zero_loss_weights(model_args, translation, f"model_factory_{cfg.model_factory_class_type}_args."
                                                            f"model_{MODEL_CLASS}_args")
    model = _build_model(model_args, config_path)
    state = map_state_dict(read_implicitron_state_dict(checkpoint_path), model_args)
    mismatch = state_dict_mismatch(model, state)
    if mismatch:
        raise DataFileError(f"{checkpoint_path}: its tensors do not fit the model {config_path} describes "
                            f"({mismatch})")
    model.load_state_dict(state)
    remove_unused_components(cfg)
    config_yaml = _config_yaml(cfg)
    _write_run_directory(dst, config_yaml, model.state_dict(), epoch, _record(src, checkpoint_path, translation))
    return ImportResult(os.path.abspath(dst), epoch, model_args.implicit_function_class_type, len(state),
                        translation.left_out)


def _build_model(model_args: Any, config_path: str) -> torch.nn.Module:
    from recon_trainer.config import expand_args_fields, registry
    from recon_trainer.models.base import ModelBase

    model_class = registry.get(ModelBase, MODEL_CLASS)
    expand_args_fields(model_class)
    try:
        return model_class(**model_args)
    except UserError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{config_path}: the translated model cannot be built: {error}") from None


def _config_yaml(cfg: Any) -> str:
    """The config as a run writes it (interpolations resolved); as written when one cannot be
    resolved here (e.g. an environment variable naming a dataset root that is set elsewhere)."""
    from omegaconf import OmegaConf

    resolved = cfg.copy()
    try:
        OmegaConf.resolve(resolved)
    except Exception:  # noqa: BLE001  (an unset ${oc.env:...}: keep the interpolation for the machine that has it)
        resolved = cfg
    return OmegaConf.to_yaml(resolved)


def _record(src: str, checkpoint_path: str, translation: Translation) -> str:
    import yaml

    record = {
        "source": os.path.abspath(src),
        "checkpoint": os.path.basename(checkpoint_path),
        "renamed": translation.renamed,
        "left_out": translation.left_out,
        "not_carried_over": ["the optimizer state (_opt.pth)", "the statistics (_stats.jgz)"],
    }
    return yaml.safe_dump(record, sort_keys=False, width=1000)


def _check_destination(dst: str) -> None:
    if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.listdir(dst)):
        raise RunDirectoryError(f"{dst} already exists: choose a new folder for the imported run (nothing was changed)")


def _write_run_directory(dst: str, config_yaml: str, model_state: StateDict, epoch: int, record: str) -> None:
    """Write the run into a temporary folder beside dst and rename it to dst, so dst appears
    complete or not at all; an existing non-empty dst is never touched."""
    from recon_trainer.fileio import TEMP_PREFIX, atomic_write
    from recon_trainer.training.checkpoints import TrainingCheckpoint, config_digest, save_checkpoint
    from recon_trainer.training.run_directory import EXPCONFIG_FILE
    from recon_trainer.training.stats import TrainingStats

    parent = os.path.dirname(os.path.abspath(dst))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX + os.path.basename(os.path.abspath(dst)), dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the run directory gets a folder's usual mode
    except OSError as error:
        raise WriteError(f"cannot write {dst}: {error.strerror or error}") from None
    try:
        stats = TrainingStats()
        stats.epoch = epoch
        checkpoint = TrainingCheckpoint(
            epoch=epoch, batches_done=0, epoch_finished=True, global_step=0, model=model_state,
            stats=stats.state_dict(), config_yaml=config_yaml, config_digest=config_digest(config_yaml),
        )
        atomic_write(os.path.join(tmp, EXPCONFIG_FILE), config_yaml)
        save_checkpoint(checkpoint, tmp)
        atomic_write(os.path.join(tmp, IMPORT_RECORD), record)
        _check_destination(dst)
        os.rename(tmp, dst)  # replaces an empty folder; fails (ENOTEMPTY / EEXIST) on anything else
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, WriteError):
            raise
        raise WriteError(f"cannot write {dst}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
