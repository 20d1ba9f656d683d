"""Decoding methods for research comparisons, written as short spec strings.

Grammar: ``FAMILY[:KEY=VALUE,KEY=VALUE,...]`` (a bare ``KEY`` is a flag). Families:

| spec                                   | sampler                      | budget                               |
|----------------------------------------|------------------------------|--------------------------------------|
| `greedy`                               | `Greedy()`                   | unconstrained                        |
| `sample:t=0.7[,top_p=..,top_k=..,min_p=..]` | `Sample(temperature=t, ...)` | unconstrained                   |
| `entropix`                             | `EntropixConfig()`           | unconstrained                        |
| `entropix:calibrated[=PATH]`           | `EntropixConfig(**json(PATH))` | unconstrained                      |
| `entropix:pause=Hmm`                   | `EntropixConfig(pause_text="Hmm")` | unconstrained                  |
| `budget:max=256`                       | `Greedy()`                   | s1 budget forcing, cap 256 thinking tokens |
| `budget:max=512,waits=2[,min=..,wait=Hmm]` | `Greedy()`               | cap + 2 "Wait" extensions (s1 Table 4) |
| `entropix+budget:max=512`              | `EntropixConfig()`           | as `budget`                          |
| `adaptive-budget:max=512,waits=2`      | `Greedy()`                   | `Budget(mode="adaptive", ...)`       |

Any sampler family may be joined to `budget` or `adaptive-budget` with `+`
(`sample+budget:t=0.7,max=512`); `greedy+budget` is spelled `budget`.

The test-time methods of docs/methods.md are budget families too (each bare name is the paper's
defaults; each takes the budget keys `max`, `min`, `waits`, `answer` and joins a sampler with `+`,
e.g. `entropix+deer:threshold=0.9,max=512`):

| spec | method | its keys (defaults) |
|---|---|---|
| `alphaone` | AlphaOne | `alpha` (1.4), `base` (alpha_base_tokens, 256), `p` (alpha_wait_prob, 0.5), `breaks` (paragraph or line) |
| `nowait` | NoWait | none |
| `nothinking` | NoThinking | none |
| `deer` | DEER | `threshold` (deer_threshold, 0.95), `probe` (probe_tokens, 8) |
| `eat` | EAT | `threshold` (eat_threshold, 1e-4), `every` (probe_every, 32), `ema` (0.2), `probe` (1: EAT reads only the first answer token's entropy) |
| `dynasor` | Dynasor-CoT | `every` (probe_every, 64), `streak` (dynasor_streak, 3), `probe` (8) |
| `graceful` | graceful cap | `soft` (256), `grace` (64; max = soft + grace), `conf` (confident_entropy, 0.5) |

Keys: sampler `t` (alias `temperature`), `top_k`, `top_p`, `min_p` (sample); `calibrated[=PATH]`,
`pause=TEXT` (entropix); budget `max` (max_thinking_tokens), `min` (min_thinking_tokens), `waits`
(num_waits), `wait=TEXT` (wait_text; `wait=none` is the empty-string ablation), `answer`
(max_answer_tokens); any family: `max_new` (max_new_tokens). The pause text cannot be empty.
Values cannot contain `,` `;` `{` `}`. Unknown keys, keys of another family and bad values raise
ConfigError.

A method's `name` is its canonical spec (keys in a fixed order, default values dropped, numbers
written shortest: `sample:temperature=0.70` -> `sample:t=0.7`), so parsing a name gives the same
method back. Its `family` is the name without the scale keys `max`, `min`, `waits`, `answer`,
`max_new`: the methods of one family differ only in how much they may think, and s1's Scaling
metric and the scaling plot draw one line per family (`budget:max=64` ... `budget:max=512` are
family `budget`; `budget:max=512,waits=2,wait=Hmm` is family `budget:wait=Hmm`).

"Unconstrained" budget: `Budget()` with no min, max or waits, so every method runs through the
same thinking/answer bookkeeping and their thinking-token counts are comparable. Budgets are
built by `make_budget`, the one function that turns budget options into a `Budget` (the CLI's
`generate --max-thinking ...` flags go through it too), with the `Budget` default delimiters;
`with_format` swaps in the model's format: `think_start`/`think_end`/`answer_prefix`/
`cap_with_delimiter` (`runner.run_compare` from its `base_budget` argument or the model's
`default_budget`, `entropix-s1 generate --method SPEC` from the model's `default_budget`).

`entropix:calibrated` without a path reads `$ENTROPIX_S1_CALIBRATION`, else
`entropix_calibration.json` in the working directory: a JSON object of EntropixConfig fields, as
the calibrate command writes it, read by `calibrate.load_entropix_config` (lists become tuples;
a key that is not a field is a ConfigError naming it).

Lists of methods (CLI `--methods`): specs separated by `;` (the flag may also be repeated), with
shell-like brace expansion: `budget:max={64,128,256,512}` is four methods.

Samplers (JAX) are imported only when a method is built (`parse_method` / `build_method`);
`parse_spec` and the ablation helpers import only `entropix_s1.core.budget` (which imports JAX but
runs nothing), and importing this module imports neither.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropix_s1.errors import ConfigError

if TYPE_CHECKING:  # budget.py holds JAX array state too: imported only when a spec is parsed
    from entropix_s1.core.budget import Budget

__all__ = [
    "METHOD_DEFAULTS",
    "METHOD_FAMILIES",
    "METHOD_KEYS",
    "Method",
    "MethodSpec",
    "SAMPLER_FAMILIES",
    "BUDGET_FAMILIES",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_ANSWER_TOKENS",
    "BUDGET_FIELDS",
    "parse_spec",
    "parse_method",
    "build_method",
    "make_budget",
    "with_format",
    "model_format",
    "expand_specs",
    "budget_sweep",
    "waits_sweep",
    "wait_string_ablation",
    "pause_string_ablation",
    "default_calibration_path",
    "is_deterministic",
]

SAMPLER_FAMILIES = ("greedy", "sample", "entropix")
#: The test-time methods (docs/methods.md): spec key -> Budget field (None: computed), defaults,
#: and the Budget flags each sets.
METHOD_KEYS: dict[str, dict[str, str | None]] = {
    "alphaone": {"alpha": "alpha", "base": "alpha_base_tokens", "p": "alpha_wait_prob", "breaks": "alpha_breaks"},
    "nowait": {},
    "nothinking": {},
    "deer": {"threshold": "deer_threshold", "probe": "probe_tokens"},
    "eat": {"threshold": "eat_threshold", "every": "probe_every", "ema": "eat_ema", "probe": "probe_tokens"},
    "dynasor": {"every": "probe_every", "streak": "dynasor_streak", "probe": "probe_tokens"},
    "graceful": {"soft": "soft_max_thinking_tokens", "grace": None, "conf": "confident_entropy"},
}
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "alphaone": {"alpha": 1.4, "base": 256, "p": 0.5, "breaks": "paragraph"},
    "nowait": {},
    "nothinking": {},
    "deer": {"threshold": 0.95, "probe": 8},
    # EAT reads only the entropy of the first answer token: a longer trial answer is never used
    "eat": {"threshold": 1e-4, "every": 32, "ema": 0.2, "probe": 1},
    "dynasor": {"every": 64, "streak": 3, "probe": 8},
    "graceful": {"soft": 256, "grace": 64, "conf": 0.5},
}
_METHOD_FLAGS: dict[str, dict[str, Any]] = {"nowait": {"no_reflection": True}, "nothinking": {"no_thinking": True}}
METHOD_FAMILIES = tuple(METHOD_KEYS)
BUDGET_FAMILIES = ("budget", "adaptive-budget") + METHOD_FAMILIES

#: max_new_tokens of a method without a thinking cap (override with `max_new=`).
DEFAULT_MAX_NEW_TOKENS = 1024
#: Room left for the answer after a thinking cap: max_new_tokens = max + this + slack.
DEFAULT_ANSWER_TOKENS = 256
#: Forced strings (end-of-thinking delimiter, "Final Answer:", wait strings) take tokens too.
_FORCED_SLACK = 32

_SAMPLER_KEYS: dict[str, tuple[str, ...]] = {
    "greedy": (),
    "sample": ("t", "top_k", "top_p", "min_p"),
    "entropix": ("calibrated", "pause"),
}
_BUDGET_KEYS = ("max", "min", "waits", "wait", "answer")
#: adaptive-budget only: uncertain entropy (nats), soft cap (tokens), confident entropy (nats)
_ADAPTIVE_KEYS = ("unc", "soft", "conf")
_COMMON_KEYS = ("max_new",)
_ALIASES = {"temperature": "t", "temp": "t", "max_new_tokens": "max_new"}
#: canonical key order in names
_KEY_ORDER = ("t", "top_k", "top_p", "min_p", "calibrated", "pause", "max", "min", "waits", "wait", "answer",
              "unc", "soft", "grace", "conf", "alpha", "base", "p", "breaks", "threshold", "every", "ema", "streak", "probe",
              "max_new")
#: keys that set how much a method may think: dropped from the family
_SCALE_KEYS = frozenset({"max", "min", "waits", "answer", "max_new", "soft", "grace"})
_INT_KEYS = frozenset({"top_k", "max", "min", "waits", "answer", "max_new", "soft", "grace", "base", "every", "streak",
                       "probe"})
_FLOAT_KEYS = frozenset({"t", "top_p", "min_p", "unc", "conf", "alpha", "p", "threshold", "ema"})
_TEXT_KEYS = frozenset({"pause", "wait", "breaks"})
_FORBIDDEN_VALUE_CHARS = set(",;{}")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A parsed spec, before any sampler object exists (pure Python, hashable)."""

    name: str
    family: str
    sampler_kind: str  # "greedy" | "sample" | "entropix"
    sampler_options: tuple[tuple[str, Any], ...]
    budget: Budget
    max_new_tokens: int

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.sampler_options).get(key, default)


