"""expand_args_fields, member kinds, create functions and run_auto_creation."""
import dataclasses
import warnings
from typing import List, Optional, Tuple

import pytest
import torch
from omegaconf import OmegaConf

from recon_trainer.config import (
    ConfigError,
    Configurable,
    LateRegistrationWarning,
    MemberKind,
    ReplaceableBase,
    expand_args_fields,
    get_default_args,
    is_expanded,
    registry,
    run_auto_creation,
)
from recon_trainer.config.members import classify

from .fruits import Fruit, FruitBowl, Kiwi, MainTest, Orange, Pear, Pineapple


def test_is_expanded_only_for_the_class_itself():
    @dataclasses.dataclass
    class A:
        a: int = 1

    class B(A):
        pass

    assert is_expanded(A) and dataclasses.is_dataclass(B) and not is_expanded(B)


def test_classify():
    class Plain(Configurable):
        pass

    assert classify(int) is None
    assert classify(Fruit) == (Fruit, MemberKind.REPLACEABLE)
    assert classify(Optional[Fruit]) == (Fruit, MemberKind.OPTIONAL_REPLACEABLE)
    assert classify(Plain) == (Plain, MemberKind.CONFIGURABLE)
    assert classify(Optional[Plain]) == (Plain, MemberKind.OPTIONAL_CONFIGURABLE)
    for ordinary in (Optional[int], Tuple[Fruit], Tuple[Fruit, Plain], Optional[List[int]], List[Fruit]):
        assert classify(ordinary) is None


def test_edit_defaults_and_build():
    cfg = get_default_args(MainTest)
    cfg.n_ids = 9
    cfg.the_fruit_class_type = "Pear"
    cfg.the_fruit_Pear_args.n_pips = 3
    main = MainTest(**cfg)
    assert isinstance(main.the_fruit, Pear) and main.the_fruit.n_pips == 3
    assert main.n_ids == 9 and main.n_reps == 8
    # the user's create_the_second_fruit builds an unregistered class whatever the config says
    assert isinstance(main.the_second_fruit, Pineapple) and main.the_second_fruit.the_size == 9
    # editing one config leaves later defaults alone
    assert get_default_args(MainTest).the_fruit_Pear_args.n_pips == 13
    assert MainTest._creation_functions == ("create_the_fruit", "create_the_second_fruit")


def test_processed_members_and_generated_keys():
    assert set(MainTest._processed_members) == {"the_fruit", "the_second_fruit"}
    assert MainTest._processed_members["the_fruit"].declared is Fruit
    main = MainTest(n_ids=1, the_fruit_class_type="Kiwi")
    assert main._processed_members["the_fruit"].base is Fruit
    cfg = get_default_args(MainTest)
    assert "the_fruit" not in cfg and "the_second_fruit" not in cfg
    assert cfg.the_fruit_class_type == "UNDEFAULTED"


def test_members_not_created_without_post_init():
    class Lazy(Configurable):
        fruit: Fruit
        fruit_class_type: str = "Pear"

    lazy = Lazy()
    with pytest.raises(AttributeError):
        lazy.fruit


def test_post_init_may_edit_args_before_creation():
    class Inner(Configurable):
        fruit: Fruit
        fruit_class_type: str = "Pear"

        def __post_init__(self):
            run_auto_creation(self)

    class Outer(Configurable):
        inner: Inner

        def __post_init__(self):
            self.inner_args.fruit_class_type = "Orange"
            run_auto_creation(self)

    assert isinstance(Outer().inner.fruit, Orange)


def test_recursion_guard_for_implementation_subclassing_container():
    class Shape(ReplaceableBase):
        pass

    @registry.register
    class Triangle(Shape):
        a: int = 5

    @registry.register
    class LargeShape(Shape):
        inner: Shape
        inner_class_type: str = "Triangle"

        def __post_init__(self):
            run_auto_creation(self)

    cfg = get_default_args(LargeShape)
    assert "inner_LargeShape_args" not in cfg
    cfg.inner_Triangle_args.a += 10
    assert LargeShape(**cfg).inner.a == 15


def test_frozen_dataclass_instance_default_is_an_ordinary_field():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        x: int = 3

    class Holder(Configurable):
        settings: Settings = Settings()

    assert get_default_args(Holder).settings.x == 3
    assert Holder._processed_members == {}


def test_defaulted_container_builds_with_no_arguments():
    bowl = FruitBowl()
    assert isinstance(bowl.main_fruit, Orange)
    assert isinstance(bowl.extra_fruit, Kiwi)  # Optional slot with a plain str class type
    assert bowl.no_fruit is None  # Optional slot with class type None
    assert "no_fruit_Kiwi_args" in get_default_args(FruitBowl)


