"""Registry: namespaces, lookup through intermediate classes, errors with the closest match."""
import pytest

from recon_trainer.config import ConfigError, Configurable, ReplaceableBase, registry
from recon_trainer.config.registry import namespace_of

from .fruits import Banana, Fruit, LargePear, MainTest, Pear, Pineapple


def test_namespace_of():
    assert namespace_of(ReplaceableBase) is None
    assert namespace_of(MainTest) is None  # a Configurable has no namespace
    assert namespace_of(Fruit) is Fruit
    assert namespace_of(Pear) is Fruit
    assert namespace_of(LargePear) is Fruit  # registered grandchild
    assert namespace_of(Pineapple) is Fruit  # unregistered child


def test_get_by_namespace_and_intermediate_class():
    assert registry.get(Fruit, "Banana") is Banana
    assert registry.get(Pear, "Pear") is Pear
    assert registry.get(Pear, "LargePear") is LargePear


def test_get_errors():
    class Animal(ReplaceableBase):
        pass

    with pytest.raises(ConfigError, match="'Banana' is not registered for Animal"):
        registry.get(Animal, "Banana")
    with pytest.raises(ConfigError, match="'Kiwis' is not registered for Fruit; did you mean 'Kiwi'\\?"):
        registry.get(Fruit, "Kiwis")
    with pytest.raises(ValueError, match="resolves to .* which does not subclass"):
        registry.get(Pear, "Banana")
    with pytest.raises(ValueError, match="Expected the name"):
        registry.get(Fruit, 3)


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError) as error:
        registry.get(Fruit, "Apple", slot="bowl.main_fruit_class_type")
    assert str(error.value) == (
        "bowl.main_fruit_class_type='Apple' is not registered for Fruit; "
        "choices: Banana, Kiwi, LargePear, Orange, Pear"
    )


def test_get_all_sorted_and_base_excluded():
    names = [c.__name__ for c in registry.get_all(Fruit)]
    assert names == sorted(names)
    assert {"Banana", "Kiwi", "LargePear", "Orange", "Pear"} <= set(names)
    assert registry.get_all(Pear) == [LargePear]


def test_register_inside_function():
    class Vegetable(ReplaceableBase):
        pass

    @registry.register
    class Leek(Vegetable):
        pass

    assert registry.get_all(Vegetable) == [Leek]
    assert registry.namespaces().count(Vegetable) == 1


def test_register_non_replaceable_fails():
    class NotAFruit(Configurable):
        pass

    with pytest.raises(ValueError, match="Cannot tell what it is"):
        registry.register(NotAFruit)


def test_a_second_class_of_the_same_name_is_an_error():
    class Banana(Fruit):  # noqa: F811 - the clash is the point
        pass

    with pytest.raises(ValueError, match=r"Fruit already has an implementation named Banana \(tests.config.fruits\)"):
        registry.register(Banana)
    assert registry.get(Fruit, "Banana") is not Banana
    registry.register(registry.get(Fruit, "Banana"))  # the same class again (a re-import) is fine
