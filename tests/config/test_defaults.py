"""get_default_args and friends: typed configs, conversions, functions and plain classes."""
import dataclasses
import enum
import pickle
from typing import Any, List, Optional, Tuple

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from recon_trainer.config import (
    Configurable,
    enable_get_default_args,
    get_default_args,
    get_default_args_field,
    run_auto_creation,
)

from .fruits import FruitBowl, MainTest, Pear


class Color(enum.Enum):
    B1 = "b1"
    B2 = "b2"


def paint(a: int = 1, color: Color = Color.B1, shades: tuple = (1, 2), count: int = 0) -> Tuple[int, Color, tuple]:
    return a, color, shades


enable_get_default_args(paint)


class Brush:
    def __init__(self, width: Any = 1, height: Any = 2, handle: object = object(), tags: List[str] = []):
        self.width, self.height, self.tags = width, height, tags


enable_get_default_args(Brush)


def test_none_gives_empty_config():
    assert get_default_args(None) == DictConfig({})


def test_result_is_typed_down_to_nested_args():
    cfg = get_default_args(MainTest)
    assert OmegaConf.get_type(cfg) is MainTest
    assert OmegaConf.get_type(cfg.the_fruit_Pear_args) is Pear
    assert OmegaConf.is_missing(cfg, "n_ids")


def test_unknown_keys_and_bad_values_are_rejected():
    cfg = get_default_args(MainTest)
    with pytest.raises(ConfigAttributeError, match="Key 'bogus' not in 'MainTest'"):
        cfg.bogus = 1
    with pytest.raises(ConfigAttributeError, match="not in 'Pear'"):
        cfg.the_fruit_Pear_args.bogus = 1
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(cfg, {"the_fruit_Apple_args": {}})
    with pytest.raises(ValidationError):
        cfg.n_reps = "abc"
    cfg.n_reps = "5"
    assert cfg.n_reps == 5


def test_every_call_returns_a_fresh_copy():
    first = get_default_args(MainTest)
    first.the_fruit_Pear_args.n_pips = 100
    instance = FruitBowl()
    instance.main_fruit_Orange_args = {"changed": True}
    assert get_default_args(MainTest).the_fruit_Pear_args.n_pips == 13
    assert "changed" not in get_default_args(FruitBowl).main_fruit_Orange_args


def test_instance_config_equals_structured_instance():
    bowl = FruitBowl()
    assert get_default_args(bowl) == OmegaConf.structured(bowl)
    bowl2 = FruitBowl(main_fruit_Orange_args={})
    cfg = OmegaConf.structured(bowl2)
    assert cfg.main_fruit_Orange_args == {}
    assert OmegaConf.merge(get_default_args(FruitBowl), cfg) == get_default_args(FruitBowl)


def test_enums_by_name_and_yaml_round_trip():
    class Palette(Configurable):
        a: Color = Color.B1

    cfg = get_default_args(Palette)
    assert OmegaConf.to_yaml(cfg) == "a: B1\n"
    assert OmegaConf.merge(cfg, {"a": "B2"}).a is Color.B2
    with pytest.raises(ValidationError):
        OmegaConf.merge(cfg, {"a": "b2"})
    assert OmegaConf.merge(get_default_args(Palette), OmegaConf.create(OmegaConf.to_yaml(cfg))) == cfg
    assert get_default_args(paint).color is Color.B1


def test_function_args_round_trip_and_pickle():
    cfg = get_default_args(paint)
    assert isinstance(cfg.shades, ListConfig) and cfg.shades == [1, 2]
    cfg.a = 7
    assert paint(**cfg)[0] == 7
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(get_default_args(paint))) == get_default_args(paint)


def test_plain_class_args():
    cfg = get_default_args(Brush)
    assert dict(cfg) == {"width": 1, "height": 2, "tags": []}  # the object default is dropped
    cfg.tags.append("x")
    assert get_default_args(Brush).tags == []


def test_defaulted_argument_without_annotation_is_an_error():
    def bad(a=1):
        return a

    with pytest.raises(ValueError, match="argument 'a' has a default but no type annotation"):
        enable_get_default_args(bad)


def test_function_without_enable_is_an_error():
    def forgotten(a: int = 1):
        return a

    with pytest.raises(ValueError, match="Was enable_get_default_args forgotten"):
        get_default_args(forgotten)


