"""Write a trial's architecture as a standalone PyTorch file a person can read and edit.

Why generated code, and not a pickle or a copy of dimsearch's layers: the file is meant to
leave the search behind. It imports only torch, the architecture is spelled out in the model's
``__init__`` with literal numbers (widths, heads, depths, strides), and only the layer classes
this architecture uses are written, each specialised to it: a PiT export has no key/value
reduction or head-interaction code, a model without class tokens carries none through its
stages, and nothing dispatches on kind strings at runtime. Parameter and buffer names equal
`dimsearch.build_model`'s, so a library state dict loads with ``strict=True``, and the forward
pass performs the same operations, so outputs and fvcore FLOPs agree with the library model.

Safety: only a validated `TrialRecord` is used. Numbers are written through `_int`/`_float`
(``repr`` of checked ints and finite floats), kinds select among this module's own
templates, identifiers come from `module_name`/`class_name` (``[A-Za-z0-9_]`` only), and the
docstring text (config JSON, names) is escaped so it cannot end the docstring.

The output is ``ruff format`` clean at a line length of 100: a construct that does not fit on
one line is written exploded with a magic trailing comma, which the formatter keeps.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from dimsearch._values import is_int
from dimsearch.config import ArchConfig, StageConfig
from dimsearch.export import _templates
from dimsearch.export._record import ExportError, ProxyWeights, TrialRecord

__all__ = ["LINE_LENGTH", "class_name", "generate_source", "module_name", "study_stem"]

LINE_LENGTH = 100
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
    return repr(int(value))


def _float(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExportError(f"expected a number for generated code, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ExportError(f"expected a finite number for generated code, got {value!r}")
    return repr(value)


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


# -- layout helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A call expression to lay out; ``head`` may carry a prefix (``pool=nn.MaxPool2d``)."""

    head: str
    args: tuple[str | _Call, ...]

    def __str__(self) -> str:
        return f"{self.head}({', '.join(str(a) for a in self.args)})"


def _call(head: str, args: list[str | _Call], indent: int, tail: str = "") -> list[str]:
    """``head(args)tail`` on one line if it fits, else one argument per line (recursively)."""
    pad = " " * indent
    one = f"{pad}{_Call(head, tuple(args))}{tail}"
    if len(one) <= LINE_LENGTH or not args:
        return [one]
    lines = [f"{pad}{head}("]
    for a in args:
        if isinstance(a, _Call):
            lines += _call(a.head, list(a.args), indent + 4, ",")
        else:
            lines.append(f"{pad}    {a},")
    return [*lines, f"{pad}){tail}"]


def _comprehension(prefix: str, element: _Call, loop: str, indent: int) -> list[str]:
    """``prefix[element loop],`` laid out the way ruff's formatter lays it out."""
    pad = " " * indent
    one = f"{pad}{prefix}[{element} {loop}],"
    if len(one) <= LINE_LENGTH:
        return [one]
    body = f"{pad}    {element} {loop}"
    if len(body) <= LINE_LENGTH:
        return [f"{pad}{prefix}[", body, f"{pad}],"]
    return [
        f"{pad}{prefix}[",
        *_call(element.head, list(element.args), indent + 4),
        f"{pad}    {loop}",
        f"{pad}],",
    ]


# -- what the architecture uses ------------------------------------------------------------------


@dataclass(frozen=True)
class _Features:
    tokens: int  # class tokens (0: average-pooled head)
    distilled: bool
    multi_stage: bool
    full: bool  # some stage attends with a fused qkv
    reduced: bool  # some stage reduces keys/values
    mixing: bool  # some stage has head interaction
    plain: bool  # some stage has no head interaction (uses SDPA)
    pos: frozenset[str]

    @classmethod
    def of(cls, cfg: ArchConfig) -> _Features:
        return cls(
            tokens=cfg.head.num_tokens,
            distilled=cfg.head.distilled,
            multi_stage=len(cfg.stages) > 1,
            full=any(s.sr_ratio == 1 for s in cfg.stages),
            reduced=any(s.sr_ratio > 1 for s in cfg.stages),
            mixing=any(s.head_interaction for s in cfg.stages),
            plain=any(not s.head_interaction for s in cfg.stages),
            pos=frozenset(s.pos for s in cfg.stages),
        )