@dataclasses.dataclass(frozen=True)
class Method:
    """What `model.generate` needs for one decoding method. `name` is the canonical spec."""

    name: str
    family: str
    sampler: Any
    budget: Budget | None
    max_new_tokens: int


def default_calibration_path() -> Path:
    """`$ENTROPIX_S1_CALIBRATION`, else `./entropix_calibration.json`."""
    return Path(os.environ.get("ENTROPIX_S1_CALIBRATION") or "entropix_calibration.json")


def _fmt_number(v: int | float) -> str:
    if isinstance(v, int):
        return str(v)
    r = repr(float(v))
    return r[:-2] if r.endswith(".0") else r


def _fmt_value(key: str, v: Any) -> str:
    if key in _TEXT_KEYS:
        return "none" if v == "" else str(v)
    if v is True:
        return ""
    if isinstance(v, (int, float)):
        return _fmt_number(v)
    return str(v)


def _parse_value(spec: str, key: str, raw: str | None) -> Any:
    if key == "calibrated":
        return True if raw is None or raw == "" else raw
    if raw is None:
        raise ConfigError(f"method {spec!r}: key {key!r} needs a value ({key}=...)")
    if key in _INT_KEYS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"method {spec!r}: {key}={raw!r} is not an integer") from None
    if key in _FLOAT_KEYS:
        try:
            v = float(raw)
        except ValueError:
            raise ConfigError(f"method {spec!r}: {key}={raw!r} is not a number") from None
        return v
    if key in _TEXT_KEYS:
        return "" if raw.lower() == "none" else raw
    return raw


