"""remove_unused_components and the golden YAML dump (field order is part of the contract)."""
import os
from typing import Optional

from omegaconf import OmegaConf

from recon_trainer.config import (
    Configurable,
    ReplaceableBase,
    get_default_args,
    registry,
    remove_unused_components,
    run_auto_creation,
)

from .fruits import FruitBowl, MainTest

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "main_test.yaml")


def test_golden_yaml_of_a_small_hierarchy():
    cfg = get_default_args(MainTest)
    cfg.the_fruit_class_type = "Pear"
    cfg.the_second_fruit_class_type = "Banana"
    remove_unused_components(cfg)
    with open(GOLDEN) as f:
        assert OmegaConf.to_yaml(cfg, sort_keys=False) == f.read()
    # an instance's structured config prunes to the same dump
    main = MainTest(n_ids=3, the_fruit_class_type="Pear", the_second_fruit_class_type="Banana")
    from_instance = OmegaConf.structured(main)
    remove_unused_components(from_instance)
    assert list(from_instance) == list(cfg)


def test_pruned_config_builds_the_same_object():
    cfg = get_default_args(FruitBowl)
    remove_unused_components(cfg)
    assert sorted(cfg) == [
        "extra_fruit_Kiwi_args",
        "extra_fruit_class_type",
        "main_fruit_Orange_args",
        "main_fruit_class_type",
        "no_fruit_class_type",
    ]
    bowl = FruitBowl(**cfg)
    assert type(bowl.main_fruit).__name__ == "Orange" and bowl.no_fruit is None


def test_disabled_optional_configurable_is_dropped():
    class Settings(Configurable):
        n: int = 1

    class Holder(Configurable):
        mt: Optional[Settings]
        mt_enabled: bool = False

    cfg = get_default_args(Holder)
    assert list(cfg) == ["mt_enabled", "mt_args"]
    remove_unused_components(cfg)
    assert OmegaConf.to_yaml(cfg) == "mt_enabled: false\n"


def test_member_names_that_prefix_each_other():
    class Food(ReplaceableBase):
        pass

    @registry.register
    class Apple(Food):
        pass

    @registry.register
    class O(Food):  # "fruit_O_args" starts with "fruit_" + "O": prefix matching would confuse it
        pass

    class Basket(Configurable):
        fruit: Food
        fruit_class_type: str = "Apple"
        fruit_o: Food
        fruit_o_class_type: str = "O"

        def __post_init__(self):
            run_auto_creation(self)

    cfg = get_default_args(Basket)
    remove_unused_components(cfg)
    assert list(cfg) == ["fruit_class_type", "fruit_o_class_type", "fruit_Apple_args", "fruit_o_O_args"]
    basket = Basket(**cfg)
    assert isinstance(basket.fruit, Apple) and isinstance(basket.fruit_o, O)