# -- generated layer classes ---------------------------------------------------------------------


def _transition(kind: str, f: _Features) -> str:
    """The transition class for ``kind``; with class tokens it widens them with ``fc``."""
    tok = f.tokens > 0
    sig = "x: torch.Tensor, cls: torch.Tensor" if tok else "x: torch.Tensor"
    ret = "tuple[torch.Tensor, torch.Tensor]" if tok else "torch.Tensor"
    fc = ["        self.fc = nn.Linear(dim_in, dim_out)  # widens the class tokens"] if tok else []
    if kind == "dwconv":
        name, doc = "DWConvPool", "PiT's pooling: a depthwise conv with channel multiplier out/in."
        init_sig = "self, dim_in: int, dim_out: int, stride: int"
        body = [
            "        self.conv = nn.Conv2d(",
            "            dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2, groups=dim_in",
            "        )",
        ]
        grid = "self.conv(x)"
    elif kind in ("avg", "max"):
        name, doc = "PoolProject", "Parameter-free pooling (the given module), then a 1x1 conv."
        init_sig = "self, dim_in: int, dim_out: int, pool: nn.Module"
        body = ["        self.pool = pool", "        self.proj = nn.Conv2d(dim_in, dim_out, 1)"]
        grid = "self.proj(self.pool(x))"
    elif kind == "conv":
        name, doc = "ConvEmbed", "ResT's patch embedding: a dense strided conv, then BatchNorm."
        init_sig = "self, dim_in: int, dim_out: int, stride: int"
        body = [
            "        self.conv = nn.Conv2d(dim_in, dim_out, stride + 1, stride=stride, padding=stride // 2)",
            "        self.norm = nn.BatchNorm2d(dim_out)",
        ]
        grid = "self.norm(self.conv(x))"
    else:  # unreachable for a validated config
        raise ExportError(f"no code template for transition kind {kind!r}")
    ret_expr = f"{grid}, self.fc(cls)" if tok else grid
    lines = [
        "",
        f"class {name}(nn.Module):",
        f'    """{doc}"""',
        "",
        f"    def __init__({init_sig}) -> None:",
        "        super().__init__()",
        *fc,
        *body,
        "",
        f"    def forward(self, {sig}) -> {ret}:",
        f"        return {ret_expr}",
    ]
    return "\n".join(lines) + "\n"


