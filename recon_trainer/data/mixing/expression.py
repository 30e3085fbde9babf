"""Mixing expressions: a safe parser for DUSt3R-style dataset arithmetic, and the builder.

    "10000 @ ReDWeb(root='ReDWeb_V1', training_crop=384) + 2 * TUM(root='tum', split='test')"
    " + 100_000 @ Habitat(1_000_000, split='train', aug_crop=16, resolution=224, transform=ColorJitter)"

Grammar (`@` and `*` bind tighter than `+`, as in Python):

    expr := term ('+' term)*
    term := INT '@' atom | INT '*' atom | atom
    atom := Name '(' [literal, ...] [key=value, ...] ')' | Name | '(' expr ')'
    value := literal | Name

`N @ ds` resizes ds to N items (ResizedDataset), `k * ds` repeats every item k times
(RepeatedDataset), `+` concatenates. Names are registered MixableDataset subclasses and the
keywords their config fields; positional arguments fill the fields the class lists in
POSITIONAL_FIELDS (DUSt3R's `Habitat(1_000_000, ...)`). A class is also found by the names in its
EXPRESSION_ALIASES, and keywords in its KEYWORD_ALIASES set the fields they map to. Values are
literals (numbers, strings, True/False/None, tuples or lists of them) or the bare name of a
registered image transform (`transform=ColorJitter`, data/transforms.py), which the field receives
as its name (a string).
A count may carry a sign, as DUSt3R's " + 100_000 @ Habitat(...)" does. The text is parsed with
`ast.parse` and walked through a whitelist: nothing in it is ever executed.

Test sets: `named_terms` splits an expression on its top-level '+' into separately named parts
(DUSt3R and Spann3R build one test loader per '+'-separated part of their test string).
"""
from __future__ import annotations

import ast
import dataclasses
import os
from typing import Any, Dict, Iterator, List, Sequence, Tuple, Union

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recon_trainer.config import ConfigError, expand_args_fields, get_default_args, registry
from recon_trainer.config.choices import choice_fields
from recon_trainer.config.errors import did_you_mean
from recon_trainer.config.registry import unknown_implementation_message
from recon_trainer.data.mixing.base import MixableDataset
from recon_trainer.data.mixing.combinators import ConcatDataset, RepeatedDataset, ResizedDataset
from recon_trainer.data.transforms import transform_names


@dataclasses.dataclass(frozen=True)
class DatasetCall:
    """`Name(arg, ..., key=value, ...)`: a registered MixableDataset and its config fields
    (positional arguments fill the class's POSITIONAL_FIELDS when it is built)."""

    name: str
    kwargs: Dict[str, Any]
    text: str = dataclasses.field(default="", compare=False)  # the term as written
    args: Tuple[Any, ...] = ()  # positional arguments, in order


@dataclasses.dataclass(frozen=True)
class Resized:
    """`n @ child`: n items drawn from a per-epoch permutation of child."""

    n: int
    child: "Node"
    text: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class Repeated:
    """`k * child`: every item of child k times."""

    k: int
    child: "Node"
    text: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class Concat:
    """`a + b + ...`: the terms one after the other (nested sums are flattened)."""

    children: Tuple["Node", ...]
    text: str = dataclasses.field(default="", compare=False)


Node = Union[DatasetCall, Resized, Repeated, Concat]

_LITERAL_TYPES = (int, float, str, bool, type(None))
_OPERATORS = {ast.Add: "+", ast.Mult: "*", ast.MatMult: "@", ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//",
              ast.Mod: "%", ast.Pow: "**", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^",
              ast.LShift: "<<", ast.RShift: ">>"}