def test_inheritance_of_members_and_post_init():
    class Parent(ReplaceableBase):
        fruit: Fruit
        fruit_class_type: str = "Pear"

        def __post_init__(self):
            run_auto_creation(self)

    @registry.register
    class Child(Parent):
        extra: int = 1

        def __post_init__(self):
            self.extra = 2
            run_auto_creation(self)

    child = Child()
    assert isinstance(child.fruit, Pear) and child.extra == 2
    keys = list(get_default_args(Child))
    assert keys[0] == "fruit_class_type" and keys[-1] == "extra"  # inherited fields come first


def test_unregistered_class_type_fails_with_choices():
    with pytest.raises(ConfigError, match="'NotAFruit' is not registered for Fruit"):
        FruitBowl(extra_fruit_class_type="NotAFruit")
    with pytest.raises(ConfigError, match="the_fruit_class_type is not set"):
        MainTest(n_ids=1)


def test_late_registration_is_reported():
    class Seed(ReplaceableBase):
        pass

    @registry.register
    class Sunflower(Seed):
        pass

    class Packet(Configurable):
        seed: Seed
        seed_class_type: str = "Sunflower"

        def __post_init__(self):
            run_auto_creation(self)

    expand_args_fields(Packet)
    with pytest.warns(LateRegistrationWarning, match="Pumpkin was registered after .*Packet was expanded"):

        @registry.register
        class Pumpkin(Seed):
            pass

    assert "seed_Pumpkin_args" not in get_default_args(Packet)
    with pytest.raises(ConfigError, match="Pumpkin was registered after .*Packet was expanded.*Import the module"):
        Packet(seed_class_type="Pumpkin")
    # a user may still build it by giving its args explicitly
    packet = Packet(seed_class_type="Sunflower")
    packet.seed_class_type, packet.seed_Pumpkin_args = "Pumpkin", {}
    run_auto_creation(packet)
    assert isinstance(packet.seed, Pumpkin)


def test_redefining_an_implementation():
    class Berry(ReplaceableBase):
        pass

    @registry.register
    class Grape(Berry):
        large: bool = False

        def get_color(self):
            return "red"

    class Bowl(Configurable):
        berry: Berry
        berry_class_type: str = "Grape"

        def __post_init__(self):
            run_auto_creation(self)

    old_args = get_default_args(Bowl)
    assert Bowl().berry.get_color() == "red"

    @registry.register
    class Grape(Berry):  # noqa: F811  (the redefinition is the point)
        large: bool = True

        def get_color(self):
            return "green"

    with pytest.warns(UserWarning, match="New implementation of Grape is being chosen"):
        bowl = Bowl()
    assert bowl.berry.large is True and bowl.berry.get_color() == "green"
    with pytest.warns(UserWarning, match="New implementation of Grape"):
        old = Bowl(**old_args)
    assert old.berry.large is False and old.berry.get_color() == "green"


def test_configurable_members():
    class B(Configurable):
        n: str = "2"

    class A(Configurable):
        b1: B
        b2: Optional[B]
        b2_enabled: bool = True
        b3: Optional[B]
        b3_enabled: bool = False

        def __post_init__(self):
            run_auto_creation(self)

    cfg = get_default_args(A)
    assert list(cfg) == ["b2_enabled", "b3_enabled", "b1_args", "b2_args", "b3_args"]
    assert "b1_enabled" not in cfg
    a = A(**cfg)
    assert a.b1.n == "2" and isinstance(a.b2, B) and a.b3 is None


def test_optional_configurable_needs_enabled_flag():
    class B(Configurable):
        pass

    class A(Configurable):
        b: Optional[B]

    with pytest.raises(ValueError, match="no corresponding member b_enabled"):
        expand_args_fields(A)


def test_generated_field_already_present_is_an_error():
    class A(Configurable):
        fruit: Fruit
        fruit_Pear_args: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(ValueError, match="Cannot generate .*fruit_Pear_args because it is already present"):
        expand_args_fields(A)


def test_slot_typed_with_a_non_root_class_is_an_error():
    class A(Configurable):
        pear: Pear

    with pytest.raises(TypeError, match="annotate a slot with its namespace Fruit, not Pear"):
        expand_args_fields(A)