def _attention(f: _Features) -> str:
    """The attention class, with only the branches some stage of this model takes."""
    both_qkv = f.full and f.reduced
    both_mix = f.mixing and f.plain
    doc = ['    """Multi-head self-attention (scaled dot product over all tokens).']
    detail = []
    if f.reduced:
        when = "With a `kv_reduction`, keys" if both_qkv else "Keys"
        detail += [
            f"    {when} and values come from the token grid reduced by that module, then a",
            "    LayerNorm (ResT's EMSA); class tokens join the reduced grid unreduced."
            if f.tokens
            else "    LayerNorm (ResT's EMSA).",
        ]
    if f.mixing:
        when = "With head interaction, a" if both_mix else "A"
        detail += [
            f"    {when} 1x1 conv mixes the heads' attention logits before the softmax and an",
            "    instance norm follows (ResT); that path computes attention explicitly.",
        ]
    doc = [doc[0] + '"""'] if not detail else [*doc, "", *detail, '    """']
    params = ["self", "dim: int", "heads: int"]
    if f.reduced and not both_qkv:
        params.append("kv_reduction: nn.Module")
    params.append("qkv_bias: bool = True")
    if both_qkv:
        params.append("kv_reduction: nn.Module | None = None")
    if both_mix:
        params.append("head_interaction: bool = False")
    init = [
        "        super().__init__()",
        "        self.heads = heads",
        "        self.head_dim = dim // heads",
    ]
    if f.mixing:
        init.append("        self.scale = self.head_dim**-0.5")
    reduced_init = [
        "self.q = nn.Linear(dim, dim, bias=qkv_bias)",
        "self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)",
        "self.sr_norm = nn.LayerNorm(dim, eps=NORM_EPS)",
    ]
    if both_qkv:
        init += [
            "        self.sr = kv_reduction  # None: full attention with one fused projection",
            "        if kv_reduction is None:",
            "            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)",
            "        else:",
            *(f"            {line}" for line in reduced_init),
        ]
    elif f.reduced:
        init += ["        self.sr = kv_reduction", *(f"        {line}" for line in reduced_init)]
    else:
        init.append("        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)")
    if both_mix:
        init += [
            "        self.transform_conv = None",
            "        if head_interaction:  # ResT: a 1x1 conv mixes the heads' logits",
            "            self.transform_conv = nn.Conv2d(heads, heads, 1)",
            "            self.transform_norm = nn.InstanceNorm2d(heads)",
        ]
    elif f.mixing:
        init += [
            "        self.transform_conv = nn.Conv2d(heads, heads, 1)  # mixes the heads' logits",
            "        self.transform_norm = nn.InstanceNorm2d(heads)",
        ]
    init.append("        self.proj = nn.Linear(dim, dim)")

    fwd_params = ["self", "x: torch.Tensor"] + (["grid: tuple[int, int]"] if f.reduced else [])
    full_qkv = [
        "qkv = self.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)",
        "q, k, v = qkv.unbind(0)",
    ]
    if f.tokens:
        kv_in = [
            "# class tokens join the reduced grid unreduced",
            "spatial = x[:, NUM_TOKENS:].transpose(1, 2).reshape(B, C, *grid)",
            "reduced = self.sr(spatial).flatten(2).transpose(1, 2)",
            "kv = self.sr_norm(torch.cat((x[:, :NUM_TOKENS], reduced), dim=1))",
        ]
    else:
        kv_in = [
            "spatial = x.transpose(1, 2).reshape(B, C, *grid)",
            "kv = self.sr_norm(self.sr(spatial).flatten(2).transpose(1, 2))",
        ]
    reduced_qkv = [
        "q = self.q(x).reshape(B, N, h, d).transpose(1, 2)",
        *kv_in,
        "k, v = self.kv(kv).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)",
    ]
    fwd = ["        B, N, C = x.shape", "        h, d = self.heads, self.head_dim"]
    if both_qkv:
        fwd += [
            "        if self.sr is None:",
            *(f"            {s}" for s in full_qkv),
            "        else:",
        ]
        fwd += [f"            {s}" for s in reduced_qkv]
    elif f.reduced:
        fwd += [f"        {s}" for s in reduced_qkv]
    else:
        fwd += [f"        {s}" for s in full_qkv]
    mix = [
        "attn = (q @ k.transpose(-2, -1)) * self.scale",
        "attn = self.transform_norm(self.transform_conv(attn).softmax(dim=-1))",
        "x = attn @ v",
    ]
    if both_mix:
        fwd += [
            "        if self.transform_conv is None:",
            "            x = F.scaled_dot_product_attention(q, k, v)",
            "        else:",
            *(f"            {s}" for s in mix),
        ]
    elif f.mixing:
        fwd += [f"        {s}" for s in mix]
    else:
        fwd.append("        x = F.scaled_dot_product_attention(q, k, v)")
    fwd.append("        return self.proj(x.transpose(1, 2).reshape(B, N, C))")

    lines = [
        "",
        "class Attention(nn.Module):",
        *doc,
        "",
        *_signature("__init__", params, "None", 4),
        *init,
        "",
        *_signature("forward", fwd_params, "torch.Tensor", 4),
        *fwd,
    ]
    return "\n".join(lines) + "\n"


def _signature(name: str, params: list[str], ret: str, indent: int) -> list[str]:
    pad = " " * indent
    one = f"{pad}def {name}({', '.join(params)}) -> {ret}:"
    if len(one) <= LINE_LENGTH:
        return [one]
    return [f"{pad}def {name}(", *(f"{pad}    {p}," for p in params), f"{pad}) -> {ret}:"]