def _split_head(spec: str, head: str) -> tuple[str, str | None]:
    parts = head.split("+")
    if len(parts) == 1:
        if parts[0] in SAMPLER_FAMILIES:
            return parts[0], None
        if parts[0] in BUDGET_FAMILIES:
            return "greedy", parts[0]
    elif len(parts) == 2 and parts[0] in SAMPLER_FAMILIES and parts[1] in BUDGET_FAMILIES:
        return parts[0], parts[1]
    known = list(SAMPLER_FAMILIES) + list(BUDGET_FAMILIES) + [
        f"{s}+{b}" for s in ("sample", "entropix") for b in ("budget", "adaptive-budget")
    ] + ["SAMPLER+METHOD (e.g. entropix+deer)"]
    raise ConfigError(f"method {spec!r}: unknown family {head!r}; known families: {', '.join(known)}")


def _allowed_keys(sampler_kind: str, budget_kind: str | None) -> tuple[str, ...]:
    allowed = _SAMPLER_KEYS[sampler_kind] + (_BUDGET_KEYS if budget_kind else ()) + _COMMON_KEYS
    allowed += tuple(METHOD_KEYS.get(budget_kind or "", ()))
    return allowed + _ADAPTIVE_KEYS if budget_kind == "adaptive-budget" else allowed


