"""remove_unused_components: drop the args of implementations a config does not select."""
from omegaconf import DictConfig, OmegaConf, open_dict

from .members import MemberKind


def remove_unused_components(cfg: DictConfig) -> None:
    """In place: keep only `<member>_<Chosen>_args` of each slot and drop disabled `<member>_args`.

    Matches the exact generated keys of each member (from the config's schema), so member names
    that prefix one another (`fruit`, `fruit_o`) are handled. Recurses into nested configs.
    """
    schema = OmegaConf.get_type(cfg)
    members = getattr(schema, "_processed_members", {})
    with open_dict(cfg):
        for spec in members.values():
            if spec.kind.replaceable:
                if spec.type_key not in cfg or OmegaConf.is_missing(cfg, spec.type_key):
                    continue
                chosen = cfg[spec.type_key]
                for impl_name in spec.implementations:
                    if impl_name != chosen:
                        cfg.pop(spec.args_key(impl_name), None)
            elif spec.kind is MemberKind.OPTIONAL_CONFIGURABLE and cfg.get(spec.enabled_key) is False:
                cfg.pop(spec.args_key(), None)
    for key in list(cfg.keys()):
        if OmegaConf.is_missing(cfg, key) or OmegaConf.is_interpolation(cfg, key):
            continue
        value = cfg[key]
        if isinstance(value, DictConfig):
            remove_unused_components(value)
