"""Expression aliases: other names for a dataset class (EXPRESSION_ALIASES) and for its fields
(KEYWORD_ALIASES), with the usual errors and did-you-mean hints."""
import pytest

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.mixing import MixableDataset, build_mixture, named_terms
from recon_trainer.data.mixing.expression import dataset_class, validate_mixture


@registry.register
class AliasToySet(MixableDataset):
    """`size` items (label, index, views)."""

    EXPRESSION_ALIASES = ("AliasToy", "alias_toy")
    KEYWORD_ALIASES = {"num_frames": "views", "num_seq": "size"}
    POSITIONAL_FIELDS = ("size",)

    size: int = 3  # number of items
    views: int = 5  # views per item

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return self.label(), index, self.views


def test_class_found_by_its_name_and_its_aliases():
    assert dataset_class("AliasToySet") is AliasToySet
    assert dataset_class("AliasToy") is AliasToySet and dataset_class("alias_toy") is AliasToySet


def test_alias_term_is_labelled_as_written():
    text = "2 @ AliasToy(num_seq=4) + alias_toy(1) + AliasToySet(name='mine', size=2)"
    mixture = build_mixture(text)
    assert mixture.labels() == ["AliasToy", "alias_toy", "mine"]
    assert [name for name, _ in named_terms(text)] == ["AliasToy", "alias_toy", "mine"]
    assert mixture[(2, 0)][0] == "alias_toy"


def test_keyword_aliases_set_their_fields():
    leaf = build_mixture("AliasToy(num_frames=2, num_seq=7)").children[0]
    assert (leaf.views, leaf.size, len(leaf)) == (2, 7, 7)
    assert build_mixture("AliasToySet(views=3)").children[0].views == 3  # the field's own name still works


@pytest.mark.parametrize(
    "text, message",
    [
        ("AliasToy(num_frames=2, views=3)", r"AliasToy got two values for 'views': 2 \(as 'num_frames'\) and 3$"),
        ("AliasToy(views=3, num_frames=2)", r"got two values for 'views': 3 \(as 'views'\) and 2 \(as 'num_frames'\)$"),
        ("AliasToy(4, num_seq=2)", r"got two values for 'size': 4 \(positional\) and 2 \(as 'num_seq'\)$"),
        ("AliasToy(num_frame=2)",
         r"has no field 'num_frame'; did you mean 'num_frames'\? fields: .*num_frames \(= views\)"),
        ("AliasToy(num_frames='x')", r"AliasToy.views='x'"),
        ("Aliastoy(size=2)", r"dataset='Aliastoy' is not registered for MixableDataset; did you mean 'AliasToy'\?"),
    ],
)
def test_alias_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        validate_mixture(text)


def test_an_alias_claimed_twice_is_an_error(monkeypatch):
    other = type("AliasToyOther", (AliasToySet,), {"__module__": __name__, "EXPRESSION_ALIASES": ("alias_toy",)})
    monkeypatch.setitem(registry._implementations[MixableDataset], "AliasToyOther", other)
    with pytest.raises(ConfigError, match=r"'alias_toy' is an alias of several datasets: AliasToyOther, AliasToySet"):
        dataset_class("alias_toy")
    assert dataset_class("AliasToySet") is AliasToySet  # a class name is never ambiguous