def _unknown_key(spec: str, head: str, key: str, item: str, sampler_kind: str, budget_kind: str | None,
                 allowed: tuple[str, ...]) -> ConfigError:
    hint = ""
    if key in _BUDGET_KEYS and not budget_kind:
        hint = f" ({key}= belongs to a budget; write e.g. {sampler_kind}+budget:{item} or budget:{item})"
    elif any(key in keys for keys in _SAMPLER_KEYS.values()):
        owner = next(f for f, keys in _SAMPLER_KEYS.items() if key in keys)
        hint = f" ({key}= belongs to the {owner!r} sampler)"
    return ConfigError(f"method {spec!r}: unknown key {key!r} for family {head!r}{hint}; "
                       f"valid keys: {', '.join(allowed) or '(none)'}")


def _parse_options(spec: str, head: str, rest: str, sampler_kind: str, budget_kind: str | None) -> dict[str, Any]:
    """`KEY=VALUE,...` -> {canonical key: typed value}, every key checked against the family."""
    allowed = _allowed_keys(sampler_kind, budget_kind)
    opts: dict[str, Any] = {}
    if not rest.strip():
        return opts
    for item in rest.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"method {spec!r}: empty option (stray ',')")
        key, eq, raw = item.partition("=")
        key = _ALIASES.get(key.strip().lower(), key.strip().lower())
        raw_v = raw.strip() if eq else None
        if key not in allowed:
            raise _unknown_key(spec, head, key, item, sampler_kind, budget_kind, allowed)
        if key in opts:
            raise ConfigError(f"method {spec!r}: key {key!r} given twice")
        if raw_v is not None and _FORBIDDEN_VALUE_CHARS & set(raw_v):
            raise ConfigError(f"method {spec!r}: value {raw_v!r} may not contain , ; {{ }}")
        opts[key] = _parse_value(spec, key, raw_v)
    return opts


def _normalise_sampler_options(spec: str, sampler_kind: str, opts: dict[str, Any]) -> None:
    """Range checks happen in the sampler constructors at build time; here only types and defaults."""
    if opts.get("pause") == "":
        raise ConfigError(f"method {spec!r}: pause text cannot be empty (EntropixConfig inserts it)")
    if sampler_kind == "sample":
        opts.setdefault("t", 1.0)
        opts["t"] = float(opts["t"])
    for k in ("top_p", "min_p"):
        if k in opts:
            opts[k] = float(opts[k])


#: spec key -> Budget field (the adaptive ones only with `adaptive-budget`)
BUDGET_FIELDS: dict[str, str] = {
    "max": "max_thinking_tokens",
    "min": "min_thinking_tokens",
    "waits": "num_waits",
    "wait": "wait_text",
    "answer": "max_answer_tokens",
    "unc": "uncertain_entropy",
    "soft": "soft_max_thinking_tokens",
    "conf": "confident_entropy",
}