def test_raw_dataclass_and_function_fields():
    @dataclasses.dataclass
    class Raw:
        required: int
        maybe: Optional[int] = None
        answer: Optional[int] = 42
        entries: List[int] = dataclasses.field(default_factory=list)

    def fn(required: int, maybe: Optional[int] = None, answer: Optional[int] = 42, entries: List[int] = []):
        return required

    enable_get_default_args(fn)
    raw, from_fn = get_default_args(Raw), get_default_args(fn)
    assert OmegaConf.is_missing(raw, "required") and "required" not in from_fn
    for cfg in (raw, from_fn):
        assert cfg.maybe is None and cfg.answer == 42 and cfg.entries == []


def test_get_default_args_field():
    @dataclasses.dataclass
    class Simple:
        x: int = 1

    class Holder(Configurable):
        simple: DictConfig = get_default_args_field(Brush)
        mydata: DictConfig = get_default_args_field(Simple, hook=lambda args: setattr(args, "x", 2))
        a_tuple: Tuple[float, ...] = (1.0, 2.0)
        f_args: DictConfig = get_default_args_field(paint)

        def __post_init__(self):
            run_auto_creation(self)

    cfg = get_default_args(Holder)
    assert list(cfg) == ["simple", "mydata", "a_tuple", "f_args"]
    assert cfg.mydata.x == 2 and cfg.a_tuple == [1.0, 2.0] and isinstance(cfg.a_tuple, ListConfig)
    holder = Holder(**cfg)
    assert paint(**holder.f_args)[2] == [1, 2]


def test_list_default_is_not_shared():
    class WithList(Configurable):
        numbers: List[int] = dataclasses.field(default_factory=lambda: [1])

    cfg = get_default_args(WithList)
    cfg.numbers.append(2)
    assert get_default_args(WithList).numbers == [1]


SHARED_NODE = OmegaConf.create({"a": 1})


@dataclasses.dataclass
class WithNodeDefault:
    extra: Any = SHARED_NODE  # a config node as a plain default: every config gets a copy


def _containers(node):
    yield node
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)):
            yield from _containers(child)


def test_default_configs_copy_nodes_as_omegaconf_does():
    """get_default_args builds without OmegaConf's per-level copies (defaults._structured), and the
    configs it returns behave as usual: no flag left on any node, assignments copy, nothing shared."""
    cfg, other = get_default_args(MainTest), get_default_args(MainTest)
    assert all(node._get_node_flag("no_deepcopy_set_nodes") is None for node in _containers(cfg))
    cfg.the_fruit_Pear_args = other.the_fruit_Pear_args
    other.the_fruit_Pear_args.n_pips = 99
    assert cfg.the_fruit_Pear_args.n_pips == 13
    first = get_default_args(WithNodeDefault)
    first.extra.a = 2
    assert SHARED_NODE.a == 1 and get_default_args(WithNodeDefault).extra.a == 1
    bowl = FruitBowl(main_fruit_class_type="Pear")
    from_instance = get_default_args(bowl)
    from_instance.main_fruit_Pear_args.n_pips = 98
    assert bowl.main_fruit_Pear_args.n_pips == 13


def test_building_without_copies_gives_the_plain_omegaconf_config(monkeypatch):
    """defaults._structured (no per-level copies) against plain OmegaConf.structured at every level,
    on the largest config there is: the same keys, values and node types."""
    from recon_trainer.config import defaults, expand_args_fields
    from recon_trainer.experiment import Experiment

    expand_args_fields(Experiment)
    fast = get_default_args(Experiment)
    monkeypatch.setattr(defaults, "_structured", OmegaConf.structured)
    plain = get_default_args(Experiment)
    assert OmegaConf.to_yaml(fast) == OmegaConf.to_yaml(plain)
    fast_nodes, plain_nodes = list(_containers(fast)), list(_containers(plain))
    assert len(fast_nodes) == len(plain_nodes) > 100
    assert [OmegaConf.get_type(n) for n in fast_nodes] == [OmegaConf.get_type(n) for n in plain_nodes]
    assert [n._metadata.ref_type for n in fast_nodes] == [n._metadata.ref_type for n in plain_nodes]
    assert [n._metadata.flags for n in fast_nodes] == [n._metadata.flags for n in plain_nodes]
