"""Write a trial's architecture as a standalone PyTorch file a person can read and edit.

Why a file, and not a pickle: it is meant to leave the search behind. It imports only torch
and reads top to bottom like a timm model file: the layer classes this architecture uses,
copied from `dimsearch.layers` (`_source`; a PiT export has no key/value reduction or
head-interaction code, a ResT export no learned position map), then the model, whose
``__init__`` assembles stem, stages and head with literal numbers (widths, heads, depths,
strides). That wiring is `dimsearch.models.model_call`'s, the very calls `build_model` runs
(`_render` writes them out), so parameter names, outputs and fvcore FLOPs equal the library
model's by construction, and a library state dict loads with ``strict=True``.

Safety: only a validated `TrialRecord` is used. Numbers are written through `_int`/`_float`/
`literal` (``repr`` of checked ints and finite floats), kinds only select entries of the
model's own tables, identifiers come from `module_name`/`class_name` (``[A-Za-z0-9_]`` only),
and the docstring text (config JSON, names) is escaped so it cannot end the docstring.

The output is ``ruff format`` clean at a line length of 100.
"""

from __future__ import annotations

import json
import re

from dimsearch._values import is_int
from dimsearch.config import ArchConfig, StageConfig, conv_out
from dimsearch.export._record import ExportError, ProxyWeights, TrialRecord
from dimsearch.export._render import LINE_LENGTH, Renderer, literal
from dimsearch.export._source import IMPORTS, layer_sources
from dimsearch.layers import drop_path_rates
from dimsearch.models import model_call
from dimsearch.models._call import Call

__all__ = ["LINE_LENGTH", "class_name", "generate_source", "module_name", "study_stem"]

_IDENT = re.compile(r"[^A-Za-z0-9_]+")


# -- names ---------------------------------------------------------------------------------------


def _words(study: str) -> list[str]:
    return [w for w in _IDENT.sub("_", study).split("_") if w][:6]


def study_stem(study: str) -> str:
    """``study`` reduced to ``[a-z0-9_]``, starting with a letter (file and folder names)."""
    stem = "_".join(w.lower() for w in _words(study))[:40].strip("_") or "study"
    return f"study_{stem}" if stem[0].isdigit() else stem


def module_name(study: str, number: int) -> str:
    """File stem for trial ``number`` of ``study``: ``[a-z0-9_]`` only, a valid module name."""
    return f"{study_stem(study)}_trial{_int(number)}"


def class_name(study: str, number: int) -> str:
    """Model class name for trial ``number`` of ``study``: CamelCase ``[A-Za-z0-9]`` only."""
    stem = "".join(w[:1].upper() + w[1:] for w in _words(study))[:40] or "Study"
    if stem[0].isdigit():
        stem = f"Study{stem}"
    return f"{stem}Trial{_int(number)}"


# -- literals ------------------------------------------------------------------------------------


def _int(value: object) -> str:
    if not is_int(value):
        raise ExportError(f"expected an integer for generated code, got {value!r}")
    return literal(value)


def _float(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExportError(f"expected a number for generated code, got {value!r}")
    return literal(float(value))


def _doc_text(text: str) -> str:
    """``text`` escaped for a regular triple-quoted string: backslashes doubled and every run
    of three quotes broken, so the docstring's value at runtime equals ``text``."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _config_json(cfg: ArchConfig) -> str:
    """The config as JSON, one stage per line (valid JSON, readable in a docstring)."""
    d = cfg.to_dict()
    lines = ["{"]
    keys = list(d)
    for n, key in enumerate(keys):
        comma = "," if n < len(keys) - 1 else ""
        value = d[key]
        if isinstance(value, list) and value:
            lines.append(f"  {json.dumps(key)}: [")
            for m, item in enumerate(value):
                inner = "," if m < len(value) - 1 else ""
                lines.append(f"    {json.dumps(item)}{inner}")
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines)


# -- the generated part: geometry and wiring ----------------------------------------------------


def _token_sides(cfg: ArchConfig, r: Renderer) -> str:
    steps = [list(cfg.stem.steps), *([t.geometry] for t in cfg.transitions)]
    lines = [
        "def token_sides(img_size: int | tuple[int, int]) -> list[tuple[int, int]]:",
        '    """(height, width) of each stage\'s token grid for an ``img_size`` input."""',
        "    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size",
        "    sides = []",
        "    # (kernel, stride, padding) of the convs and pools before each stage (stem, transitions)",
        *r.lines(steps, 4, "for steps in ", ":"),
        "        for k, s, p in steps:",
        "            h, w = conv_out(h, k, s, p), conv_out(w, k, s, p)",
        "        sides.append((h, w))",
        "    if min(min(side) for side in sides) < 1:",
        '        raise ValueError(f"img_size={img_size} is too small: the token grids {sides} collapse")',
        "    return sides",
    ]
    return "\n".join(lines)