def make_budget(options: Mapping[str, Any], *, adaptive: bool = False, factory: Callable[..., Budget] | None = None,
                method: str | None = None, **fields: Any) -> Budget:
    """The one place where budget options become a `Budget`, for `--methods` specs and the CLI's
    budget flags alike: every key of `options` that names a budget knob (`max`, `min`, `waits`,
    `wait`, `answer`, `unc`, `soft`, `conf`; see BUDGET_FIELDS) goes to its field, other keys are
    ignored; `adaptive` sets `mode="adaptive"`; `fields` are passed as they are (format fields such
    as `think_end`). `factory` builds it: `Budget` (default), or e.g. `model.budget` to start from
    the model's own delimiters. `method` (a METHOD_FAMILIES name): its keys (METHOD_KEYS, over
    its METHOD_DEFAULTS) and flags too; the graceful cap's hard cap is soft + grace unless `max`
    is given. Validation is the Budget's (ConfigError)."""
    if factory is None:
        from entropix_s1.core.budget import Budget as factory  # lazy: budget.py imports JAX
    kw = {BUDGET_FIELDS[k]: v for k, v in options.items() if k in BUDGET_FIELDS and k not in METHOD_KEYS.get(method, ())}
    if adaptive:
        kw["mode"] = "adaptive"
    if method is not None:
        opts = {**METHOD_DEFAULTS[method], **{k: v for k, v in options.items() if k in METHOD_KEYS[method]}}
        kw.update({field: opts[k] for k, field in METHOD_KEYS[method].items() if field is not None})
        kw.update(_METHOD_FLAGS.get(method, {}))
        if method == "graceful" and "max" not in options:
            kw["max_thinking_tokens"] = opts["soft"] + opts["grace"]
    return factory(**kw, **fields)


def with_format(budget: Budget | None, base: Budget | None) -> Budget | None:
    """`budget` with the format fields of `base` (`think_start`, `think_end`, `answer_prefix`,
    `cap_with_delimiter`): a method's numbers in the model's format. Either None: `budget`."""
    if budget is None or base is None:
        return budget
    return dataclasses.replace(budget, think_start=base.think_start, think_end=base.think_end,
                               answer_prefix=base.answer_prefix, cap_with_delimiter=base.cap_with_delimiter)


def model_format(model: Any) -> Budget | None:
    """The model's `default_budget` (attribute or callable), or None when it has none."""
    from entropix_s1.core.budget import Budget

    b = getattr(model, "default_budget", None)
    if callable(b):
        b = b()
    return b if isinstance(b, Budget) else None


def _drop_defaults(opts: dict[str, Any], budget_kind: str | None, wait_text: str) -> None:
    """Drop default values from the options, so the canonical name is the shortest one."""
    if opts.get("wait") == wait_text:
        del opts["wait"]
    if opts.get("waits") == 0:
        del opts["waits"]
    if opts.get("min") == 0:
        del opts["min"]
    for k, v in METHOD_DEFAULTS.get(budget_kind or "", {}).items():
        if opts.get(k) == v:
            del opts[k]
    if budget_kind in ("budget", "adaptive-budget") and not any(k in opts for k in ("max", "min", "waits")):
        opts["waits"] = 0  # keep the spec parseable: budget:waits=0


def _max_new_tokens(spec: str, opts: dict[str, Any], budget: Budget, default: int | None) -> int:
    if "max_new" in opts:
        if opts["max_new"] < 1:
            raise ConfigError(f"method {spec!r}: max_new must be >= 1, got {opts['max_new']}")
        return opts["max_new"]
    if budget.max_thinking_tokens is not None:
        return budget.max_thinking_tokens + (budget.max_answer_tokens or DEFAULT_ANSWER_TOKENS) + _FORCED_SLACK
    max_new = default or DEFAULT_MAX_NEW_TOKENS
    if budget.min_thinking_tokens:
        max_new = max(max_new, budget.min_thinking_tokens + DEFAULT_ANSWER_TOKENS + _FORCED_SLACK)
    return max_new


def _render(head: str, opts: dict[str, Any], keys: Iterable[str]) -> str:
    items = [k if (k == "calibrated" and opts[k] is True) else f"{k}={_fmt_value(k, opts[k])}" for k in keys]
    return head + (":" + ",".join(items) if items else "")