_DESCRIPTIONS = {ast.Attribute: "attribute access", ast.Subscript: "subscripting", ast.Lambda: "a lambda",
                 ast.Starred: "unpacking", ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
                 ast.Compare: "a comparison", ast.BoolOp: "a boolean operator", ast.IfExp: "a conditional",
                 ast.NamedExpr: "an assignment", ast.UnaryOp: "a unary operator",
                 ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator"}
_EXPECTED = "expected terms like 'N @ Dataset(key=value, ...)' or 'k * Dataset(...)' joined by '+'"
# The most items a count or any part of an expression may have. 10**12 items is centuries of
# training at thousands of items per second, so no real mixture comes near it, while it keeps every
# length, offset and index far inside int64 (torch, len(), DataLoader) and exact in float64
# (below 2**53), and a permutation domain (data/mixing/permutation.py) at 40 bits.
MAX_ITEMS = 10**12
MAX_ITEMS_TEXT = "10**12"  # MAX_ITEMS as messages write it


class _Parser:
    """Walks the AST of one expression; every error quotes the expression and the piece."""

    def __init__(self, text: str) -> None:
        # Newlines (from multi-line YAML strings) and tabs become spaces: columns stay the same.
        self.source = text.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()

    def error(self, problem: str, node: ast.AST) -> ConfigError:
        piece = ast.get_source_segment(self.source, node) or ""
        return ConfigError(f"mixing expression {self.source!r}: {problem} (column {node.col_offset + 1}: {piece!r})")

    def parse(self) -> Node:
        if not self.source:
            raise ConfigError("mixing expression is empty; " + _EXPECTED)
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as error:
            raise ConfigError(
                f"mixing expression {self.source!r}: invalid syntax at column {error.offset}: {error.msg}"
            ) from None
        return self.node(tree.body)

    def node(self, node: ast.AST) -> Node:
        text = ast.get_source_segment(self.source, node) or ""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return Concat(tuple(self.node(term) for term in self.terms(node)), text)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.MatMult)):
            count = self.count(node)
            child = self.node(node.right)
            return Resized(count, child, text) if isinstance(node.op, ast.MatMult) else Repeated(count, child, text)
        if isinstance(node, ast.BinOp):
            raise self.error(f"operator {_OPERATORS.get(type(node.op), '?')!r} is not supported; {_EXPECTED}", node)
        if isinstance(node, ast.Call):
            return self.call(node, text)
        if isinstance(node, ast.Name):
            return DatasetCall(node.id, {}, text)
        if isinstance(node, ast.Constant):
            raise self.error(
                f"{node.value!r} is not a dataset; a count goes before a dataset, as in "
                f"'{node.value} @ Dataset(...)' (resize) or '{node.value} * Dataset(...)' (repeat)", node
            )
        raise self.error(f"{_DESCRIPTIONS.get(type(node), type(node).__name__)} is not allowed; {_EXPECTED}", node)

    def terms(self, node: ast.AST) -> List[ast.AST]:
        """The operands of a chain of '+', left to right."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.terms(node.left) + self.terms(node.right)
        return [node]

    def count(self, node: ast.BinOp) -> int:
        """The positive integer literal left of '@' or '*'."""
        symbol = _OPERATORS[type(node.op)]
        if self.is_literal(node.right) and not self.is_literal(node.left):
            value = ast.get_source_segment(self.source, node.right)
            raise self.error(f"the count goes first: write '{value} {symbol} dataset', not 'dataset {symbol} {value}'",
                             node)
        if not self.is_literal(node.left):
            raise self.error(f"the left side of {symbol!r} must be a positive integer literal", node.left)
        value = ast.literal_eval(node.left)
        if type(value) is not int or value < 1:
            raise self.error(f"the count before {symbol!r} must be a positive integer, got {value!r}", node.left)
        if value > MAX_ITEMS:
            raise self.error(f"the count before {symbol!r} is {value}, above the maximum {MAX_ITEMS_TEXT}", node.left)
        return value

    def call(self, node: ast.Call, text: str) -> DatasetCall:
        if not isinstance(node.func, ast.Name):
            raise self.error("only a registered dataset name can be called, as in 'Dataset(key=value)'", node.func)
        name = node.func.id
        args = []
        for position, arg in enumerate(node.args, 1):
            if isinstance(arg, ast.Starred):
                raise self.error(f"{name}: '*' unpacking is not supported; write key=value", arg)
            if not self.is_literal(arg):
                raise self.error(f"{name}: positional argument {position} must be a literal (number, string, True, "
                                 f"False, None, or a tuple or list of them)", arg)
            args.append(ast.literal_eval(arg))
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(f"{name}: '**' unpacking is not supported; write key=value", keyword)
            kwargs[keyword.arg] = self.keyword_value(name, keyword)
        return DatasetCall(name, kwargs, text, tuple(args))

    def keyword_value(self, name: str, keyword: ast.keyword) -> Any:
        """A literal, or the name of a registered transform (a bare Name) as a string."""
        value = keyword.value
        if self.is_literal(value):
            return ast.literal_eval(value)
        transforms = transform_names()
        if isinstance(value, ast.Name) and value.id in transforms:
            return value.id
        hint = ""
        if isinstance(value, ast.Name):
            closest = did_you_mean(value.id, transforms)
            hint = f"{closest or ';'} transforms: {', '.join(transforms)}; to pass a string, quote it: '{value.id}'"
        raise self.error(
            f"{name}: the value of {keyword.arg!r} must be a literal (number, string, True, False, None, or a "
            f"tuple or list of them) or the name of a registered transform{hint}", value
        )

    def is_literal(self, node: ast.AST) -> bool:
        """Whether `node` is a whitelisted literal (checked before ast.literal_eval sees it)."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, _LITERAL_TYPES)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = node.operand
            return isinstance(operand, ast.Constant) and type(operand.value) in (int, float)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.is_literal(element) for element in node.elts)
        return False


