"""Restricted evaluator for every expression and script that comes from a workflow file.

Threat model: BPMN/DMN files and stage criteria are untrusted input. Their code must not import
modules, touch files or the network, reach interpreter internals (classes, frames, globals) or hang
the engine. Defences, in order: a static AST check (no imports, dunder names, private or
frame/code attributes, class/async/generator/global/with/try constructs, calls to unsafe builtins);
a whitelist as `__builtins__`; guarded helpers replacing `**`, `*` and `<<` so one operation cannot
build an enormous value; and a line tracer enforcing a deadline whenever the code can loop.
Not covered: memory or CPU spent inside one C-level call over aliased data (`s.ljust(10**9)`,
`max(map(sum, [big] * 10**6))`); a hard guarantee needs a worker process with rlimits.
"""

from __future__ import annotations

import ast
import copy
import functools
import operator
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine.errors import ExpressionError

Mode = Literal["eval", "exec"]
Names = dict[str, Any]

MAX_RANGE = 100_000
MAX_ITEMS = 1_000_000
MAX_EXPONENT = 10_000
MAX_SHIFT = 10_000
MAX_INT_BITS = 1_000_000
MAX_ROUND_DIGITS = 1_000
_FILENAME = "<workflow>"


# --- whitelisted functions -------------------------------------------------------------------------