def _block(f: _Features) -> str:
    both_mix = f.mixing and f.plain
    params = ["self", "dim: int", "heads: int", "mlp_hidden: int"]
    if f.reduced and not f.full:
        params.append("kv_reduction: nn.Module")
    params += ["drop_path: float = 0.0", "qkv_bias: bool = True"]
    attn_args = ["dim", "heads", "qkv_bias=qkv_bias"]
    if f.reduced:
        if f.full:
            params.append("kv_reduction: nn.Module | None = None")
        attn_args.append("kv_reduction=kv_reduction")
    if both_mix:
        params.append("head_interaction: bool = False")
        attn_args.append("head_interaction=head_interaction")
    grid_sig = ", grid: tuple[int, int]" if f.reduced else ""
    grid_arg = ", grid" if f.reduced else ""
    lines = [
        "",
        "class Block(nn.Module):",
        '    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""',
        "",
        *_signature("__init__", params, "None", 4),
        "        super().__init__()",
        "        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)",
        *_call("self.attn = Attention", attn_args, 8),
        "        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()",
        "        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)",
        "        self.mlp = Mlp(dim, mlp_hidden)",
        "",
        f"    def forward(self, x: torch.Tensor{grid_sig}) -> torch.Tensor:",
        f"        x = x + self.drop_path(self.attn(self.norm1(x){grid_arg}))",
        "        return x + self.drop_path(self.mlp(self.norm2(x)))",
    ]
    return "\n".join(lines) + "\n"


def _stage(f: _Features) -> str:
    tok = f.tokens > 0
    params = ["self"]
    if f.multi_stage:
        params.append("downsample: nn.Module | None")
    params += ["pos: nn.Module", "blocks: list[Block]"]
    fwd_params = (
        ["self", "x: torch.Tensor", "cls: torch.Tensor"] if tok else ["self", "x: torch.Tensor"]
    )
    what = "Grid (B, C, H, W) and class tokens in" if tok else "A grid (B, C, H, W) in"
    lines = [
        "",
        "class Stage(nn.Module):",
        '    """Downsampling (not in stage 1), positional encoding, then transformer blocks."""',
        "",
        *_signature("__init__", params, "None", 4),
        "        super().__init__()",
    ]
    if f.multi_stage:
        lines.append("        self.downsample = downsample")
    lines += [
        "        self.pos = pos",
        "        self.blocks = nn.ModuleList(blocks)",
        "",
        *_signature("forward", fwd_params, "tuple[torch.Tensor, tuple[int, int]]", 4),
        f'        """{what}; the tokens (B, N, C) and grid size out."""',
    ]
    if f.multi_stage:
        lines += [
            "        if self.downsample is not None:",
            "            x, cls = self.downsample(x, cls)"
            if tok
            else "            x = self.downsample(x)",
        ]
    lines += [
        "        x = self.pos(x)",
        "        grid = (x.shape[-2], x.shape[-1])",
        "        x = torch.cat((cls, x.flatten(2).transpose(1, 2)), dim=1)"
        if tok
        else "        x = x.flatten(2).transpose(1, 2)",
        "        for block in self.blocks:",
        f"            x = block(x{', grid' if f.reduced else ''})",
        "        return x, grid",
    ]
    return "\n".join(lines) + "\n"


# -- the model -----------------------------------------------------------------------------------


def _stem_expr(cfg: ArchConfig) -> tuple[str, list[str]]:
    s = cfg.stem
    dim = _int(cfg.stages[0].dim)
    if s.kind == "patch":
        return "PatchStem", [
            "in_chans",
            dim,
            f"patch_size={_int(s.patch_size)}",
            f"stride={_int(s.stride)}",
            f"padding={_int(s.padding)}",
        ]
    if s.kind == "conv3":
        return "Conv3Stem", ["in_chans", dim]
    if s.kind == "conv7":
        return "Conv7Stem", ["in_chans", dim]
    raise ExportError(f"no code template for stem kind {s.kind!r}")