def parse_mixture(text: str) -> Node:
    """The tree of a mixing expression; ConfigError quoting the expression and the bad piece."""
    return _Parser(text).parse()


def top_level_terms(tree: Node) -> Tuple[Node, ...]:
    """The terms joined by the outermost '+' (the tree itself when there is none)."""
    return tree.children if isinstance(tree, Concat) else (tree,)


def named_terms(text: str) -> List[Tuple[str, str]]:
    """(name, term text) for each top-level '+' term of `text`: the name is the term's dataset
    label (its `name` keyword, else the dataset class; a term of several datasets joins them
    with '+'), made unique by appending #2, #3, ... to repeats. DUSt3R and Spann3R name their
    test loaders by the part of the string before '('."""
    terms = top_level_terms(parse_mixture(text))
    return list(zip(unique_names([term_label(term) for term in terms]), [term.text for term in terms]))


def term_label(node: Node) -> str:
    """The label of a (sub)expression as the built datasets report it (combinators.label_of): a
    dataset's `name` keyword, else its name as written (a class name or an EXPRESSION_ALIASES entry)."""
    if isinstance(node, DatasetCall):
        name = node.kwargs.get("name")
        return name if isinstance(name, str) and name else node.name
    if isinstance(node, Concat):
        return "+".join(term_label(child) for child in node.children)
    return term_label(node.child)


def unique_names(labels: Sequence[str]) -> List[str]:
    """`labels` with repeats numbered: ["Co3d", "Co3d", "X"] -> ["Co3d", "Co3d#2", "X"]."""
    seen: Dict[str, int] = {}
    names = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        names.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return names


def build_mixture(text: str, data_root: str = "") -> ConcatDataset:
    """The datasets of `text`, one ConcatDataset component per top-level term.

    Relative values of each dataset's PATH_FIELDS (given or default) are joined to `data_root`
    when it is not empty. In two steps, so that items can be dropped in between (the data check
    before training): `build_leaves`, then `assemble_mixture`.
    """
    return assemble_mixture(text, build_leaves(text, data_root))


def validate_mixture(text: str) -> Node:
    """The tree of `text` once every dataset name, keyword and value type in it is checked
    (ConfigError with the closest valid name and the choices); nothing is built or read."""
    parser = _Parser(text)
    tree = parser.parse()
    for call in _calls(tree):
        dataset_arguments(call, "", parser.source)
    return tree


def build_leaves(text: str, data_root: str = "") -> List[MixableDataset]:
    """The datasets named in `text` (the leaves of its tree), built in written order."""
    parser = _Parser(text)
    return [make_dataset(call, data_root, parser.source) for call in _calls(parser.parse())]


def assemble_mixture(text: str, leaves: Sequence[Any]) -> ConcatDataset:
    """The combinators of `text` over `leaves` (build_leaves' datasets, in the same order), one
    ConcatDataset component per top-level term. A part of the expression whose length would be
    above MAX_ITEMS is a ConfigError quoting the expression and the part."""
    parser = _Parser(text)
    remaining = iter(leaves)

    def sized(size: int, piece: str) -> None:
        if size > MAX_ITEMS:
            raise ConfigError(f"mixing expression {parser.source!r}: {piece!r} would have {size} items, above the "
                              f"maximum {MAX_ITEMS_TEXT}")

    def concat(nodes: Sequence[Node], piece: str) -> ConcatDataset:
        children = [build(node) for node in nodes]
        sized(sum(len(child) for child in children), piece)
        return ConcatDataset(children)

    def build(node: Node) -> Any:
        if isinstance(node, DatasetCall):
            return next(remaining)
        if isinstance(node, Resized):
            return ResizedDataset(node.n, build(node.child))
        if isinstance(node, Repeated):
            child = build(node.child)
            sized(node.k * len(child), node.text)
            return RepeatedDataset(node.k, child)
        return concat(node.children, node.text)

    return concat(top_level_terms(parser.parse()), parser.source)


def _calls(node: Node) -> Iterator[DatasetCall]:
    """The DatasetCall leaves of a tree, in written order."""
    if isinstance(node, DatasetCall):
        yield node
    elif isinstance(node, Concat):
        for child in node.children:
            yield from _calls(child)
    else:
        yield from _calls(node.child)