def _stage_note(s: StageConfig, i: int) -> str:
    attn = "full attention" if s.sr_ratio == 1 else f"kv reduced {_int(s.sr_ratio)}x by {s.sr_kind}"
    if s.head_interaction:
        attn += ", head interaction"
    blocks = "block" if s.depth == 1 else "blocks"
    return (
        f"stage {i + 1}: {_int(s.depth)} {blocks}, width {_int(s.dim)}, "
        f"{_int(s.heads)} heads, {attn}"
    )


def _model_class(cfg: ArchConfig, record: TrialRecord, cls: str, call: Call, r: Renderer) -> str:
    """The model: `HViT` with this architecture's parts, written as its ``__init__``."""
    stages = dict(call.kwargs)["stages"]
    r.notes = {
        id(stage): _stage_note(s, i)
        for i, (stage, s) in enumerate(zip(stages, cfg.stages, strict=True))
    }
    body = r.lines(call, 8, callee="super().__init__")  # first: tells which names it reads
    widths = "-".join(_int(s.dim) for s in cfg.stages)
    depths = "-".join(_int(s.depth) for s in cfg.stages)
    head = {0: "average-pooled head", 1: "class-token head", 2: "class and distillation tokens"}
    lines = [
        f"class {cls}(HViT):",
        f'    """{cfg.stem.kind.capitalize()} stem, {len(cfg.stages)} stages (widths {widths}, '
        f'depths {depths}), {head[cfg.head.num_tokens]}."""',
        "",
        *_signature("__init__", ["self", *_factory_params(cfg, record)], "None", 4),
        "        sides = token_sides(img_size)  # checks the resolution; sizes the position maps"
        if "sides" in r.names
        else "        token_sides(img_size)  # checks that the token grids stay at least 1x1",
        f"        dpr = drop_path_rates(drop_path_rate, {_int(cfg.depth)})  # stochastic depth per block",
        *body,
    ]
    return "\n".join(lines)


def _factory_params(cfg: ArchConfig, record: TrialRecord) -> list[str]:
    return [
        f"num_classes: int = {_int(record.num_classes)}",
        f"img_size: int | tuple[int, int] = {_int(record.img_size)}",
        f"in_chans: int = {_int(cfg.in_chans)}",
        f"drop_path_rate: float = {_float(cfg.drop_path_rate)}",
    ]


def _signature(name: str, params: list[str], ret: str, indent: int) -> list[str]:
    pad = " " * indent
    one = f"{pad}def {name}({', '.join(params)}) -> {ret}:"
    if len(one) <= LINE_LENGTH:
        return [one]
    return [f"{pad}def {name}(", *(f"{pad}    {p}," for p in params), f"{pad}) -> {ret}:"]


def _factory(cfg: ArchConfig, record: TrialRecord, cls: str) -> str:
    args = ("num_classes", "img_size", "in_chans", "drop_path_rate")
    call = f"    return {cls}({', '.join(f'{a}={a}' for a in args)})"
    if len(call) > LINE_LENGTH:
        call = "\n".join([f"    return {cls}(", *(f"        {a}={a}," for a in args), "    )"])
    lines = [
        *_signature("create_model", _factory_params(cfg, record), cls, 0),
        '    """Build the model. ``img_size`` sizes any learned position map (the model still runs',
        "    at other sizes); the defaults are those the recorded parameters and FLOPs are for.",
        '    """',
        call,
    ]
    return "\n".join(lines)


def _main(record: TrialRecord, proxy: ProxyWeights | None) -> str:
    if proxy is None:
        lines = [
            "",
            'if __name__ == "__main__":',
            "    # self-check: build, one forward pass on a random image, output shape and size",
            "    model = create_model().eval()",
            f"    x = torch.randn(1, {_int(record.arch.in_chans)}, {_int(record.img_size)}, {_int(record.img_size)})",
        ]
    else:
        n, c, s = _int(proxy.num_classes), _int(proxy.in_chans), _int(proxy.img_size)
        lines = [
            "",
            'if __name__ == "__main__":',
            "    # self-check: build, one forward pass on a random image, output shape and size",
            '    weights = Path(__file__).with_suffix(".pt")',
            "    if weights.is_file():  # the search's proxy-trained weights, for its proxy task",
            f"        model = create_model(num_classes={n}, img_size={s}, in_chans={c})",
            "        model.load_state_dict(torch.load(weights, weights_only=True))",
            '        print(f"loaded {weights.name}")',
            f"        x = torch.randn(1, {c}, {s}, {s})",
            "    else:",
            "        model = create_model()",
            f"        x = torch.randn(1, {_int(record.arch.in_chans)}, {_int(record.img_size)}, {_int(record.img_size)})",
            "    model.eval()",
        ]
    lines += [
        "    with torch.no_grad():",
        "        out = model(x)",
        "    params = sum(p.numel() for p in model.parameters())",
        '    print(f"{type(model).__name__}: output {tuple(out.shape)}, {params:,} parameters")',
    ]
    return "\n".join(lines) + "\n"