def _stem_geometry(cfg: ArchConfig) -> tuple[str, str]:
    s = cfg.stem
    if s.kind == "patch":
        k, st, p = _int(s.patch_size), _int(s.stride), _int(s.padding)
        return f"_conv_out(img_size, {k}, {st}, {p})", f"stem: {k}x{k} conv, stride {st}"
    if s.kind == "conv3":
        return "_conv_out(_conv_out(img_size, 3, 2, 1), 3, 2, 1)", "stem: two stride-2 3x3 convs"
    return "_conv_out(_conv_out(img_size, 7, 2, 3), 3, 2, 1)", "stem: 7x7/2 conv, 3x3/2 max pool"


def _token_sides(cfg: ArchConfig) -> str:
    expr, note = _stem_geometry(cfg)
    lines = [
        "",
        "def token_sides(img_size: int) -> list[int]:",
        '    """Side of each stage\'s square token grid for an ``img_size`` input."""',
        f"    sides = [{expr}]  # {note}",
    ]
    for i, t in enumerate(cfg.transitions):
        k, st, p = (_int(v) for v in t.geometry)
        lines.append(
            f"    sides.append(_conv_out(sides[-1], {k}, {st}, {p}))  # into stage {i + 2}"
        )
    lines += [
        "    if min(sides) < 1:",
        '        raise ValueError(f"img_size={img_size} is too small: the token grids {sides} collapse")',
        "    return sides",
    ]
    return "\n".join(lines) + "\n"


def _pos_expr(stage: StageConfig, i: int) -> str:
    dim = _int(stage.dim)
    return {
        "le": f"LearnedPos({dim}, sides[{i}])",
        "gl": f"GroupLinearPos({dim})",
        "pa": f"PixelAttentionPos({dim})",
        "none": "nn.Identity()",
    }[stage.pos]


def _kv_reduction_expr(stage: StageConfig) -> _Call:
    k, s, p = (_int(v) for v in stage.sr_geometry)
    dim = _int(stage.dim)
    head = "kv_reduction="
    if stage.sr_kind == "dwconv":
        return _Call(
            f"{head}nn.Conv2d", (dim, dim, k, f"stride={s}", f"padding={p}", f"groups={dim}")
        )
    return _pool_expr(head, stage.sr_kind, k, s, p)


def _pool_expr(head: str, kind: str, k: str, s: str, p: str) -> _Call:
    if kind == "avg":
        args = (k, f"stride={s}", f"padding={p}", "count_include_pad=False")
        return _Call(f"{head}nn.AvgPool2d", args)
    if kind == "max":
        return _Call(f"{head}nn.MaxPool2d", (k, f"stride={s}", f"padding={p}"))
    raise ExportError(f"no code template for pooling kind {kind!r}")


def _downsample_expr(cfg: ArchConfig, i: int) -> _Call:
    t = cfg.transitions[i - 1]
    dim_in, dim_out = _int(cfg.stages[i - 1].dim), _int(cfg.stages[i].dim)
    k, s, p = (_int(v) for v in t.geometry)
    if t.kind == "dwconv":
        return _Call("downsample=DWConvPool", (dim_in, dim_out, f"stride={s}"))
    if t.kind == "conv":
        return _Call("downsample=ConvEmbed", (dim_in, dim_out, f"stride={s}"))
    return _Call("downsample=PoolProject", (dim_in, dim_out, _pool_expr("pool=", t.kind, k, s, p)))


def _stage_lines(cfg: ArchConfig, i: int, start: int, f: _Features) -> list[str]:
    s = cfg.stages[i]
    pad = " " * 16
    attn = "full attention" if s.sr_ratio == 1 else f"kv reduced {_int(s.sr_ratio)}x by {s.sr_kind}"
    if s.head_interaction:
        attn += ", head interaction"
    blocks = "block" if s.depth == 1 else "blocks"
    lines = [
        f"{pad}# stage {i + 1}: {_int(s.depth)} {blocks}, width {_int(s.dim)}, "
        f"{_int(s.heads)} heads, {attn}",
        f"{pad}Stage(",
    ]
    inner = " " * 20
    if f.multi_stage:
        if i == 0:
            lines.append(f"{inner}downsample=None,")
        else:
            down = _downsample_expr(cfg, i)
            lines += _call(down.head, list(down.args), 20, ",")
    lines.append(f"{inner}pos={_pos_expr(s, i)},")
    args: list[str | _Call] = [
        _int(s.dim),
        f"heads={_int(s.heads)}",
        f"mlp_hidden={_int(s.mlp_hidden)}",
        "drop_path=p",
    ]
    if not s.qkv_bias:
        args.append("qkv_bias=False")
    if s.sr_ratio > 1:
        args.append(_kv_reduction_expr(s))
    if s.head_interaction and f.plain:
        args.append("head_interaction=True")
    loop = f"for p in dpr[{_int(start)}:{_int(start + s.depth)}]"
    lines += _comprehension("blocks=", _Call("Block", tuple(args)), loop, 20)
    lines.append(f"{pad}),")
    return lines