def filled(value: Any) -> bool:
    """Whether a field holds real data, so criteria need not spell out None/''/[] checks."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | dict | tuple | set | frozenset):
        return bool(value)
    return True


def _safe_range(*args: int) -> range:
    """range() with a size cap, because a huge range burns CPU inside C code the tracer cannot see."""
    result = range(*args)
    try:
        size = len(result)
    except OverflowError:
        size = sys.maxsize
    if size > MAX_RANGE:
        raise ExpressionError(f"range() is limited to {MAX_RANGE} items in workflow expressions")
    return result


def _safe_sum(iterable: Any, /, start: Any = 0) -> Any:
    """sum() of numbers only, because summing lists is quadratic C work the tracer cannot stop."""
    if not isinstance(start, int | float | complex):
        raise ExpressionError("sum() only adds numbers in workflow expressions; use a comprehension")
    return sum(iterable, start)


def _safe_round(number: Any, ndigits: int | None = None) -> Any:
    """round() with bounded digits, because round(5, -10**9) computes a gigantic power of ten."""
    if isinstance(ndigits, int) and abs(ndigits) > MAX_ROUND_DIGITS:
        raise ExpressionError(f"round() accepts at most {MAX_ROUND_DIGITS} digits")
    return round(number, ndigits)


SAFE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "all": all, "any": any, "bool": bool, "dict": dict, "divmod": divmod,
    "enumerate": enumerate, "filter": filter, "float": float, "int": int, "len": len, "list": list,
    "map": map, "max": max, "min": min, "range": _safe_range, "reversed": reversed,
    "round": _safe_round, "set": set, "sorted": sorted, "str": str, "sum": _safe_sum, "tuple": tuple,
    "zip": zip, "filled": filled,
}  # fmt: skip


# --- guarded operators (user code cannot name them: dunder names are refused before the rewrite) ---


def _too_big(what: str) -> ExpressionError:
    """One wording for every size refusal, so process owners recognise it."""
    return ExpressionError(f"{what} would be too large for a workflow expression and was refused")


def _pow(base: Any, exponent: Any) -> Any:
    """`**` that refuses integer results with millions of digits (`10**10**10`)."""
    huge_int = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if huge_int and (exponent > MAX_EXPONENT or base.bit_length() * exponent > MAX_INT_BITS):
        raise _too_big(f"the power with exponent {exponent}")
    return base**exponent


def _mul(left: Any, right: Any, combine: Callable[[Any, Any], Any] = operator.mul) -> Any:
    """`*` (or `*=` via `combine`) refusing repetitions past MAX_ITEMS and products past MAX_INT_BITS."""
    sequence, count = (left, right) if isinstance(right, int) else (right, left)
    if not isinstance(count, int):
        return combine(left, right)
    if isinstance(sequence, int) and sequence.bit_length() + count.bit_length() > MAX_INT_BITS:
        raise _too_big("the product")
    if isinstance(sequence, str | bytes | list | tuple) and len(sequence) * count > MAX_ITEMS:
        raise _too_big(f"a repetition of {len(sequence) * count} items")
    return combine(left, right)


def _lshift(value: Any, shift: Any) -> Any:
    """`<<` that refuses shifts wider than MAX_SHIFT bits (`1 << 10**9`)."""
    if isinstance(value, int) and isinstance(shift, int) and value and shift > MAX_SHIFT:
        raise _too_big(f"a shift by {shift} bits")
    return value << shift


_BINOP_HELPERS = {ast.Pow: "__funnel_pow", ast.Mult: "__funnel_mul", ast.LShift: "__funnel_lshift"}
_AUGOP_HELPERS = {ast.Pow: "__funnel_pow", ast.Mult: "__funnel_imul", ast.LShift: "__funnel_lshift"}
_RUNTIME: Names = {
    "__builtins__": dict(SAFE_FUNCTIONS), "__funnel_pow": _pow, "__funnel_mul": _mul,
    "__funnel_imul": functools.partial(_mul, combine=operator.imul), "__funnel_lshift": _lshift,
}  # fmt: skip


class _Guard(ast.NodeTransformer):
    """Rewrite `a ** b`, `a * b`, `a << b` (and augmented forms) into calls of the guarded helpers."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        helper = _BINOP_HELPERS.get(type(node.op))
        if helper is None:
            return node
        return ast.copy_location(ast.Call(ast.Name(helper, ast.Load()), [node.left, node.right], []), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        helper = _AUGOP_HELPERS.get(type(node.op))
        if helper is None:
            return node
        current = copy.deepcopy(node.target)
        current.ctx = ast.Load()
        call = ast.Call(ast.Name(helper, ast.Load()), [current, node.value], [])
        return ast.copy_location(ast.Assign([node.target], call), node)


# --- static check ---------------------------------------------------------------------------------

_IMPORTS = "imports are not allowed in workflow expressions"
_REFUSED_NODES: dict[type[ast.AST], str] = {
    **dict.fromkeys((ast.Import, ast.ImportFrom), _IMPORTS),
    ast.ClassDef: "class definitions are not allowed in workflow scripts",
    **dict.fromkeys((ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await),
                    "async code is not allowed in workflow scripts"),
    **dict.fromkeys((ast.Yield, ast.YieldFrom), "`yield` is not allowed in workflow scripts"),
    ast.Global: "`global` is not allowed in workflow scripts",
    ast.Nonlocal: "`nonlocal` is not allowed in workflow scripts",
    ast.With: "`with` blocks are not allowed in workflow scripts",
    # the deadline tracer is switched off once it raises, so `except`/`finally` could then loop forever
    **dict.fromkeys((ast.Try, ast.TryStar),
                    "`try` blocks are not allowed in workflow scripts (test the values instead)"),
}  # fmt: skip
_UNAVAILABLE_CALLS = frozenset({
    "open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr", "globals", "locals",
    "vars", "dir", "input", "breakpoint", "help", "exit", "quit", "memoryview", "type", "object", "super",
    "classmethod", "staticmethod", "property", "print", "id",
})  # fmt: skip
_DENIED_ATTRS = frozenset({"format", "format_map", "mro"})
_DENIED_PREFIXES = ("gi_", "cr_", "ag_", "f_", "co_", "tb_", "func_", "im_")
_IDENTIFIER_FIELDS = ("id", "name", "arg", "rest")


def _shorten(text: str, limit: int = 80) -> str:
    """Collapse whitespace and cut long text, so every message stays one readable line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _snippet(source: str, node: ast.AST) -> str:
    """The offending source text, so the message points at what to change."""
    return _shorten(ast.get_source_segment(source, node) or "", 60)


def _attribute_reason(attr: str) -> str | None:
    """Why an attribute name is refused, or None when it is an ordinary method/field."""
    if attr.startswith("_"):
        return f"attribute `{attr}` is not allowed (names starting with '_' are private)"
    if attr in _DENIED_ATTRS or attr.startswith(_DENIED_PREFIXES):
        return f"attribute `{attr}` is not allowed in workflow expressions"
    return None


def _node_reason(node: ast.AST, source: str) -> str | None:
    """Why this single node is refused, or None when it is fine."""
    refused = _REFUSED_NODES.get(type(node))
    if refused:
        return f"{refused} (`{_snippet(source, node)}`)"
    if isinstance(node, ast.Attribute):
        return _attribute_reason(node.attr)
    if isinstance(node, ast.MatchClass):  # `case C(attr=x)` reads attributes by name
        reasons = [_attribute_reason(attr) for attr in node.kwd_attrs]
        return next((reason for reason in reasons if reason), None)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _UNAVAILABLE_CALLS:
        return f"`{node.func.id}()` is not available in workflow expressions"
    for field in _IDENTIFIER_FIELDS:
        value = getattr(node, field, None)
        if value == "__import__":
            return f"{_IMPORTS} (`{_snippet(source, node)}`)"
        if isinstance(value, str) and value.startswith("__"):
            return f"name `{value}` is not allowed (names starting with '__' are reserved)"
    return None


def _problems(tree: ast.AST, source: str) -> list[str]:
    """Every refused construct, in source order; iterative so deep trees cannot overflow the stack."""
    found: list[tuple[int, int, str]] = []
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, line = stack.pop()
        line = getattr(node, "lineno", None) or line
        reason = _node_reason(node, source)
        if reason:
            found.append((line, getattr(node, "end_col_offset", 0) or 0, f"line {line}: {reason}"))
        stack.extend((child, line) for child in ast.iter_child_nodes(node))
    return [message for _, _, message in sorted(found)]


# --- compilation (cached) -------------------------------------------------------------------------

_LOOPING = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
            ast.FunctionDef, ast.Lambda)  # fmt: skip


@dataclass(frozen=True)
class _Compiled:
    """Checked, rewritten bytecode plus what evaluation needs to know about it."""

    code: Any
    traced: bool  # can loop, so it runs under the deadline tracer
    free: frozenset[str]  # names read but never bound, for missing_as_none


@dataclass(frozen=True)
class _Refused:
    """Why a source was refused; `syntax` tells Spiff's DMN engine to retry with an operand."""

    problems: tuple[str, ...]
    syntax: bool


def _syntax_problem(err: SyntaxError) -> _Refused:
    """A syntax error worded like every other problem."""
    detail = err.msg
    if detail == "invalid syntax" and err.text:
        detail = f"`{_shorten(err.text, 60)}`"
    return _Refused((f"line {err.lineno or 1}: invalid syntax: {detail}",), syntax=True)


def _free_names(tree: ast.AST) -> frozenset[str]:
    """Names the code reads but never binds and that are not whitelisted functions."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            bound.add(node.name)
    return frozenset(loaded - bound - SAFE_FUNCTIONS.keys())


@functools.lru_cache(maxsize=2048)
def _analyse(source: str, mode: Mode) -> _Compiled | _Refused:
    """Parse, check, rewrite and compile once per distinct source: criteria run on every advance."""
    try:
        tree = ast.parse(source, _FILENAME, mode)
    except SyntaxError as err:
        return _syntax_problem(err)
    except (ValueError, RecursionError, MemoryError):
        return _Refused(("line 1: the expression is nested too deeply",), syntax=True)
    problems = _problems(tree, source)
    if problems:
        return _Refused(tuple(problems), syntax=False)
    traced = any(isinstance(node, _LOOPING) for node in ast.walk(tree))
    free = _free_names(tree)
    try:
        code = compile(ast.fix_missing_locations(_Guard().visit(tree)), _FILENAME, mode, dont_inherit=True)
    except SyntaxError as err:
        return _syntax_problem(err)
    except (ValueError, RecursionError, MemoryError):
        return _Refused(("line 1: the expression is nested too deeply",), syntax=False)
    return _Compiled(code, traced, free)


def _compile(source: str, mode: Mode) -> _Compiled:
    """The compiled code, or ExpressionError listing every problem."""
    result = _analyse(source, mode)
    if isinstance(result, _Refused):
        raise ExpressionError("; ".join(result.problems))
    return result


def check(source: str, *, mode: Literal["eval", "exec"] = "eval") -> list[str]:
    """Static check for load-time validation: [] when fine, else one 'line N: ' reason per problem."""
    result = _analyse(source, mode)
    return list(result.problems) if isinstance(result, _Refused) else []


# --- running --------------------------------------------------------------------------------------


def _deadline_tracer(time_limit: float, what: str) -> Callable[[FrameType, str, Any], Any]:
    """A trace function raising ExpressionError on the first workflow line after the deadline."""
    deadline = time.monotonic() + time_limit

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != _FILENAME:
            return None  # helpers and library code stay untraced
        if time.monotonic() > deadline:
            raise ExpressionError(f"the {what} ran longer than {time_limit} s and was stopped")
        return tracer

    return tracer


def _failing_line(err: BaseException) -> int | None:
    """The line of workflow code where an exception was raised (innermost workflow frame)."""
    line = None
    trace = err.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == _FILENAME:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _runtime_error(err: Exception, source: str, what: str) -> ExpressionError:
    """Turn an exception from user code into a message a process owner can act on."""
    if isinstance(err, RecursionError):
        return ExpressionError(f"the {what} recursed too deeply")
    line = _failing_line(err)
    lines = source.splitlines()
    text = _shorten(lines[line - 1] if line and line <= len(lines) else source)
    prefix = f"line {line}: " if line and len(lines) > 1 else ""
    if isinstance(err, NameError):
        return ExpressionError(f"{prefix}{_shorten(str(err), 200)}")
    return ExpressionError(f"{prefix}{type(err).__name__}: {_shorten(str(err), 200)} in `{text}`")


def _run(compiled: _Compiled, scope: Names, time_limit: float, source: str, what: str) -> Any:
    """Run user code, traced only when it can loop, so that every failure is an ExpressionError."""
    previous = sys.gettrace()
    if compiled.traced:
        sys.settrace(_deadline_tracer(time_limit, what))
    try:
        return eval(compiled.code, scope)
    except ExpressionError:
        raise
    except Exception as err:
        raise _runtime_error(err, source, what) from err
    finally:
        if compiled.traced:
            sys.settrace(previous)


def evaluate(
    expression: str, names: Mapping[str, Any], *, missing_as_none: bool = False, time_limit: float = 1.0
) -> Any:
    """Evaluate an untrusted expression against `names`; every failure is an ExpressionError."""
    compiled = _compile(expression, "eval")
    scope = {**names, **_RUNTIME}
    if missing_as_none:
        for name in compiled.free - scope.keys():
            scope[name] = None
    return _run(compiled, scope, time_limit, expression, "expression")


def _inert(value: Any) -> bool:
    """Whether a value is plain data: functions or iterators kept in task data would later run untraced."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if callable(item) or isinstance(item, Iterator):
            return False
        if id(item) in seen:
            continue
        if isinstance(item, dict):
            seen.add(id(item))
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            seen.add(id(item))
            stack.extend(item)
    return True


def execute(script: str, names: Names, *, time_limit: float = 1.0) -> None:
    """Run an untrusted script; `names` gets the resulting plain-data variables (functions are dropped)."""
    compiled = _compile(script, "exec")
    scope = {**names, **_RUNTIME}
    _run(compiled, scope, time_limit, script, "script")
    result = {key: value for key, value in scope.items() if key not in _RUNTIME and _inert(value)}
    names.clear()
    names.update(result)


# --- SpiffWorkflow integration --------------------------------------------------------------------


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """Spiff script environment that sends every workflow expression and script through the sandbox."""

    def __init__(self, environment_globals: Names | None = None, *, time_limit: float = 1.0) -> None:
        super().__init__(environment_globals)
        self.time_limit = time_limit

    def evaluate(self, expression: str, context: Names, external_context: Names | None = None) -> Any:
        """Evaluate with external context under task data (task data wins, as in Spiff)."""
        names = {**self.globals, **(external_context or {}), **context}
        return evaluate(expression, names, time_limit=self.time_limit)

    def execute(self, script: str, context: Names, external_context: Names | None = None) -> bool:
        """Run a script task; task data changes only if the whole script succeeds."""
        extra = {**self.globals, **(external_context or {})}
        names = {**extra, **context}
        execute(script, names, time_limit=self.time_limit)
        kept = {key: value for key, value in names.items() if key in context or key not in extra}
        context.clear()
        context.update(kept)
        return True

    def call_service(self, context: Names, **kwargs: Any) -> Any:
        """Service tasks would let a workflow file reach the network, so they are refused."""
        raise ExpressionError("service tasks are not supported")


class RestrictedScriptEngine(PythonScriptEngine):
    """Spiff script engine whose validate() applies the sandbox rules, not just the parser."""

    def validate(self, expression: str) -> None:
        """SyntaxError for syntax (DMN's engine retries on it), ExpressionError for sandbox violations."""
        result = _analyse(expression, "exec")
        if isinstance(result, _Refused):
            message = "; ".join(result.problems)
            raise SyntaxError(message) if result.syntax else ExpressionError(message)

    def evaluate(self, task: Any, expression: str, external_context: Names | None = None) -> Any:
        """Like Spiff's, but the sandbox's explanation is part of the message, not just a chained cause."""
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except Exception as err:
            message = f"Error evaluating expression '{expression}': {err}"
            raise WorkflowTaskException(message, task=task, exception=err) from err

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        """Spiff's own version references an undefined name on failure; report the real error."""
        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as err:
            raise self.create_task_exec_exception(task, "", err) from err


def make_script_engine(*, time_limit: float = 1.0) -> PythonScriptEngine:
    """The script engine every workflow runs with."""
    return RestrictedScriptEngine(environment=RestrictedEnvironment(time_limit=time_limit))
