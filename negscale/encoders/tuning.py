"""Per-tower training: learning rate, weight decay and locking (LiT-style).

A tower loaded from local weights that trains at a from-scratch learning rate
forgets what it knew and collapses (MiniLM at 2e-3 did; at 2e-4 it learned),
so each tower has its own settings, as open_clip users expect:

* ``model.{image,text}_lr_scale``: the tower's learning rate is this times
  ``train.lr``. Unset: 1 for a tower trained from scratch, 0.1 for a tower loaded
  from ``model.{image,text}_path`` (negscale/config/towers.py); the run says which;
* ``model.{image,text}_weight_decay``: the tower's decay (unset: ``train.weight_decay``);
* ``model.lock_{image,text}``: the tower is frozen (LiT: a locked image tower);
  ``model.lock_{image,text}_unlocked = N`` keeps its last N layer groups
  trainable (open_clip's ``--lock-image-unlocked-groups`` / ``--lock-text-unlocked-layers``).

The projections and the temperature always train at ``train.lr``. Layer groups
are timm's own (``group_matcher``), a transformers model's encoder layers, or a
tower's top-level blocks, in order.
"""

from __future__ import annotations

from torch import nn

from negscale.config.towers import TOWERS, lr_scale


def describe(cfg, base_lr: float) -> str | None:
    """One line on the towers' learning rates and locks, when any differs from train.lr."""
    parts = []
    for tower in TOWERS:
        scale = lr_scale(cfg, tower)
        locked = getattr(cfg, f"lock_{tower}")
        if locked:
            keep = getattr(cfg, f"lock_{tower}_unlocked")
            rest = f" except its last {keep} layer group(s)" if keep else ""
            parts.append(f"{tower} tower locked{rest}")
        if scale != 1.0 and not (locked and not getattr(cfg, f"lock_{tower}_unlocked")):
            why = (
                "set"
                if getattr(cfg, f"{tower}_lr_scale") is not None
                else "the default for local weights"
            )
            parts.append(f"{tower} tower lr {scale * base_lr:.3g} = {scale:g} × train.lr ({why})")
    return "; ".join(parts) or None


def layer_groups(tower: nn.Module) -> list[list[nn.Parameter]]:
    """The tower's parameters in layer groups, first to last."""
    net = getattr(tower, "net", tower)
    if hasattr(net, "group_matcher"):  # timm
        from timm.models import group_parameters

        named = dict(net.named_parameters())
        groups = group_parameters(net, net.group_matcher(coarse=True))
        return [[named[n] for n in names] for _, names in sorted(groups.items())]
    for path in ("encoder.layer", "encoder.layers", "layers", "h", "transformer.h"):  # transformers
        layers = _get(net, path)
        if isinstance(layers, nn.ModuleList) and len(layers):
            inside = {id(p) for p in layers.parameters()}
            before = [p for p in net.parameters() if id(p) not in inside]
            return [before, *[list(layer.parameters()) for layer in layers]]
    children = [list(c.parameters()) for c in tower.children()]
    return [g for g in children if g] or [list(tower.parameters())]


def _get(module: nn.Module, path: str):
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def lock(tower: nn.Module, unlocked: int = 0) -> None:
    """Freeze the tower but its last ``unlocked`` layer groups."""
    groups = layer_groups(tower)
    frozen = groups[: len(groups) - unlocked] if unlocked else groups
    for group in frozen:
        for p in group:
            p.requires_grad_(False)


def apply_locks(model: nn.Module, cfg) -> None:
    """``model.lock_image`` / ``model.lock_text`` on a built DualEncoder."""
    for tower in TOWERS:
        if getattr(cfg, f"lock_{tower}"):
            lock(getattr(model, f"{tower}_tower"), getattr(cfg, f"lock_{tower}_unlocked"))


def param_groups(model: nn.Module, cfg, base_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: per tower its lr and decay (decay on matrices only), then the rest."""
    groups: list[dict] = []
    seen: set[int] = set()
    for tower in TOWERS:
        module = getattr(model, f"{tower}_tower", None)
        if module is None:  # not a DualEncoder: one lr for all
            continue
        decay = getattr(cfg, f"{tower}_weight_decay")
        groups += _split(module.named_parameters(), base_lr * lr_scale(cfg, tower),
                         weight_decay if decay is None else decay, seen)  # fmt: skip
    rest = ((n, p) for n, p in model.named_parameters() if id(p) not in seen)
    groups += _split(rest, base_lr, weight_decay, seen)
    return _merge(groups)


def _merge(groups: list[dict]) -> list[dict]:
    """Groups with the same lr and decay as one, in first-seen order: with every tower at
    the defaults these are the two groups (decay, no decay) of a plain AdamW, in the model's
    parameter order, so results and checkpoints are those of the single-lr optimiser."""
    out: dict[tuple[bool, float, float], dict] = {}
    for i, g in enumerate(groups):
        key = (i % 2 == 1, g["lr"], g["weight_decay"])  # _split: decay, then no decay
        if key in out:
            out[key]["params"] += g["params"]
        else:
            out[key] = {**g, "params": list(g["params"])}
    ordered = sorted(out.items(), key=lambda kv: kv[0][0])  # every decay group first (stable)
    return [g for _, g in ordered if g["params"]]


def _split(named, lr: float, weight_decay: float, seen: set[int]) -> list[dict]:
    decay, no_decay = [], []
    for name, p in named:
        seen.add(id(p))
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name == "logit_scale" else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