# -- the docstring -------------------------------------------------------------------------------


def _docstring(record: TrialRecord, cls: str, proxy: ProxyWeights | None) -> str:
    cfg = record.arch
    seed = f", seed {json.dumps(record.seed)}" if record.seed else ""
    lines = [
        f"{cls}: a hierarchical vision transformer from a dimsearch study, written out as code.",
        "",
        f"Study {json.dumps(record.study)}, trial {record.number} ({record.state}){seed}.",
        f"Measured at {record.img_size}x{record.img_size} px with {record.num_classes} classes:",
        "",
    ]
    acc = record.objectives.get("accuracy")
    lines.append(
        f"    accuracy:   {acc:.2f} % (proxy top-1)" if acc is not None else "    accuracy:   -"
    )
    lines.append(
        f"    GFLOPs:     {record.gflops:.4f} (multiply-adds)"
        if record.gflops is not None
        else "    GFLOPs:     -"
    )
    if record.latency_ms is not None:
        on = f" ({record.latency_device})" if record.latency_device else ""
        lines.append(f"    latency:    {record.latency_ms:.2f} ms median{on}")
    else:
        lines.append("    latency:    -")
    lines.append(
        f"    parameters: {record.params:,} ({record.params / 1e6:.2f} M)"
        if record.params is not None
        else "    parameters: -"
    )
    lines += [
        "",
        "Only PyTorch is needed. `create_model()` builds the model; running this file builds it,",
        "runs one forward pass on a random image and prints the output shape and parameter count.",
        "Parameter names equal dimsearch's generated model's, so a state dict saved from",
        "`dimsearch.build_model(cfg)` loads here with ``strict=True``.",
    ]
    if proxy is not None:
        lines += [
            "",
            "The proxy-trained weights of the search sit next to this file (same name, `.pt`);",
            f"they fit create_model(num_classes={proxy.num_classes}, img_size={proxy.img_size}, "
            f"in_chans={proxy.in_chans}), the proxy task's, and are loaded by the self-check.",
        ]
    lines += ["", "The architecture as the study records it (dimsearch ArchConfig JSON):", ""]
    lines.append(_config_json(cfg))
    return '"""' + _doc_text("\n".join(lines)) + '\n"""\n'


# -- the file ------------------------------------------------------------------------------------


def generate_source(record: TrialRecord, proxy: ProxyWeights | None = None) -> str:
    """The standalone PyTorch source for ``record``'s architecture.

    Args:
        record: the validated trial (see `dimsearch.export.trial_record`).
        proxy: the proxy-trained weights that will sit next to the file (same stem,
            ``.pt``); the self-check then loads them.

    Returns:
        The file's text: torch-only, ruff-clean, its model's state dict keys equal to
        ``dimsearch.build_model(record.arch)``'s.
    """
    cfg = record.arch
    cls = class_name(record.study, record.number)
    call = model_call(cfg, num_classes=record.num_classes, img_size=record.img_size)
    r = Renderer()
    wiring = [_model_class(cfg, record, cls, call, r), _factory(cfg, record, cls)]
    copied, names = layer_sources([conv_out, drop_path_rates, *r.classes])
    imports = ["from __future__ import annotations", ""]
    if proxy is not None:
        imports += ["from pathlib import Path", ""]
    imports += [line for name, (_, line) in IMPORTS.items() if name in names | {"torch", "nn"}]
    defs = [*copied, _token_sides(cfg, r), *wiring, _main(record, proxy)]
    # the layout ruff's formatter keeps: one blank line after the docstring and the imports,
    # two around every top-level definition
    top = [_docstring(record, cls, proxy), "\n".join(imports)]
    return (
        "\n\n".join(t.strip("\n") for t in top)
        + "\n\n\n"
        + "\n\n\n".join(d.strip("\n") for d in defs)
        + "\n"
    )
