"""A small example hierarchy shared by the config tests."""
from typing import Optional

from recon_trainer.config import Configurable, ReplaceableBase, registry, run_auto_creation


class Fruit(ReplaceableBase):
    """Something edible that grows on plants."""


@registry.register
class Banana(Fruit):
    """A fruit with mandatory fields."""

    pips: int
    spots: int
    bananame: str


@registry.register
class Pear(Fruit):
    """A fruit with defaults."""

    n_pips: int = 13


@registry.register
class LargePear(Pear):
    """Registered below an intermediate class."""


@registry.register
class Orange(Fruit):
    pass


@registry.register
class Kiwi(Fruit):
    pass


class Pineapple(Fruit):
    """Never registered."""

    def __init__(self, the_size: int) -> None:
        self.the_size = the_size


class MainTest(Configurable):
    the_fruit: Fruit
    n_ids: int
    n_reps: int = 8
    the_second_fruit: Fruit

    def create_the_second_fruit(self) -> None:
        self.the_second_fruit = Pineapple(the_size=self.n_ids)

    def __post_init__(self) -> None:
        run_auto_creation(self)


class FruitBowl(Configurable):
    main_fruit: Fruit
    main_fruit_class_type: str = "Orange"
    extra_fruit: Optional[Fruit]
    extra_fruit_class_type: Optional[str] = "Kiwi"
    no_fruit: Optional[Fruit]
    no_fruit_class_type: Optional[str] = None

    def __post_init__(self) -> None:
        run_auto_creation(self)