def parse_spec(spec: str, *, default_max_new_tokens: int | None = None) -> MethodSpec:
    """Parse one method spec (see the module docstring) without building its sampler.

    `default_max_new_tokens` replaces DEFAULT_MAX_NEW_TOKENS for methods without a thinking cap
    and without `max_new=`.
    """
    from entropix_s1.core.budget import Budget

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"method spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    head, _, rest = spec.partition(":")
    head = head.strip().lower()
    sampler_kind, budget_kind = _split_head(spec, head)
    opts = _parse_options(spec, head, rest, sampler_kind, budget_kind)
    _normalise_sampler_options(spec, sampler_kind, opts)
    if budget_kind in ("budget", "adaptive-budget") and not any(k in opts for k in ("max", "min", "waits")):
        raise ConfigError(f"method {spec!r}: a budget needs at least one of max=, min=, waits=")
    method = budget_kind if budget_kind in METHOD_FAMILIES else None
    budget = make_budget(opts, adaptive=budget_kind == "adaptive-budget", method=method)  # validates (ConfigError)
    _drop_defaults(opts, budget_kind, Budget().wait_text)
    max_new = _max_new_tokens(spec, opts, budget, default_max_new_tokens)
    if budget_kind:
        canon_head = budget_kind if sampler_kind == "greedy" else f"{sampler_kind}+{budget_kind}"
    else:
        canon_head = sampler_kind
    ordered = [k for k in _KEY_ORDER if k in opts]
    return MethodSpec(
        name=_render(canon_head, opts, ordered),
        family=_render(canon_head, opts, [k for k in ordered if k not in _SCALE_KEYS]),
        sampler_kind=sampler_kind,
        sampler_options=tuple((k, opts[k]) for k in ordered if k in _SAMPLER_KEYS[sampler_kind]),
        budget=budget,
        max_new_tokens=max_new,
    )


def _entropix_sampler(spec: MethodSpec, opts: dict[str, Any]) -> Any:
    from entropix_s1.core.entropix import EntropixConfig  # lazy: needs JAX
    from entropix_s1.research.calibrate import load_entropix_config

    cal = opts.get("calibrated")
    if cal is None:
        sampler = EntropixConfig()
    else:
        path = default_calibration_path() if cal is True else Path(cal).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"method {spec.name!r}: calibration file {path} not found; write it with the calibrate "
                "command, or give its path (entropix:calibrated=PATH, or $ENTROPIX_S1_CALIBRATION)"
            )
        try:
            sampler = load_entropix_config(path)
        except ConfigError as e:
            raise ConfigError(f"method {spec.name!r}: {e}") from None
    if "pause" in opts:
        try:
            sampler = dataclasses.replace(sampler, pause_text=opts["pause"])
        except TypeError as e:
            raise ConfigError(f"method {spec.name!r}: EntropixConfig has no pause_text ({e})") from None
    return sampler


def build_method(spec: MethodSpec) -> Method:
    """Build the sampler object of a parsed spec (imports the samplers lazily)."""
    kind = spec.sampler_kind
    opts = dict(spec.sampler_options)
    if kind == "greedy":
        from entropix_s1.core.sampling import Greedy

        sampler: Any = Greedy()
    elif kind == "sample":
        from entropix_s1.core.sampling import Sample

        sampler = Sample(temperature=opts["t"], top_k=opts.get("top_k"), top_p=opts.get("top_p"),
                         min_p=opts.get("min_p"))
    elif kind == "entropix":
        sampler = _entropix_sampler(spec, opts)
    else:  # pragma: no cover - parse_spec only produces the kinds above
        raise ConfigError(f"unknown sampler kind {kind!r}")
    return Method(name=spec.name, family=spec.family, sampler=sampler, budget=spec.budget,
                  max_new_tokens=spec.max_new_tokens)


def is_deterministic(method: str | MethodSpec | Method) -> bool:
    """Whether every run of the method gives the same tokens, whatever the seed: the greedy
    sampler under a budget with no random step (AlphaOne's wait draw is one when
    0 < alpha_wait_prob < 1). `compare --samples/--seeds` runs such a method once. A Method whose
    name is not a spec is judged by its sampler's class name (`Greedy`)."""
    if isinstance(method, Method):
        try:
            method = parse_spec(method.name)
        except ConfigError:
            return type(method.sampler).__name__ == "Greedy" or method.sampler == "greedy"
    spec = parse_spec(method) if isinstance(method, str) else method
    b = spec.budget
    alpha_draws = b.alpha is not None and 0.0 < b.alpha_wait_prob < 1.0
    return spec.sampler_kind == "greedy" and not alpha_draws