def _model(cfg: ArchConfig, record: TrialRecord, cls: str, f: _Features) -> str:
    widths = "-".join(_int(s.dim) for s in cfg.stages)
    depths = "-".join(_int(s.depth) for s in cfg.stages)
    head = "class-token head" if f.tokens else "average-pooled head"
    if f.distilled:
        head = "class and distillation tokens"
    stem_head, stem_args = _stem_expr(cfg)
    n = cfg.depth
    dpr = (
        f"        dpr = [drop_path_rate * i / {_int(n - 1)} for i in range({_int(n)})]"
        if n > 1
        else "        dpr = [0.0]"
    )
    init_params = [
        "self",
        f"num_classes: int = {_int(record.num_classes)}",
        f"img_size: int = {_int(record.img_size)}",
        f"in_chans: int = {_int(cfg.in_chans)}",
        f"drop_path_rate: float = {_float(cfg.drop_path_rate)}",
    ]
    last = _int(cfg.stages[-1].dim)
    lines = [
        "",
        f"class {cls}(nn.Module):",
        f'    """{cfg.stem.kind.capitalize()} stem, {len(cfg.stages)} stages (widths {widths}, depths {depths}), {head}."""',
        "",
        *_signature("__init__", init_params, "None", 4),
        "        super().__init__()",
        "        sides = token_sides(img_size)  # checks the resolution; sizes the position maps"
        if "le" in f.pos
        else "        token_sides(img_size)  # checks that the token grids stay at least 1x1",
        f"        # stochastic depth grows linearly over the {_int(n)} blocks",
        dpr,
        *_call(f"self.stem = {stem_head}", stem_args, 8),
    ]
    if f.tokens:
        lines.append(
            f"        self.cls_token = nn.Parameter(torch.zeros(1, NUM_TOKENS, {_int(cfg.stages[0].dim)}))"
        )
    lines += ["        self.stages = nn.ModuleList(", "            ["]
    start = 0
    for i, s in enumerate(cfg.stages):
        lines += _stage_lines(cfg, i, start, f)
        start += s.depth
    lines += ["            ]", "        )"]
    lines += [
        f"        self.norm = nn.LayerNorm({last}, eps=NORM_EPS)",
        f"        self.head = nn.Linear({last}, num_classes) if num_classes > 0 else nn.Identity()",
    ]
    if f.distilled:
        lines += [
            f"        self.head_dist = nn.Linear({last}, num_classes) if num_classes > 0 else nn.Identity()",
            "        self.distilled_training = False  # True: train() forward returns both heads",
        ]
    lines.append("        self.apply(_init_weights)")
    if f.tokens:
        lines.append("        nn.init.trunc_normal_(self.cls_token, std=0.02)")
    lines.append("")
    if f.tokens:
        lines += [
            "    def forward_features(self, x: torch.Tensor) -> torch.Tensor:",
            '        """The normalised class tokens (B, NUM_TOKENS, C)."""',
            "        x = self.stem(x)",
            "        cls = self.cls_token.expand(x.shape[0], -1, -1)",
            "        for stage in self.stages[:-1]:",
            "            seq, grid = stage(x, cls)",
            "            # the tokens split back into class tokens and a grid for the next stage",
            "            cls, x = seq[:, :NUM_TOKENS], seq[:, NUM_TOKENS:]",
            "            x = x.transpose(1, 2).reshape(x.shape[0], -1, *grid)",
            "        seq, _ = self.stages[-1](x, cls)",
            "        return self.norm(seq[:, :NUM_TOKENS])",
        ]
    else:
        lines += [
            "    def forward_features(self, x: torch.Tensor) -> torch.Tensor:",
            '        """The normalised grid tokens, averaged (B, C)."""',
            "        x = self.stem(x)",
            "        for stage in self.stages[:-1]:",
            "            seq, grid = stage(x)",
            "            x = seq.transpose(1, 2).reshape(seq.shape[0], -1, *grid)  # back to a grid",
            "        seq, _ = self.stages[-1](x)",
            "        return self.norm(seq).mean(dim=1)",
        ]
    lines.append("")
    if f.distilled:
        lines += [
            "    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:",
            '        """Mean of the class and distillation heads (both while distillation-training)."""',
            "        logits, dist = self.head(x[:, 0]), self.head_dist(x[:, 1])",
            "        if self.distilled_training and self.training:",
            "            return logits, dist",
            "        return (logits + dist) / 2",
        ]
    else:
        lines += [
            "    def forward_head(self, x: torch.Tensor) -> torch.Tensor:",
            "        return self.head(x[:, 0])" if f.tokens else "        return self.head(x)",
        ]
    ret = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]" if f.distilled else "torch.Tensor"
    lines += [
        "",
        f"    def forward(self, x: torch.Tensor) -> {ret}:",
        "        return self.forward_head(self.forward_features(x))",
    ]
    return "\n".join(lines) + "\n"