def test_module_init_runs_before_fields_are_set():
    class Head(Configurable, torch.nn.Module):
        width: int = 4

        def __post_init__(self):
            self.linear = torch.nn.Linear(self.width, 2)

    class Net(torch.nn.Module, Configurable):
        head: Head
        scale: float = 2.0

        def __post_init__(self):
            run_auto_creation(self)

    net = Net()
    assert isinstance(net.head, torch.nn.Module)
    assert sorted(name for name, _ in net.named_parameters()) == ["head.linear.bias", "head.linear.weight"]
    assert net.scale == 2.0 and hash(net) == hash(net) and net != Net()


def test_instantiation_expands_lazily():
    class Lazy(Configurable):
        a: int = 3

    assert not is_expanded(Lazy)
    assert Lazy().a == 3 and is_expanded(Lazy)


def test_string_annotations_are_resolved():
    namespace = {}
    exec(  # a class body written with `from __future__ import annotations`
        "from __future__ import annotations\n"
        "from typing import Optional\n"
        "class Basket(Configurable):\n"
        "    fruit: Fruit\n"
        "    spare: Optional[Fruit]\n"
        "    fruit_class_type: str = 'Pear'\n"
        "    spare_class_type: Optional[str] = None\n"
        "    size: int = 2\n",
        {"Configurable": Configurable, "Fruit": Fruit, "__name__": __name__},
        namespace,
    )
    Basket = namespace["Basket"]
    cfg = get_default_args(Basket)
    assert cfg.fruit_Pear_args.n_pips == 13 and cfg.size == 2
    assert Basket._processed_members["spare"].kind is MemberKind.OPTIONAL_REPLACEABLE


def test_tweak_args():
    class Settings(Configurable):
        n: int = 1
        a: int = 2

    class Tweaked(Configurable):
        fruit: Fruit
        fruit2: Fruit
        s: Settings
        s2: Settings

        @classmethod
        def fruit_tweak_args(cls, member_type, args):
            if member_type is Pear:
                args.n_pips = 19

        @classmethod
        def s_tweak_args(cls, member_type, args):
            assert member_type is Settings
            args.n = 993
            del args.a

    cfg = get_default_args(Tweaked)
    assert cfg.fruit_Pear_args.n_pips == 19 and cfg.fruit_LargePear_args.n_pips == 13
    assert cfg.fruit2_Pear_args.n_pips == 13
    assert dict(cfg.s_args) == {"n": 993} and dict(cfg.s2_args) == {"n": 1, "a": 2}


def test_create_functions_delegate_to_impl():
    received = []

    class B(Configurable):
        pass

    class A(Configurable):
        fruit: Fruit
        fruit_class_type: str = "Orange"
        maybe: Optional[Fruit]
        maybe_class_type: Optional[str] = "Orange"
        b: B
        c: Optional[B]
        c_enabled: bool = True

        def __post_init__(self):
            run_auto_creation(self)

    for member in ("fruit", "maybe", "b", "c"):
        setattr(A, f"create_{member}_impl", lambda self, control, args, m=member: received.append((m, control)))
    a = A()
    assert received == [("fruit", "Orange"), ("maybe", "Orange"), ("b", True), ("c", True)]
    assert not hasattr(a, "fruit")

    class D(Configurable):
        maybe: Optional[Fruit]
        maybe_class_type: Optional[str] = None
        c: Optional[B]
        c_enabled: bool = False

        def __post_init__(self):
            run_auto_creation(self)

    d = D()
    assert d.maybe is None and d.c is None


def test_pre_expand_is_called_also_from_a_base():
    calls = []

    class Base(ReplaceableBase):
        @classmethod
        def pre_expand(cls):
            calls.append(cls.__name__)

    @registry.register
    class Impl(Base):
        pass

    expand_args_fields(Impl)
    assert sorted(calls) == ["Base", "Impl"]


def test_plain_annotated_bases_are_not_processed():
    class WithAnnotations:
        not_a_field: int

    class Mixed(WithAnnotations, Configurable):
        a: int = 1

    assert [f.name for f in dataclasses.fields(expand_args_fields(Mixed))] == ["a"]
    with pytest.raises(TypeError, match="non-default argument"):
        dataclasses.dataclass(type("NotADataclass", (WithAnnotations,), {"__annotations__": {"b": int, "c": int}, "b": 1}))


def test_late_registered_subclass_of_two_bases_is_ignored_by_container():
    class Parent(ReplaceableBase):
        pass

    class Main(Configurable):
        parent: Parent
        parent_class_type: str = "UNDEFAULTED"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LateRegistrationWarning)
        expand_args_fields(Main)

        @registry.register
        class Derived(Parent, Main):
            pass

    assert list(get_default_args(Main)) == ["parent_class_type"]
    assert OmegaConf.get_type(get_default_args(Derived)) is Derived