def parse_method(spec: str | MethodSpec | Method, *, default_max_new_tokens: int | None = None) -> Method:
    """Spec string -> Method (sampler built). A Method passes through unchanged."""
    if isinstance(spec, Method):
        return spec
    if isinstance(spec, str):
        spec = parse_spec(spec, default_max_new_tokens=default_max_new_tokens)
    return build_method(spec)


_BRACE_RE = re.compile(r"\{([^{}]*)\}")


def _brace_expand(item: str) -> list[str]:
    m = _BRACE_RE.search(item)
    if m is None:
        return [item]
    out: list[str] = []
    for alt in m.group(1).split(","):
        out.extend(_brace_expand(item[: m.start()] + alt.strip() + item[m.end() :]))
    return out


def expand_specs(items: str | Sequence[str]) -> list[str]:
    """Method list from CLI text: `;`-separated specs (or a list of such strings, e.g. a
    repeated flag), with brace expansion (`budget:max={64,128}` -> two specs). Returns canonical
    names, validated, duplicates removed, order kept."""
    if isinstance(items, str):
        items = [items]
    out: list[str] = []
    for chunk in items:
        for raw in chunk.split(";"):
            raw = raw.strip()
            if not raw:
                continue
            for s in _brace_expand(raw):
                name = parse_spec(s).name
                if name not in out:
                    out.append(name)
    if not out:
        raise ConfigError("no methods given (e.g. --methods 'greedy;budget:max={64,128,256}')")
    return out


def _with(base: str, **kv: Any) -> str:
    items = ",".join(f"{k}={_fmt_value(k, v)}" for k, v in kv.items() if v is not None)
    return parse_spec(f"{base}:{items}" if items else base).name


def budget_sweep(maxes: Sequence[int] = (64, 128, 256, 512), *, base: str = "budget", waits: int = 0,
                 **options: Any) -> list[str]:
    """s1's token-conditional scaling curve (Figure 1 / 4 left): one method per thinking cap.

    `budget_sweep([64, 128])` -> ["budget:max=64", "budget:max=128"]; `base` may be any budget
    family ("entropix+budget", "adaptive-budget"); extra keys (`wait="Hmm"`, `t=0.7` for
    "sample+budget") are added to each. All share one family, so Scaling is their mean slope.
    """
    return [_with(base, max=m, waits=waits or None, **options) for m in maxes]


def waits_sweep(waits: Sequence[int] = (0, 1, 2, 4), *, max: int | None = None, base: str = "budget",
                **options: Any) -> list[str]:
    """s1's extrapolation (section 4.1 / Figure 4 right): suppress the end of thinking 0, 1, 2,
    4 times, appending "Wait" each time; optional common cap `max`. One family."""
    return [_with(base, max=max, waits=w, **options) for w in waits]


def wait_string_ablation(max: int | None = 512, strings: Sequence[str] = ("Wait", "Hmm", "Alternatively", "none"),
                         *, waits: int = 2, base: str = "budget") -> list[str]:
    """s1 Table 4 ("extrapolation" rows): the string appended when the end of thinking is
    suppressed, `waits` times under cap `max`. "none" is the empty string (suppression only).
    Each string is its own family (`budget:wait=Hmm`); compare their Performance."""
    return [_with(base, max=max, waits=waits, wait=s) for s in strings]


def pause_string_ablation(strings: Sequence[str] = ("Wait", "Hmm", "Alternatively"), *,
                          base: str = "entropix", max: int | None = None) -> list[str]:
    """entropix's pause insertion with different pause strings (the entropix analogue of s1's
    wait-string ablation); with `max` it runs under s1 budget forcing (`entropix+budget`). The
    pause string cannot be empty (EntropixConfig requires text to insert)."""
    if max is not None and "budget" not in base:
        base = f"{base}+budget"
    return [_with(base, pause=s, max=max) for s in strings]
