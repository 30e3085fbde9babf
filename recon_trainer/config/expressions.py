"""Arithmetic expressions from configs, parsed safely: `"max(0.0, min(1.0, (epoch - 1000) / 1000))"`.

Used where an original method writes a formula as a string (MoGe's LambdaLR strings, a
curriculum ratio over the epoch). The text is parsed with `ast.parse` and walked through a
whitelist; nothing in it is executed. Allowed: numbers, the variables the caller names, `+ - * /
// % **`, unary `-`/`+`, comparisons, `and`/`or`/`not`, `a if c else b`, the constants `pi`, `e`,
`inf` and the functions in FUNCTIONS.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable, Dict, Mapping, Sequence

from recon_trainer.config.errors import ConfigError, did_you_mean

FUNCTIONS: Dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "round": round,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "cos": math.cos,
    "sin": math.sin,
    "tanh": math.tanh,
}
CONSTANTS: Dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf}
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
MAX_EXPONENT = 1024  # `**` with a larger exponent is refused (huge integer powers would hang)
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


class Expression:
    """A checked expression over named variables; call it with their values as keywords.

    `Expression("max(0.0, (epoch - 1000) / 1000)", ("epoch",))(epoch=1500) == 0.5`. Every name,
    function and operator is checked at construction (ConfigError quoting the text and the
    piece), so a typo fails when the config is built, not at step 1000.
    """

    def __init__(self, text: str, variables: Sequence[str], where: str = "expression") -> None:
        self.text = str(text).strip()
        self.variables = tuple(variables)
        self.where = where
        try:
            self.tree = ast.parse(self.text, mode="eval").body if self.text else None
        except SyntaxError as error:
            raise ConfigError(f"{where} {self.text!r}: invalid syntax at column {error.offset}: {error.msg}") from None
        if self.tree is None:
            raise ConfigError(f"{where} is empty; expected a formula in {', '.join(self.variables) or 'numbers'}")
        self._check(self.tree)

    def __call__(self, **values: float) -> float:
        missing = set(self.variables) - set(values)
        if missing:
            raise TypeError(f"{self.where} {self.text!r}: missing values for {sorted(missing)}")
        return self._value(self.tree, values)

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, {self.variables})"

    def _error(self, problem: str, node: ast.AST) -> ConfigError:
        piece = ast.get_source_segment(self.text, node) or ""
        return ConfigError(f"{self.where} {self.text!r}: {problem} (column {node.col_offset + 1}: {piece!r})")

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float, bool):
                raise self._error("only numbers are allowed as literals", node)
        elif isinstance(node, ast.Name):
            if node.id not in self.variables and node.id not in CONSTANTS:
                names = (*self.variables, *CONSTANTS)
                hint = did_you_mean(node.id, names) or ";"
                raise self._error(f"unknown name {node.id!r}{hint} names: {', '.join(names)}", node)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in (node.left, *node.comparators):
                self._check(child)
        elif isinstance(node, ast.BoolOp):
            for child in node.values:
                self._check(child)
        elif isinstance(node, ast.IfExp):
            for child in (node.test, node.body, node.orelse):
                self._check(child)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.get_source_segment(self.text, node.func)
                hint = did_you_mean(str(name), FUNCTIONS) or ";"
                raise self._error(f"unknown function {name!r}{hint} functions: {', '.join(FUNCTIONS)}", node)
            if node.keywords or not node.args:
                raise self._error(f"{node.func.id}() takes positional arguments only", node)
            for child in node.args:
                self._check(child)
        else:
            raise self._error(f"{type(node).__name__} is not allowed in a formula", node)

    def _value(self, node: ast.AST, values: Mapping[str, float]) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id] if node.id in values else CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self._value(node.left, values), self._value(node.right, values)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
                raise ValueError(f"{self.where} {self.text!r}: exponent {right} is above {MAX_EXPONENT}")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._value(node.operand, values))
        if isinstance(node, ast.Compare):
            left = self._value(node.left, values)
            for op, comparator in zip(node.ops, node.comparators):
                right = self._value(comparator, values)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            result = None
            for child in node.values:
                result = self._value(child, values)
                if isinstance(node.op, ast.And) and not result or isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.IfExp):
            return self._value(node.body if self._value(node.test, values) else node.orelse, values)
        return FUNCTIONS[node.func.id](*(self._value(arg, values) for arg in node.args))