def _factory(cfg: ArchConfig, record: TrialRecord, cls: str) -> str:
    params = [
        f"num_classes: int = {_int(record.num_classes)}",
        f"img_size: int = {_int(record.img_size)}",
        f"in_chans: int = {_int(cfg.in_chans)}",
        f"drop_path_rate: float = {_float(cfg.drop_path_rate)}",
    ]
    lines = [
        "",
        *_signature("create_model", params, cls, 0),
        '    """Build the model. ``img_size`` sizes any learned position map (the model still runs',
        "    at other sizes); the defaults are those the recorded parameters and FLOPs are for.",
        '    """',
        *_call(
            f"return {cls}",
            [
                "num_classes=num_classes",
                "img_size=img_size",
                "in_chans=in_chans",
                "drop_path_rate=drop_path_rate",
            ],
            4,
        ),
    ]
    return "\n".join(lines) + "\n"


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
    f = _Features.of(cfg)
    cls = class_name(record.study, record.number)
    uses_f = f.plain or "le" in f.pos
    imports = ["from __future__ import annotations", ""]
    if proxy is not None:
        imports += ["from pathlib import Path", ""]
    imports += ["import torch"]
    if uses_f:
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    constants = [
        "",
        f"NORM_EPS = {_float(cfg.norm_eps)}  # every LayerNorm's epsilon",
    ]
    if f.tokens:
        what = "a class and a distillation token" if f.distilled else "one class token"
        constants.append(f"NUM_TOKENS = {_int(f.tokens)}  # {what}, carried through every stage")
    defs = [
        _templates.GEOMETRY,
        _token_sides(cfg),
        _templates.DROP_PATH,
        _templates.MLP,
        _templates.STEMS[cfg.stem.kind],
    ]
    defs += [_templates.POS[kind] for kind in ("le", "gl", "pa") if kind in f.pos]
    emitted = set()
    for t in cfg.transitions:
        key = "pool" if t.kind in ("avg", "max") else t.kind
        if key not in emitted:
            emitted.add(key)
            defs.append(_transition(t.kind, f))
    defs += [_attention(f), _block(f), _stage(f), _model(cfg, record, cls, f), _templates.INIT]
    defs += [_factory(cfg, record, cls), _main(record, proxy)]
    # the layout ruff's formatter keeps: one blank line after the docstring, the imports and
    # the constants, two around every top-level definition
    top = [_docstring(record, cls, proxy), "\n".join(imports), "\n".join(constants)]
    return (
        "\n\n".join(t.strip("\n") for t in top)
        + "\n\n\n"
        + "\n\n\n".join(d.strip("\n") for d in defs)
        + "\n"
    )