def dataset_arguments(call: DatasetCall, data_root: str = "", source: str = "") -> Tuple[type, Dict[str, Any]]:
    """The registered class of one `Name(arg, ..., key=value, ...)` term and its constructor
    arguments: names, positional arguments (mapped to the class's POSITIONAL_FIELDS), keywords,
    value types and choices checked (ConfigError), relative PATH_FIELDS joined to data_root;
    `source` is the whole expression, quoted in errors."""
    where = f"mixing expression {source or call.text!r}"
    cls = dataset_class(call.name, f"{where}: dataset")
    expand_args_fields(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    aliases = dict(getattr(cls, "KEYWORD_ALIASES", {}))
    given = dict(_positional_arguments(call, cls, where))
    written = {key: "positional" for key in given}  # how each given field was written
    for key, value in call.kwargs.items():
        field = aliases.get(key, key)
        if field in given:
            second = "" if key == field else f" (as {key!r})"
            raise ConfigError(f"{where}: {call.name} got two values for {field!r}: {given[field]!r} "
                              f"({written[field]}) and {value!r}{second}")
        given[field], written[field] = value, f"as {key!r}"
    config = get_default_args(cls)
    for key, value in given.items():
        if key not in fields:
            hint = did_you_mean(key, [*fields, *aliases]) or ";"
            listed = ", ".join(fields) + "".join(f", {alias} (= {field})" for alias, field in aliases.items())
            raise ConfigError(f"{where}: {call.name} has no field {key!r}{hint} fields: {listed}")
        try:
            config[key] = value
        except OmegaConfBaseException as error:
            problem = str(error).splitlines()[0]
            raise ConfigError(f"{where}: {call.name}.{key}={value!r}: {problem}") from None
    typed = OmegaConf.to_container(config)
    for key, choices in choice_fields(cls):
        if key in given and not choices.accepts(typed[key]):
            raise ConfigError(f"{where}: {choices.message(f'{call.name}.{key}', typed[key])}")
    kwargs = {key: _as_field_value(typed[key], fields[key]) for key in given}
    if call.name != cls.__name__ and "name" in fields and "name" not in given:
        kwargs["name"] = call.name  # written with an alias: labelled as written (term_label)
    for key in cls.PATH_FIELDS:
        path = typed.get(key)
        if data_root and isinstance(path, str) and path and not os.path.isabs(path):
            kwargs[key] = os.path.join(os.path.expanduser(data_root), path)
    return cls, kwargs


def dataset_class(name: str, slot: str = "dataset") -> type:
    """The registered MixableDataset called `name`, or the one listing `name` in its
    EXPRESSION_ALIASES (a class name wins over an alias). ConfigError with the closest name and
    the choices (class names and aliases) when there is none, or when two classes claim the alias."""
    classes = registry.get_all(MixableDataset)
    by_name = {cls.__name__: cls for cls in classes}
    if name in by_name:
        return registry.get(MixableDataset, name, slot=slot)
    claiming = [cls for cls in classes if name in getattr(cls, "EXPRESSION_ALIASES", ())]
    if len(claiming) > 1:
        raise ConfigError(f"{slot}={name!r} is an alias of several datasets: "
                          f"{', '.join(cls.__name__ for cls in claiming)}; write the class name")
    if claiming:
        return claiming[0]
    aliases = [alias for cls in classes for alias in getattr(cls, "EXPRESSION_ALIASES", ())]
    choices = sorted({*by_name, *aliases})
    raise ConfigError(unknown_implementation_message(slot, name, MixableDataset, choices))


def _positional_arguments(call: DatasetCall, cls: type, where: str) -> List[Tuple[str, Any]]:
    """(field, value) for each positional argument of `call`, by the class's POSITIONAL_FIELDS."""
    names = tuple(getattr(cls, "POSITIONAL_FIELDS", ()))
    if not call.args:
        return []
    if not names:
        raise ConfigError(f"{where}: {call.name}: positional arguments are not supported; write key=value "
                          f"(got {', '.join(repr(a) for a in call.args)})")
    if len(call.args) > len(names):
        plural = "s" if len(names) > 1 else ""
        raise ConfigError(f"{where}: {call.name} takes at most {len(names)} positional argument{plural} "
                          f"({', '.join(names)}), got {len(call.args)}: {', '.join(repr(a) for a in call.args)}")
    return list(zip(names, call.args))


def make_dataset(call: DatasetCall, data_root: str = "", source: str = "") -> MixableDataset:
    """Instantiate one `Name(key=value, ...)` term (see build_mixture and dataset_arguments)."""
    cls, kwargs = dataset_arguments(call, data_root, source)
    try:
        return cls(**kwargs)
    except Exception as error:
        prefixed = _with_prefix(error, f"{call.text or call.name}: ")
        if prefixed is error:
            raise
        raise prefixed from error


def _as_field_value(value: Any, field: dataclasses.Field) -> Any:
    """A config value for the constructor: lists back to tuples for tuple-valued fields."""
    return tuple(value) if isinstance(value, list) and isinstance(field.default, tuple) else value


def _with_prefix(error: Exception, prefix: str) -> Exception:
    """`error` again, its message prefixed (or, for a type that cannot be rebuilt, a note added)."""
    try:
        return type(error)(prefix + str(error))
    except Exception:
        error.add_note(prefix.rstrip(": "))
        return error
